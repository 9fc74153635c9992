"""Files sent to the running app (the `POST /v1/ingest` route and the chat page's upload), ingested alike.

The embedded store allows one process, so while the app runs, uploads are how articles get in. Both edges call
`ingest_uploads`: the same names, namespace, limits and pipeline whichever way a file arrives.

- Ids come from the file's safe name only: `upload:NAME` for a file of one document, `upload:NAME/ID` for a
  JSONL/CSV record with an id of its own and `upload:NAME#N` for one without (N its line, or row). What a
  document claims (front matter, canonical URL, a record's `id`) never becomes its id, so an upload can
  neither replace nor delete an article of the operator's corpus; a claimed URL stays the article's `url`.
- Each request writes its files into a folder of its own under UPLOAD_DIR/.incoming/, so two requests that
  send one file name never read each other's half-written file. After ingesting, a file that gave at least one
  article replaces UPLOAD_DIR/NAME in one rename (the last request wins); nothing else is left behind, also
  when saving or ingesting fails.
- Bounded: at most RAG_API_MAX_UPLOAD_FILES files of RAG_API_MAX_UPLOAD_MB together (checked while saving,
  for the page; the HTTP guard refuses a larger body before), and documents past RAG_API_MAX_UPLOAD_CHARS
  characters of text in all are reported as failed without being ingested.

`ingest_uploads` runs on the calling thread; the app hands both edges one `IngestUploads` (api/factory.py) that
runs it on the one ingest worker, so uploads from the API and from the page queue in one line.
"""

from __future__ import annotations

import errno
import hashlib
import logging
import os
import shutil
import tempfile
import time
import unicodedata
from collections.abc import Awaitable, Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath
from typing import BinaryIO

from ingest.loaders import LoadFailure, load_file
from ingest.pipeline import UPLOAD_ID_PREFIX, IngestReport, build_ingestor
from rag.config import ApiSettings
from rag.errors import DiskFullError, InputError, StoreError
from rag.service import RagService
from rag.types import Article

logger = logging.getLogger(__name__)

INCOMING = ".incoming"  # hidden: a folder walk (`python -m ingest UPLOAD_DIR`) skips it
STALE_REQUEST_SECONDS = 24 * 3600  # a request folder this old belongs to a process that died mid-request
_MULTI_DOCUMENT_SUFFIXES = (".jsonl", ".csv")
MAX_UPLOAD_NAME_BYTES = 200  # file systems allow 255 bytes; room is left for the suffix and a hash


COPY_BLOCK_BYTES = 1 << 20

Upload = tuple[str | None, BinaryIO]  # the name the sender gave (never used as a path as it is), and the bytes
# how an edge has a request's files ingested: awaited on the event loop, the work done on the ingest worker
IngestUploads = Callable[[Sequence[Upload]], Awaitable[IngestReport]]


def ingest_uploads(service: RagService, uploads: Sequence[Upload]) -> IngestReport:
    """Save, load and ingest the files of one request (see the module docstring). Raises InputError for no
    file, too many, too many bytes or a name sent twice; DiskFullError when the disk fills."""
    limits = service.settings.api
    if not uploads:
        raise InputError("files: none were sent; send at least one document")
    if len(uploads) > limits.max_upload_files:
        raise InputError(
            f"files: {len(uploads)} files in one request, over the limit of {limits.max_upload_files} "
            "(RAG_API_MAX_UPLOAD_FILES); send them in several requests"
        )
    names = [safe_upload_name(name) for name, _ in uploads]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"files: {', '.join(repeated)} sent more than once; give each file its own name")
    folder = limits.upload_dir.absolute()
    with _request_folder(folder) as request_folder:
        files = _save_all([content for _, content in uploads], [request_folder / name for name in names], limits)
        budget = _TextBudget(limits.max_upload_chars)
        items = _namespaced_items(files, folder, budget, service.settings.ingest.max_document_chars)
        report = build_ingestor(service).ingest_items(items, uploads=True)
        if report.stopped:
            raise DiskFullError(
                f"{report.stopped} ({report.added} added and {report.updated} updated before it; no file was kept)"
            )
        _keep(files, budget.files_with_articles, folder)
    _name_failures_by_upload(report, folder)
    return report


def _keep(files: Sequence[Path], names: set[str], folder: Path) -> None:
    """Move the files that gave articles into the upload folder, each in one rename."""
    for file in files:
        if file.name not in names:
            continue
        try:
            os.replace(file, folder / file.name)
        except OSError as exc:  # the articles are in; only the copy of record is missing
            logger.warning("could not keep the upload %s in %s: %s", file.name, folder, exc.strerror or exc)


class _TextBudget:
    """The characters of text a request may still ingest, and which files gave articles."""

    def __init__(self, max_chars: int) -> None:
        self.max_chars, self.used = max_chars, 0
        self.files_with_articles: set[str] = set()

    @property
    def spent(self) -> bool:
        return self.used >= self.max_chars

    def take(self, chars: int) -> bool:
        if self.used + chars > self.max_chars:
            self.used = self.max_chars
            return False
        self.used += chars
        return True

    def reason(self) -> str:
        return (
            f"not ingested: this request's documents reached {self.max_chars:,} characters of text "
            "(RAG_API_MAX_UPLOAD_CHARS); send this file, and those after it, in another request"
        )


def _namespaced_items(
    files: Sequence[Path], folder: Path, budget: _TextBudget, max_document_chars: int
) -> Iterator[Article | LoadFailure]:
    """The files' documents with upload ids and the kept file as origin, until the text budget is spent."""
    for file in files:
        if budget.spent:
            yield LoadFailure(str(file), budget.reason())
            continue
        for item in load_file(file, max_document_chars=max_document_chars):
            if isinstance(item, LoadFailure):
                yield item
            elif budget.take(len(item.text)):
                budget.files_with_articles.add(file.name)
                yield item.model_copy(update={"id": _upload_id(item.id, file), "origin": str(folder / file.name)})
            else:
                yield LoadFailure(str(file), budget.reason())
                break


def safe_upload_name(raw: str | None) -> str:
    """A file name an upload can be stored under: the last path component (either slash), without control
    characters or leading dots (never hidden, never `.`/`..`), and short enough for any file system (a long
    name keeps its extension and gains a hash of the original, so two long names that share a prefix stay
    distinct)."""
    name = PurePosixPath((raw or "").replace("\\", "/")).name
    name = "".join(ch for ch in name if unicodedata.category(ch)[0] != "C").strip().lstrip(".")
    if not name:
        return "upload.txt"
    if len(name.encode("utf-8")) <= MAX_UPLOAD_NAME_BYTES:
        return name
    path = PurePosixPath(name)
    suffix = path.suffix if len(path.suffix.encode("utf-8")) <= 16 else ""
    digest = hashlib.sha256(name.encode("utf-8")).hexdigest()[:12]
    budget = MAX_UPLOAD_NAME_BYTES - len(suffix.encode("utf-8")) - len(digest) - 1
    stem = path.name[: len(path.name) - len(suffix)] if suffix else path.name
    stem = stem.encode("utf-8")[:budget].decode("utf-8", errors="ignore")
    return f"{stem}-{digest}{suffix}"


def _upload_id(loaded_id: str, file: Path) -> str:
    """The id of a document from an uploaded file; `loaded_id` is what the loader gave it."""
    name = file.name
    if not name.lower().endswith(_MULTI_DOCUMENT_SUFFIXES):
        return f"{UPLOAD_ID_PREFIX}{name}"
    by_position = file.as_posix() + "#"  # the loader's id for a record without one: "path#line"
    if loaded_id.startswith(by_position):
        return f"{UPLOAD_ID_PREFIX}{name}#{loaded_id[len(by_position) :]}"
    return f"{UPLOAD_ID_PREFIX}{name}/{loaded_id}"


@contextmanager
def _request_folder(folder: Path) -> Iterator[Path]:
    """A folder of the request's own under UPLOAD_DIR/.incoming, removed on the way out whatever happens."""
    incoming = folder / INCOMING
    try:
        incoming.mkdir(parents=True, exist_ok=True)
        _remove_stale_requests(incoming)
        path = Path(tempfile.mkdtemp(dir=incoming))
    except OSError as exc:
        raise _saving_error(exc, incoming) from exc
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def _remove_stale_requests(incoming: Path) -> None:
    cutoff = time.time() - STALE_REQUEST_SECONDS
    for entry in incoming.iterdir():
        try:
            if entry.stat().st_mtime < cutoff:
                shutil.rmtree(entry, ignore_errors=True)
        except OSError:  # removed meanwhile by another request
            continue


def _save_all(contents: Sequence[BinaryIO], targets: list[Path], limits: ApiSettings) -> list[Path]:
    """Write each file into the request's folder, refusing the request once the files pass RAG_API_MAX_UPLOAD_MB
    together (the folder, and so everything written, goes with the request)."""
    limit = int(limits.max_upload_mb * (1 << 20))
    written = 0
    for content, target in zip(contents, targets, strict=True):
        try:
            with target.open("wb") as handle:
                while block := content.read(COPY_BLOCK_BYTES):
                    written += len(block)
                    if written > limit:
                        raise InputError(
                            f"files: together over RAG_API_MAX_UPLOAD_MB ({limits.max_upload_mb:g} MB); send "
                            "fewer or smaller files"
                        )
                    handle.write(block)
        except OSError as exc:
            raise _saving_error(exc, target.parent) from exc
    return targets


def _saving_error(exc: OSError, where: Path) -> StoreError:
    if exc.errno == errno.ENOSPC:
        return DiskFullError(
            f"no space left on the device while saving the uploaded files in {where.parent}; nothing was kept "
            "or ingested. Free disk space and send them again"
        )
    return StoreError(
        f"cannot save the uploaded files in {where.parent} ({exc.strerror or exc}); check RAG_API_UPLOAD_DIR"
    )


def _name_failures_by_upload(report: IngestReport, folder: Path) -> None:
    """Failures name the file as it was sent ("notes.md", "data.jsonl:3"), not where the server put it."""
    incoming = str(folder / INCOMING) + os.sep
    kept = str(folder) + os.sep
    for index, failure in enumerate(report.failed):
        path = failure.path
        if path.startswith(incoming):
            path = path[len(incoming) :].split(os.sep, 1)[-1]
        elif path.startswith(kept):
            path = path[len(kept) :]
        report.failed[index] = LoadFailure(path, failure.reason)
