""".html / .htm: the main text and metadata, extracted by trafilatura."""

from __future__ import annotations

import codecs
import logging
import re
from collections.abc import Iterator
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from ingest.cleaning import clean_scraped_text, first_meaningful_line, has_prose, parse_date, split_leading_date
from ingest.loaders.base import CsvColumns, clean_title
from ingest.loaders.decoding import KOREAN_CODECS, SNIFF_BYTES, check_text, decode_bytes, decodes
from rag.errors import DocumentError
from rag.types import Article

logger = logging.getLogger(__name__)


_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def load_html_file(path: Path, _columns: CsvColumns) -> Iterator[Article]:
    """Main text and metadata (title, date, canonical URL, site name) extracted by trafilatura."""
    html = _decode_html(path.read_bytes())
    page, text = _extract_html(html)
    if not has_prose(text):
        # lxml refuses trees deeper than 255 levels, and trafilatura then sees an empty page
        flat, deepest = _flatten_html(html, MAX_HTML_DEPTH)
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
_VOID_TAGS = frozenset(
    {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source", "track", "wbr"}
)
_RAW_TEXT_TAGS = frozenset({"script", "style", "template", "noscript"})


class _Flattener(HTMLParser):
    """Re-writes a page keeping only tags up to `limit` levels deep; deeper tags go, their text stays
    (script and style bodies go with their tags). Also measures the deepest nesting seen."""

    def __init__(self, limit: int) -> None:
        super().__init__(convert_charrefs=True)
        self.limit, self.deepest = limit, 0
        self.out: list[str] = []
        self.stack: list[tuple[str, bool]] = []  # (tag, written)
        self.raw_text_depth = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _VOID_TAGS:
            return
        written = len(self.stack) < self.limit
        self.stack.append((tag, written))
        self.deepest = max(self.deepest, len(self.stack))
        self.raw_text_depth += tag in _RAW_TEXT_TAGS
        if written:
            self.out.append(self.get_starttag_text() or "")

    def handle_endtag(self, tag: str) -> None:
        if not any(open_tag == tag for open_tag, _ in self.stack):
            return
        while self.stack:
            open_tag, written = self.stack.pop()
            self.raw_text_depth -= open_tag in _RAW_TEXT_TAGS
            if written:
                self.out.append(f"</{open_tag}>")
            if open_tag == tag:
                return

    def handle_data(self, data: str) -> None:
        if not self.raw_text_depth:
            self.out.append(html_escape(data, quote=False))


def _flatten_html(html: str, limit: int) -> tuple[str, int]:
    """The page with tags below `limit` levels dropped, and how deep its tags nested."""
    parser = _Flattener(limit)
    parser.feed(html)
    parser.close()
    return "".join(parser.out), parser.deepest


def _decode_html(data: bytes) -> str:
    """Decode with the page's declared charset when it works, else like any text file."""
    declared = _META_CHARSET.search(data[:SNIFF_BYTES])
    if declared:
        encoding = declared.group(1).decode("ascii").lower()
        encoding = "cp949" if encoding.replace("-", "_") in KOREAN_CODECS else encoding
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        if decodes(data, encoding):
            return check_text(data.decode(encoding))
    return decode_bytes(data)
