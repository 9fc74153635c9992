""".html / .htm: the main text and metadata, extracted by trafilatura."""

from __future__ import annotations

import codecs
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from ingest.cleaning import clean_scraped_text, first_meaningful_line, has_prose, parse_date, split_leading_date
from ingest.loaders.base import LoadOptions, clean_title
from ingest.loaders.decoding import KOREAN_CODECS, check_text, decode_bytes, decodes
from ingest.loaders.html_charset import declared_charset
from ingest.loaders.html_flatten import flatten_html
from rag.errors import DocumentError
from rag.types import Article

logger = logging.getLogger(__name__)


def load_html_file(path: Path, _options: LoadOptions) -> Iterator[Article]:
    """Main text and metadata (title, date, canonical URL, site name) extracted by trafilatura."""
    html = _decode_html(path.read_bytes())
    page, text = _extract_html(html)
    if not has_prose(text):
        # lxml refuses trees deeper than 255 levels, and trafilatura then sees an empty page
        flat, deepest = flatten_html(html, MAX_HTML_DEPTH)
        if deepest > MAX_HTML_DEPTH:
            logger.warning("%s: tags nest %d levels deep; those below %d were dropped", path, deepest, MAX_HTML_DEPTH)
            page, text = _extract_html(flat)
    # trafilatura's fallback returns menu words ("Home") for a page without an article: not a document.
    if not has_prose(text):
        raise DocumentError("no main text found in the HTML page (only navigation, menus or scripts)")
    date, text = split_leading_date(text)
    url = getattr(page, "url", None) or None
    yield Article(
        id=url or path.as_posix(),
        text=text,
        title=clean_title(getattr(page, "title", None) or first_meaningful_line(text) or path.stem),
        date=parse_date(getattr(page, "date", None)) or date,
        url=url,
        source=clean_title(getattr(page, "sitename", None) or getattr(page, "hostname", None)),
        origin=str(path),
    )


def _extract_html(html: str) -> tuple[Any, str]:
    """trafilatura's extraction (None for nothing) and its text, cleaned, a leading date line kept."""
    # trafilatura (lxml and its extractors) is slow to import; only HTML files need it
    import trafilatura

    page = trafilatura.bare_extraction(
        html, include_comments=False, include_tables=True, favor_precision=True, with_metadata=True
    )
    body = getattr(page, "text", None) if page is not None else None
    return page, clean_scraped_text(body or "")


MAX_HTML_DEPTH = 200  # below lxml's hard limit of 255, with room for the html/body/article levels it adds


def _decode_html(data: bytes) -> str:
    """Decode with the page's declared charset when it works, else like any text file."""
    encoding = declared_charset(data)
    if encoding:
        encoding = "cp949" if encoding.replace("-", "_") in KOREAN_CODECS else encoding
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        if decodes(data, encoding):
            return check_text(data.decode(encoding))
    return decode_bytes(data)
