""".csv: one article per row; columns named by a mapping or detected from English/Korean headers."""

from __future__ import annotations

import csv
import io
import itertools
import logging
import re
import sys
from collections.abc import Iterator, Mapping
from dataclasses import fields
from pathlib import Path

from ingest.cleaning import normalize_text, parse_date, unescape_entities
from ingest.loaders.base import CsvColumns, LoadFailure, LoadOptions, check_length, check_unique, clean_title
from ingest.loaders.decoding import read_text
from rag.errors import DocumentError
from rag.types import Article

logger = logging.getLogger(__name__)


# Header names (lower-cased, spaces and underscores removed) recognised for each field, in priority order.
_CSV_HEADERS: dict[str, tuple[str, ...]] = {
    "id": ("id", "docid", "articleid", "newsid", "기사id", "문서id"),
    "title": ("title", "headline", "subject", "제목", "기사제목", "헤드라인"),
    "text": ("text", "content", "body", "contents", "article", "내용", "본문", "기사내용", "본문내용", "기사본문"),
    "date": (
        "date",
        "publishdate",
        "publishedat",
        "published",
        "pubdate",
        "datetime",
        "작성일",
        "날짜",
        "일자",
        "등록일",
        "게시일",
        "발행일",
        "기사일자",
        "입력일",
    ),
    "url": ("url", "link", "href", "출처", "링크", "주소", "원문링크", "기사url", "원문url"),
    "source": ("source", "publisher", "press", "media", "outlet", "언론사", "매체", "출처명", "기관", "부처"),
}
_URL_LIKE = re.compile(r"^(?:https?://|www\.)\S+$", re.IGNORECASE)
_DELIMITERS = (",", "\t", ";", "|")


def load_csv_file(path: Path, options: LoadOptions) -> Iterator[Article | LoadFailure]:
    """One article per row. A bad row is a failure named "file:LINE", the line it starts on (a quoted field
    may span lines); an article without an id column is "file#ROW" (the header is row 1)."""
    text = read_text(path)
    _raise_csv_field_limit()
    origin = str(path)
    records = _csv_records(text, _guess_delimiter(text))
    header_record = next(records, None)
    header = header_record[2] if header_record else None
    if isinstance(header, str):
        raise DocumentError(f"the header row cannot be read: {header}")
    if not header or not any(cell.strip() for cell in header):
        raise DocumentError("empty file: no header row")
    header = [cell.strip() for cell in header]
    mapping = _resolve_columns(header, options.csv_columns)
    seen: dict[str, int] = {}
    rows = 0
    for number, line, row in records:
        if isinstance(row, str):
            yield LoadFailure(f"{origin}:{line}", row)
            continue
        if not any(cell.strip() for cell in row):
            continue
        if [cell.strip().lstrip("\ufeff") for cell in row] == header:
            # files joined with `cat a.csv b.csv` repeat the header (with b's byte-order mark): not an article
            logger.info("%s:%d: the header row again; skipped", origin, line)
            continue
        rows += 1
        try:
            article = _article_from_row(row, header, mapping, origin, f"{path.as_posix()}#{number}")
            check_unique(article.id, line, seen, "line")
            check_length(article, options.max_document_chars)
        except DocumentError as exc:
            yield LoadFailure(f"{origin}:{line}", exc.message)
            continue
        yield article
    if rows == 0:
        raise DocumentError("no data rows under the header")


def _raise_csv_field_limit() -> None:
    """News bodies easily exceed csv's default 128 KiB field limit."""
    csv.field_size_limit(min(sys.maxsize, 2**31 - 1))


def _guess_delimiter(text: str) -> str:
    first_line = text.split("\n", 1)[0]
    counts = {d: first_line.count(d) for d in _DELIMITERS}
    best = max(_DELIMITERS, key=lambda d: counts[d])
    return best if counts[best] else ","


# Appended after the text to see whether the last record ends inside a quote: a private-use character no
# export writes. csv's lenient mode reads an unclosed quote to the end of the file without a word.
_CSV_END_MARK = "\ue000end of file\ue000"


def _csv_records(text: str, delimiter: str) -> Iterator[tuple[int, int, list[str] | str]]:
    """(record number, the line it starts on, its cells or why it cannot be read), the header being record 1.

    A quote that opens a field and never closes would swallow every line after it into that one field, and the
    rows it swallowed would be lost silently. That record is reported instead, and reading starts again on the
    line after the one where it began (so one stray quote costs one row, not the rest of the file).
    """
    lines = io.StringIO(text, newline="").readlines()
    if lines and not lines[-1].endswith(("\n", "\r")):
        lines[-1] += "\n"
    lines.append(_CSV_END_MARK)
    offset = 0  # lines skipped before the current reader started
    reader = csv.reader(lines, delimiter=delimiter)
    for number in itertools.count(1):
        first_line = offset + reader.line_num + 1
        try:
            row = next(reader)
        except StopIteration:
            return
        except csv.Error as exc:
            yield number, first_line, f"malformed CSV row ({exc}); check its quoting"
            continue
        if row == [_CSV_END_MARK]:
            return
        if row and row[-1].endswith(_CSV_END_MARK):
            after = len(lines) - 1 - first_line
            taken = f", which held the {after} lines after it (read again as rows of their own)" if after else ""
            reason = (
                "a quote opened in this row is never closed, so the field runs to the end of "
                f'the file{taken}; close the quote, or double a quote that belongs to the text ("")'
            )
            yield number, first_line, reason
            offset = first_line
            reader = csv.reader(itertools.islice(lines, offset, None), delimiter=delimiter)
            continue
        yield number, first_line, row


def _resolve_columns(header: list[str], columns: CsvColumns) -> dict[str, int]:
    """Field name → column index, from the explicit mapping or else the header names."""
    names = [f.name for f in fields(CsvColumns)]
    mapping = {name: _named_column(header, getattr(columns, name), name) for name in names if getattr(columns, name)}
    for name in names:
        index = None if name in mapping else _detect_column(header, name, mapping)
        if index is not None:
            mapping[name] = index
    if "text" not in mapping:
        raise DocumentError(
            f"no text column found in the header {header}; name it with the CSV column option (e.g. text='본문')"
        )
    return mapping


def _named_column(header: list[str], name: str, field: str) -> int:
    folded = [h.casefold() for h in header]
    if name in header:
        return header.index(name)
    if name.casefold() in folded:
        return folded.index(name.casefold())
    raise DocumentError(f"column '{name}' given for {field} is not in the header {header}")


def _header_key(name: str) -> str:
    return re.sub(r"[\s_\-]", "", name.casefold())


def _detect_column(header: list[str], field: str, taken: Mapping[str, int]) -> int | None:
    keys = [_header_key(h) for h in header]
    for candidate in _CSV_HEADERS[field]:
        for index, key in enumerate(keys):
            if key == candidate and index not in taken.values():
                return index
    return None


_FieldValues = dict[str, str | None]


def _article_from_row(
    row: list[str], header: list[str], mapping: Mapping[str, int], origin: str, fallback_id: str
) -> Article:
    if len(row) > len(header):
        raise DocumentError(
            f"row has {len(row)} fields but the header has {len(header)}; quote fields that contain the delimiter"
        )
    values: _FieldValues = {
        field: (row[index].strip() or None) if index < len(row) else None for field, index in mapping.items()
    }
    _sort_url_and_source(values)
    body = normalize_text(unescape_entities(values.get("text") or ""))
    if not body:
        raise DocumentError(f"column '{header[mapping['text']]}' (the text) is empty")
    return Article(
        id=values.get("id") or values.get("url") or fallback_id,
        text=body,
        title=clean_title(values.get("title")),
        date=parse_date(values.get("date")),
        url=values.get("url"),
        source=clean_title(values.get("source")),
        origin=origin,
    )


def _sort_url_and_source(values: _FieldValues) -> None:
    """'출처' (and 'source') hold a URL in some exports and a publisher name in others: route by content."""
    url, source = values.get("url"), values.get("source")
    if url and not _URL_LIKE.match(url):
        values["url"] = None
        values["source"] = source or url
    elif source and _URL_LIKE.match(source) and not url:
        values["url"], values["source"] = source, None
