"""Input paths → the supported files under them, in a deterministic order; how many documents they hold."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path

from ingest.loaders.base import (
    MULTI_DOCUMENT_SUFFIXES,
    SUPPORTED_SUFFIXES,
    LoadFailure,
    suffix_list,
    unsupported_reason,
)

logger = logging.getLogger(__name__)


def discover_files(paths: Sequence[Path], *, log: bool = True) -> tuple[list[Path], list[LoadFailure]]:
    """Expand files and folders into a deterministic list of supported files.

    Folders are walked recursively in sorted order, skipping hidden files and folders (a leading dot) and,
    silently, files of unsupported types (their count is logged). A file named explicitly is taken even if
    hidden, but an unsupported type or a missing path is a failure. A file reached twice is listed once.
    `log=False` keeps quiet about skipped files (for a first pass that only counts them).
    """
    files: list[Path] = []
    failures: list[LoadFailure] = []
    seen: set[Path] = set()
    for path in paths:
        found, problems = _expand(Path(path), log)
        failures.extend(problems)
        for file in found:
            key = _identity(file)
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, failures


def _expand(path: Path, log: bool) -> tuple[list[Path], list[LoadFailure]]:
    if path.is_dir():
        return _walk_folder(path, log)
    if path.is_symlink() and not path.exists():
        return [], [LoadFailure(str(path), _BROKEN_LINK)]
    if not path.exists():
        return [], [LoadFailure(str(path), "no such file or folder; check the path")]
    if not path.is_file():
        return [], [LoadFailure(str(path), "not a regular file (a device, socket or pipe); pass a file or a folder")]
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return [], [LoadFailure(str(path), unsupported_reason(path))]
    return [path], []


_BROKEN_LINK = "a symbolic link to nothing (its target is gone, or it loops); fix or remove the link"


def _walk_folder(folder: Path, log: bool) -> tuple[list[Path], list[LoadFailure]]:
    files: list[Path] = []
    failures: list[LoadFailure] = []
    skipped = 0

    def on_error(error: OSError) -> None:
        failures.append(LoadFailure(str(error.filename or folder), f"cannot read folder: {error.strerror}"))

    for root, dirs, names in os.walk(folder, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            file = Path(root) / name
            if file.suffix.lower() in SUPPORTED_SUFFIXES and file.is_file():
                files.append(file)
            elif file.suffix.lower() in SUPPORTED_SUFFIXES and file.is_symlink() and not file.exists():
                failures.append(LoadFailure(str(file), _BROKEN_LINK))
            else:
                skipped += 1
    if skipped and log:
        logger.info("%s: skipped %d file(s) of unsupported types", folder, skipped)
    if not files and not failures and log:
        logger.warning("%s: no supported files found (%s)", folder, suffix_list())
    return files, failures


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def estimate_documents(files: Sequence[Path]) -> int:
    """Roughly how many documents these files hold (lines of JSONL, rows of CSV, one per other file), so a
    progress bar can show an ETA. Cheap: counts newlines, parses nothing."""
    total = 0
    for file in files:
        suffix = file.suffix.lower()
        if suffix not in MULTI_DOCUMENT_SUFFIXES:
            total += 1
            continue
        try:
            with file.open("rb") as handle:
                lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        except OSError:
            lines = 1
        total += max(lines - (1 if suffix == ".csv" else 0), 1)
    return total
