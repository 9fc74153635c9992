"""Files sent to the running app (the `POST /v1/ingest` route and the chat page's upload), ingested alike.

The embedded store allows one process, so while the app runs, uploads are how articles get in. Both edges
call `ingest_uploads`: the same names, limits and pipeline whichever way a file arrives.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import Any, BinaryIO

from ingest.pipeline import IngestReport, build_ingestor
from rag.errors import InputError
from rag.http_guard import safe_upload_name
from rag.service import RagService

UPLOAD_FILES_PER_LOCK = 8
COPY_BLOCK_BYTES = 1 << 20

Upload = tuple[str | None, BinaryIO]  # the name the sender gave, and the file's bytes


def ingest_uploads(
    service: RagService,
    uploads: Sequence[Upload],
    *,
    batch_guard: Callable[[], AbstractContextManager[Any]] = nullcontext,
) -> IngestReport:
    """Keep the files under the upload folder and ingest them, a few at a time under `batch_guard`.

    Uploads are kept under a stable name: the file path is the article id, so re-uploading a file updates
    its article instead of adding a copy. Together they may not exceed RAG_API_MAX_UPLOAD_MB.
    """
    settings = service.settings
    if not uploads:
        raise InputError("files: none were sent; send at least one document")
    folder = settings.api.upload_dir
    folder.mkdir(parents=True, exist_ok=True)
    names = [safe_upload_name(name) for name, _ in uploads]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise InputError(f"files: {', '.join(repeated)} sent more than once; give each file its own name")
    paths = _save_all(uploads, [folder / name for name in names], int(settings.api.max_upload_mb * (1 << 20)))
    report = IngestReport()
    # a few files at a time: questions asked during a long upload wait for one batch, not for all of it
    for start in range(0, len(paths), UPLOAD_FILES_PER_LOCK):
        with batch_guard():
            report.add(build_ingestor(service).ingest_paths(paths[start : start + UPLOAD_FILES_PER_LOCK]))
    _remove_rejected(report, paths)
    return report


def _save_all(uploads: Sequence[Upload], targets: list[Path], limit_bytes: int) -> list[Path]:
    """Write every file beside its target first and move them into place only when all fit the limit: an
    upload refused half way leaves the files kept from earlier uploads as they were."""
    partials = [target.with_name(target.name + ".partial") for target in targets]
    written = 0
    try:
        for (_, source), partial in zip(uploads, partials, strict=True):
            with partial.open("wb") as handle:
                while block := source.read(COPY_BLOCK_BYTES):
                    written += len(block)
                    if written > limit_bytes:
                        raise InputError(
                            f"files: together over RAG_API_MAX_UPLOAD_MB ({limit_bytes / (1 << 20):g} MB); send "
                            "fewer or smaller files"
                        )
                    handle.write(block)
    except BaseException:
        for partial in partials:
            partial.unlink(missing_ok=True)
        raise
    for partial, target in zip(partials, targets, strict=True):
        partial.replace(target)
    return targets


def _remove_rejected(report: IngestReport, paths: list[Path]) -> None:
    """A file that failed as a whole (binary, unsupported, empty) is not kept: the report names it, and a
    folder of rejects would only grow. Files with some bad lines keep their good ones ingested, so stay."""
    rejected = {failure.path for failure in report.failed}
    for path in paths:
        if str(path) in rejected:
            path.unlink(missing_ok=True)
