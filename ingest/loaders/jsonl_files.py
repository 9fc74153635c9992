""".jsonl: the corpus format of docs/interfaces.md (one article per line) and common dump variants."""

from __future__ import annotations

import codecs
import datetime as dt
import io
import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ingest.cleaning import normalize_text, parse_date, strip_republication_notice, unescape_entities
from ingest.loaders.base import LoadFailure, LoadOptions, check_length, check_unique, clean_title
from ingest.loaders.decoding import BINARY_REASON, BOMS, SNIFF_BYTES, detect_encoding
from rag.errors import DocumentError
from rag.types import Article

# Field names tried in order; the docs/interfaces.md names come first.
_TEXT_KEYS = ("text", "content", "body")
_TEXT_FALLBACK_KEYS = ("content_text", "summary")  # the longest non-stub of these wins
_TITLE_KEYS = ("title", "headline")
_URL_KEYS = ("url", "original_url", "link")
_DATE_KEYS = ("date", "publish_date", "published_at", "published", "approved_at", "pub_date")
_SOURCE_KEYS = ("source", "ministry", "source_name", "publisher")


def load_jsonl_file(path: Path, options: LoadOptions) -> Iterator[Article | LoadFailure]:
    """One record per line; a bad line is a failure named "file:LINE" and the other lines still load."""
    origin = str(path)
    seen: dict[str, int] = {}
    records = 0
    wide = _wide_unicode(path)
    encoding = "utf-8" if wide is not None else _sniff_jsonl_encoding(path)
    with io.BytesIO(wide) if wide is not None else path.open("rb") as handle:
        for number, raw in enumerate(handle, start=1):
            # not only on line 1: `cat a.jsonl b.jsonl` leaves b's byte-order mark in the middle of the file
            raw = raw.removeprefix(codecs.BOM_UTF8)
            if not raw.strip():
                continue
            records += 1
            try:
                record = _parse_json_line(raw, encoding)
                article = article_from_record(record, origin, fallback_id=f"{path.as_posix()}#{number}")
                check_unique(article.id, number, seen, "line")
                check_length(article, options.max_document_chars)
            except DocumentError as exc:
                yield LoadFailure(f"{origin}:{number}", exc.message)
                continue
            except ValidationError as exc:
                yield LoadFailure(f"{origin}:{number}", _validation_reason(exc))
                continue
            yield article
    if records == 0:
        raise DocumentError("empty file: no JSON lines")


def _validation_reason(exc: ValidationError) -> str:
    error = exc.errors()[0]
    field = ".".join(str(part) for part in error["loc"]) or "record"
    return f"field '{field}' is invalid: {error['msg']}"


def _wide_unicode(path: Path) -> bytes | None:
    """A UTF-16/32 file (it starts with its BOM; Windows tools write them) re-encoded as UTF-8, else None:
    its lines cannot be split on the byte b"\\n" as they come."""
    with path.open("rb") as handle:
        head = handle.read(4)
    for bom, encoding in BOMS:
        if encoding != "utf-8" and head.startswith(bom):
            try:
                return path.read_bytes()[len(bom) :].decode(encoding).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise DocumentError(f"not valid {encoding.upper()} text; save the file as UTF-8") from exc
    return None


def _sniff_jsonl_encoding(path: Path) -> str:
    """UTF-8 (the contract's encoding) unless the start of the file says otherwise; NUL bytes mean binary."""
    with path.open("rb") as handle:
        head = handle.read(SNIFF_BYTES)
    if b"\x00" in head:
        raise DocumentError(BINARY_REASON)
    decoder = codecs.getincrementaldecoder("utf-8")()
    try:
        decoder.decode(head.removeprefix(codecs.BOM_UTF8), final=False)
        return "utf-8"
    except UnicodeDecodeError:
        pass
    return detect_encoding(head) or "utf-8"


def _parse_json_line(raw: bytes, encoding: str) -> Mapping[str, Any]:
    try:
        line = raw.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DocumentError(f"line is not valid {encoding} text; save the file as UTF-8") from exc
    try:
        record = json.loads(line)
    except json.JSONDecodeError as exc:
        raise DocumentError(f"invalid JSON ({exc.msg} at column {exc.colno}); fix or remove this line") from exc
    except (ValueError, RecursionError) as exc:
        # a number of thousands of digits, or arrays nested thousands deep: valid JSON no article needs
        what = "nested too deeply" if isinstance(exc, RecursionError) else "holds a number too long to read"
        raise DocumentError(f"the line {what}; fix or remove this line") from exc
    if not isinstance(record, dict):
        raise DocumentError(f"line is a JSON {type(record).__name__}, not an object; each line must be one article")
    return record


def article_from_record(record: Mapping[str, Any], origin: str, fallback_id: str) -> Article:
    """An Article from a corpus record (docs/interfaces.md keys, or a common alternate per field).

    Raises DocumentError naming the field when the text is missing or a field has the wrong type.
    Dates never fail: an unreadable date is None.
    """
    title = clean_title(_first_string(record, _TITLE_KEYS))
    text = _record_text(record, title)
    url = _first_string(record, _URL_KEYS)
    return Article(
        id=_record_id(record) or url or fallback_id,
        text=text,
        title=title,
        date=_record_date(record),
        url=url,
        source=clean_title(_first_string(record, _SOURCE_KEYS)),
        origin=origin,
    )


def _first_string(record: Mapping[str, Any], keys: Sequence[str]) -> str | None:
    """The first non-blank string among `keys`; a non-string value is an error naming its field."""
    for key in keys:
        value = record.get(key)
        if value is None:
            continue
        if not isinstance(value, str):
            raise DocumentError(f"field '{key}' must be a string, not {_json_type(value)}")
        if value.strip():
            return value.strip()
    return None


def _json_type(value: Any) -> str:
    names = {bool: "a boolean", int: "a number", float: "a number", list: "a list", dict: "an object"}
    return names.get(type(value), type(value).__name__)


def _record_id(record: Mapping[str, Any]) -> str | None:
    value = record.get("id")
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value)
    return _first_string(record, ("id",))


def _record_text(record: Mapping[str, Any], title: str | None) -> str:
    """`text`, else `content`/`body`, else the longest of `content_text`/`summary` that is more than the
    korea.kr republication notice. When a dump holds nothing but that notice, the title is the text:
    the release exists and its title is all the dump says about it."""
    primary = _first_string(record, _TEXT_KEYS)
    text = normalize_text(unescape_entities(primary)) if primary else ""
    if text:
        return text
    fallbacks = [value for value in (_first_string(record, (key,)) for key in _TEXT_FALLBACK_KEYS) if value]
    best = max((strip_republication_notice(unescape_entities(value)) for value in fallbacks), key=len, default="")
    if best:
        return best
    if fallbacks and title:
        return title
    present = [key for key in (*_TEXT_KEYS, *_TEXT_FALLBACK_KEYS) if key in record]
    if present:
        raise DocumentError(f"field '{present[0]}' is empty; every article needs text")
    raise DocumentError("missing field 'text' (or one of: content, body, content_text, summary)")


def _record_date(record: Mapping[str, Any]) -> dt.date | None:
    for key in _DATE_KEYS:
        value = record.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, str):
            date = parse_date(value)
            if date:
                return date
    return None
