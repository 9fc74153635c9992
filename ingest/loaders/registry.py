"""Files → cleaned `Article`s, one file at a time, by the loader registered for each suffix.

Formats by suffix: .txt .md .markdown (scraped pages or plain notes), .html .htm (main text via
trafilatura), .jsonl (the corpus format of docs/interfaces.md and common dump variants), .csv (column mapping or
auto-detected English/Korean headers), .pdf (text layer via pypdf).

A problem with one file, or one line of a JSONL/CSV file, becomes a `LoadFailure` in the stream and the
rest goes on; nothing here raises for bad input. `Article.text` is final: chunk and citation offsets are
computed on exactly this text.

Ids, deterministic across runs: the record's `id` (JSONL) or id column (CSV); else the URL; else, for a
file holding one document, its path in posix form as discovered; else (a JSONL line or CSV row without
id or URL) `"{path}#{number}"` with the line number (JSONL) or row number (CSV, the header is row 1, as a
spreadsheet shows it). A repeated id within one file is reported on the later line, which is skipped.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence
from pathlib import Path

from ingest.loaders.base import (
    DEFAULT_MAX_DOCUMENT_CHARS,
    HTML_SUFFIXES,
    TEXT_SUFFIXES,
    CsvColumns,
    Loader,
    LoadFailure,
    LoadOptions,
    too_long_reason,
    unsupported_reason,
)
from ingest.loaders.csv_files import load_csv_file
from ingest.loaders.discovery import discover_files
from ingest.loaders.html_files import load_html_file
from ingest.loaders.jsonl_files import load_jsonl_file
from ingest.loaders.pdf_files import load_pdf_file
from ingest.loaders.text_files import load_text_file
from rag.errors import DocumentError
from rag.types import Article

logger = logging.getLogger(__name__)


MAX_FILE_BYTES = 50 * 1024 * 1024

_LOADERS: dict[str, Loader] = {
    **dict.fromkeys(TEXT_SUFFIXES, load_text_file),
    **dict.fromkeys(HTML_SUFFIXES, load_html_file),
    ".jsonl": load_jsonl_file,
    ".csv": load_csv_file,
    ".pdf": load_pdf_file,
}


def iter_documents(
    paths: Sequence[Path], csv_columns: CsvColumns | None = None, *, max_document_chars: int | None = None
) -> Iterator[Article | LoadFailure]:
    """Articles and failures from every file under `paths`, streamed one file at a time."""
    files, failures = discover_files(paths)
    yield from failures
    for file in files:
        yield from load_file(file, csv_columns, max_document_chars=max_document_chars)


def load_file(
    path: Path, csv_columns: CsvColumns | None = None, *, max_document_chars: int | None = None
) -> Iterator[Article | LoadFailure]:
    """Articles from one file; any problem comes out as a `LoadFailure` instead of an exception. A document
    whose text is longer than `max_document_chars` (default DEFAULT_MAX_DOCUMENT_CHARS) is a failure too."""
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        yield LoadFailure(str(path), unsupported_reason(path))
        return
    options = LoadOptions(csv_columns or CsvColumns(), max_document_chars or DEFAULT_MAX_DOCUMENT_CHARS)
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentError(
                f"file is {_megabytes(size)}, over the {_megabytes(MAX_FILE_BYTES)} limit; split it into smaller files"
            )
        for item in loader(path, options):
            if isinstance(item, Article) and len(item.text) > options.max_document_chars:
                item = LoadFailure(str(path), too_long_reason(len(item.text), options.max_document_chars))
            yield item
    except DocumentError as exc:
        yield LoadFailure(str(path), exc.message)
    except OSError as exc:
        yield LoadFailure(str(path), f"cannot read the file: {exc.strerror or exc}; check it exists and is readable")
    except Exception as exc:  # a parser crash on one odd file must not stop the others
        logger.debug("unexpected error loading %s", path, exc_info=True)
        yield LoadFailure(
            str(path), f"could not be parsed ({type(exc).__name__}: {exc}); check that the file opens normally"
        )


def _megabytes(size: int) -> str:
    return f"{size / (1024 * 1024):.1f} MB" if size >= 1024 * 1024 else f"{size} bytes"
