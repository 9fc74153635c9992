""".txt / .md / .markdown: scraped pages or plain notes."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

from ingest.cleaning import clean_scraped_text, first_meaningful_line, parse_date, split_leading_date
from ingest.loaders.base import LoadOptions, clean_title, require_text
from ingest.loaders.decoding import read_text
from ingest.markdown_text import read_markdown, split_front_matter
from rag.types import Article


def load_text_file(path: Path, _options: LoadOptions) -> Iterator[Article]:
    """A scraped page or note. A date-only line among the first three lines becomes `date` and is removed
    from the text; the first line (for Markdown the first `# heading`) becomes the title but stays in the text."""
    raw = read_text(path)
    meta: dict[str, str] = {}
    heading = None
    if path.suffix.lower() != ".txt":
        meta, raw = split_front_matter(raw)
        raw, heading = read_markdown(raw)
    date, text = split_leading_date(clean_scraped_text(raw))
    require_text(text)
    title = meta.get("title") or heading or first_meaningful_line(text) or path.stem
    yield Article(
        id=meta.get("url") or path.as_posix(),
        text=text,
        title=clean_title(title),
        date=parse_date(meta.get("date")) or date,
        url=meta.get("url") or None,
        source=meta.get("source") or None,
        origin=str(path),
    )
