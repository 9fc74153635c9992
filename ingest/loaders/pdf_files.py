""".pdf: the text layer, read by pypdf."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.cleaning import first_meaningful_line, normalize_text, split_leading_date
from ingest.loaders.base import CsvColumns, clean_title
from rag.errors import DocumentError
from rag.types import Article

_MIN_PDF_LETTERS = 20
_JUNK_PDF_TITLE = re.compile(
    r"^(?:untitled|제목\s*없음|microsoft\s+\w+\s*-|.*\.(?:docx?|hwpx?|pptx?|xlsx?|pdf)$)", re.I
)


def load_pdf_file(path: Path, _columns: CsvColumns) -> Iterator[Article]:
    """The PDF's text layer, pages separated by a blank line; layout line breaks are kept."""
    # only PDF files need pypdf
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        _unlock(reader)
        pages = [page.extract_text() or "" for page in reader.pages]
    except PdfReadError as exc:
        raise DocumentError(f"not a readable PDF ({exc}); check the file opens in a PDF viewer") from exc
    if not pages:
        raise DocumentError("the PDF has no pages")
    text = normalize_text("\n\n".join(pages))
    if sum(ch.isalpha() for ch in text) < _MIN_PDF_LETTERS:
        raise DocumentError("no text layer (scanned PDF?); OCR it first")
    date, text = split_leading_date(text)
    yield Article(
        id=path.as_posix(),
        text=text,
        title=clean_title(_pdf_title(reader) or first_meaningful_line(text) or path.stem),
        date=date,
        origin=str(path),
    )


def _unlock(reader: Any) -> None:
    if not reader.is_encrypted:
        return
    try:
        unlocked = reader.decrypt("")
    except Exception as exc:  # pypdf raises DependencyError for AES without its crypto extra
        raise DocumentError(f"the PDF is encrypted and cannot be opened ({exc}); save an unencrypted copy") from exc
    if not unlocked:
        raise DocumentError("the PDF is password-protected; save a copy without the password")


def _pdf_title(reader: Any) -> str | None:
    try:
        title = reader.metadata.title if reader.metadata else None
    except Exception:  # broken metadata is not worth failing the document for
        return None
    if not isinstance(title, str) or not title.strip() or _JUNK_PDF_TITLE.match(title.strip()):
        return None
    return title
