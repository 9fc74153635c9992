"""Writing files and folders so that a reader never sees half of one: staged beside the target, then renamed.

A rename within one folder is atomic, so whatever exists under its final name is complete: a model folder,
an assembled model file, a lexicon, a results file. An interrupted run leaves at most a hidden staging entry
(a leading dot), never a truncated target.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def staged_file(target: Path) -> Iterator[Path]:
    """Yield a hidden sibling of `target` to write; when the block ends without error it replaces `target` in
    one rename, else it is deleted and `target` is left as it was."""
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        yield staging
        os.replace(staging, target)
    finally:
        staging.unlink(missing_ok=True)


@contextmanager
def staged_directory(target: Path) -> Iterator[Path]:
    """Yield an empty scratch folder beside `target` in which to build `scratch / target.name`; when the block
    ends without error that folder, given ordinary permissions, replaces `target`. The scratch folder and
    anything else left in it are deleted either way."""
    target.parent.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        yield scratch
        built = scratch / target.name
        apply_default_permissions(built)
        replace_directory(built, target)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def apply_default_permissions(root: Path) -> None:
    """mkdtemp creates a private (0700) folder; give it the modes a plain mkdir would (umask applied)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def replace_directory(staging: Path, folder: Path) -> None:
    """Move `staging` to `folder`; an older `folder` is moved aside first and deleted afterwards."""
    old: Path | None = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def read_json(path: Path) -> Any:
    """The file's JSON value, or None when it is missing or unreadable."""
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
