""".pdf: the text layer, read by pypdf."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.cleaning import first_meaningful_line, normalize_text, split_leading_date
from ingest.loaders.base import LoadOptions, clean_title, too_long_reason
from ingest.loaders.pdf_text import OverBudget, read_pages
from rag.errors import DocumentError
from rag.types import Article

_MIN_PDF_LETTERS = 20
_JUNK_PDF_TITLE = re.compile(
    r"^(?:untitled|제목\s*없음|microsoft\s+\w+\s*-|.*\.(?:docx?|hwpx?|pptx?|xlsx?|pdf)$)", re.I
)


def load_pdf_file(path: Path, options: LoadOptions) -> Iterator[Article]:
    """The PDF's text layer, pages separated by a blank line; layout line breaks are kept. Reading stops once
    the text is known to be over `options.max_document_chars` (see pdf_text.py)."""
    # only PDF files need pypdf
    from pypdf import PdfReader
    from pypdf.errors import PdfReadError

    try:
        reader = PdfReader(path)
        _unlock(reader)
        pages = read_pages(reader, options.max_document_chars)
    except PdfReadError as exc:
        raise DocumentError(f"not a readable PDF ({exc}); check the file opens in a PDF viewer") from exc
    except OverBudget as over:
        about = "about " if over.estimated else ""
        stopped = f" by page {over.page} of {over.pages}, where reading stopped"
        reason = too_long_reason(over.chars, options.max_document_chars, stopped=stopped, about=about)
        raise DocumentError(reason) from None
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
