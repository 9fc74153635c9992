"""Find input files and turn them into cleaned `Article`s, one file at a time.

Formats by suffix: .txt .md .markdown (scraped pages or plain notes), .html .htm (main text via
trafilatura), .jsonl (the CONTRACT corpus format and common dump variants), .csv (column mapping or
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

import codecs
import csv
import datetime as dt
import io
import itertools
import json
import logging
import os
import re
import sys
import unicodedata
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, fields
from html import escape as html_escape
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from ingest.cleaning import (
    clean_scraped_text,
    first_meaningful_line,
    has_prose,
    markdown_heading,
    markdown_to_text,
    normalize_inline,
    normalize_text,
    parse_date,
    split_front_matter,
    split_leading_date,
    strip_republication_notice,
    unescape_entities,
)
from rag.errors import DocumentError
from rag.types import Article

logger = logging.getLogger(__name__)

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
SUPPORTED_SUFFIXES: frozenset[str] = TEXT_SUFFIXES | HTML_SUFFIXES | {".jsonl", ".csv", ".pdf"}
MAX_FILE_BYTES = 50 * 1024 * 1024

_SNIFF_BYTES = 64 * 1024
_MAX_TITLE_CHARS = 300


@dataclass(frozen=True)
class LoadFailure:
    """An input that could not be loaded: `path` is "dir/file.jsonl", or "dir/file.jsonl:17" for one line."""

    path: str
    reason: str


@dataclass(frozen=True)
class CsvColumns:
    """Which CSV column holds each field; None means detect it from the header names."""

    id: str | None = None
    title: str | None = None
    text: str | None = None
    date: str | None = None
    url: str | None = None
    source: str | None = None


# --- discovery ---------------------------------------------------------------------------------------


def discover_files(paths: Sequence[Path], *, log: bool = True) -> tuple[list[Path], list[LoadFailure]]:
    """Expand files and folders into a deterministic list of supported files.

    Folders are walked recursively in sorted order, skipping hidden files and folders (a leading dot) and,
    silently, files of unsupported types (their count is logged). A file named explicitly is taken even if
    hidden, but an unsupported type or a missing path is a failure. A file reached twice is listed once.
    `log=False` keeps quiet about skipped files (for a first pass that only counts them).
    """
    files: list[Path] = []
    failures: list[LoadFailure] = []
    seen: set[Path] = set()
    for path in paths:
        found, problems = _expand(Path(path), log)
        failures.extend(problems)
        for file in found:
            key = _identity(file)
            if key not in seen:
                seen.add(key)
                files.append(file)
    return files, failures


def _expand(path: Path, log: bool) -> tuple[list[Path], list[LoadFailure]]:
    if path.is_dir():
        return _walk_folder(path, log)
    if path.is_symlink() and not path.exists():
        return [], [LoadFailure(str(path), _BROKEN_LINK)]
    if not path.exists():
        return [], [LoadFailure(str(path), "no such file or folder; check the path")]
    if not path.is_file():
        return [], [LoadFailure(str(path), "not a regular file (a device, socket or pipe); pass a file or a folder")]
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        return [], [LoadFailure(str(path), _unsupported_reason(path))]
    return [path], []


_BROKEN_LINK = "a symbolic link to nothing (its target is gone, or it loops); fix or remove the link"


def _walk_folder(folder: Path, log: bool) -> tuple[list[Path], list[LoadFailure]]:
    files: list[Path] = []
    failures: list[LoadFailure] = []
    skipped = 0

    def on_error(error: OSError) -> None:
        failures.append(LoadFailure(str(error.filename or folder), f"cannot read folder: {error.strerror}"))

    for root, dirs, names in os.walk(folder, onerror=on_error):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        for name in sorted(names):
            if name.startswith("."):
                continue
            file = Path(root) / name
            if file.suffix.lower() in SUPPORTED_SUFFIXES and file.is_file():
                files.append(file)
            elif file.suffix.lower() in SUPPORTED_SUFFIXES and file.is_symlink() and not file.exists():
                failures.append(LoadFailure(str(file), _BROKEN_LINK))
            else:
                skipped += 1
    if skipped and log:
        logger.info("%s: skipped %d file(s) of unsupported types", folder, skipped)
    if not files and not failures and log:
        logger.warning("%s: no supported files found (%s)", folder, _suffix_list())
    return files, failures


def _identity(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:
        return path.absolute()


def _suffix_list() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


def _unsupported_reason(path: Path) -> str:
    kind = f"'{path.suffix}'" if path.suffix else "without a suffix"
    return f"unsupported file type {kind}; supported types are {_suffix_list()}"


# --- loading -----------------------------------------------------------------------------------------


def iter_documents(paths: Sequence[Path], csv_columns: CsvColumns | None = None) -> Iterator[Article | LoadFailure]:
    """Articles and failures from every file under `paths`, streamed one file at a time."""
    files, failures = discover_files(paths)
    yield from failures
    for file in files:
        yield from load_file(file, csv_columns)


def load_file(path: Path, csv_columns: CsvColumns | None = None) -> Iterator[Article | LoadFailure]:
    """Articles from one file; any problem comes out as a `LoadFailure` instead of an exception."""
    path = Path(path)
    loader = _LOADERS.get(path.suffix.lower())
    if loader is None:
        yield LoadFailure(str(path), _unsupported_reason(path))
        return
    try:
        size = path.stat().st_size
        if size > MAX_FILE_BYTES:
            raise DocumentError(
                f"file is {_megabytes(size)}, over the {_megabytes(MAX_FILE_BYTES)} limit; split it into smaller files"
            )
        yield from loader(path, csv_columns or CsvColumns())
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


# --- bytes to text --------------------------------------------------------------------------------------

_BOMS = [
    (codecs.BOM_UTF32_LE, "utf-32-le"),
    (codecs.BOM_UTF32_BE, "utf-32-be"),
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
]
_KOREAN_CODECS = {"cp949", "euc_kr", "johab", "iso2022_kr", "uhc"}
_BINARY_REASON = (
    "binary or undecodable file: it is not text in UTF-8, CP949/EUC-KR or another known encoding; "
    "save it as UTF-8 text (or use its proper extension)"
)


def decode_bytes(data: bytes, source: str = "input") -> str:
    """Decode file content: BOM, else strict UTF-8, else UTF-8 with a few stray bytes, else detection
    (Korean CP949 preferred when it fits).

    Raises DocumentError for empty files and for binary or undecodable content.
    """
    for bom, encoding in _BOMS:
        if data.startswith(bom):
            return _check_text(_decode_strict(data[len(bom) :], encoding))
    if not data.strip():
        raise DocumentError("empty file")
    nuls = data.count(b"\x00")
    if nuls:
        # a stray NUL or two in a big CSV is damage, not a binary file; many of them are (or UTF-16)
        if nuls > max(2, len(data) // 1000):
            raise DocumentError(_BINARY_REASON)
        logger.warning("%s: dropped %d NUL byte(s)", source, nuls)
        data = data.replace(b"\x00", b"")
    damaged = _mostly_utf8(data)
    if damaged is not None:
        text, bad = damaged
        logger.warning("%s: %d byte sequence(s) are not UTF-8; replaced by U+FFFD", source, bad)
        return _check_text(text)
    detected = detect_encoding(data)
    if detected is None:
        raise DocumentError(_BINARY_REASON)
    return _check_text(_decode_strict(data, detected))


def _mostly_utf8(data: bytes) -> tuple[str, int] | None:
    """UTF-8 text with a few undecodable bytes (a truncated copy, one bad row): the text with U+FFFD in their
    place and how many, or None. Valid multi-byte characters must outnumber the bad sequences 20 to 1, so a
    legacy single-byte file ("caf\xe9") or a CP949 one still goes to detection."""
    if _decodes(data, "utf-8"):
        return None
    text = data.decode("utf-8", errors="replace")
    bad = text.count("\ufffd") - data.decode("utf-8", errors="ignore").count("\ufffd")
    wide = sum(1 for ch in text if ord(ch) > 0x7F) - text.count("\ufffd")
    return (text, bad) if bad and wide >= 20 * bad else None


def detect_encoding(data: bytes) -> str | None:
    """A codec name that decodes `data` strictly, or None. CP949 stands in for every Korean codec."""
    if _decodes(data, "utf-8"):
        return "utf-8"
    import charset_normalizer

    matches = charset_normalizer.from_bytes(data)
    best = matches.best()
    guess = best.encoding if best else None
    # Short Western text often fits several code pages equally well, and charset_normalizer then lists
    # Central European cp1250 first ("naïve" → "naďve"); on a tie the far commoner Windows-1252 wins.
    if best is not None and any(
        m.encoding == "cp1252" and m.chaos <= best.chaos and m.coherence >= best.coherence for m in matches
    ):
        guess = "cp1252"
    if guess in _KOREAN_CODECS and _decodes(data, "cp949"):
        return "cp949"
    if _looks_korean_cp949(data):
        return "cp949"
    return guess


def _decodes(data: bytes, encoding: str) -> bool:
    try:
        data.decode(encoding)
    except (UnicodeDecodeError, LookupError):
        return False
    return True


def _looks_korean_cp949(data: bytes) -> bool:
    """Strict CP949 decoding works and most non-ASCII characters are Hangul: a Korean government file."""
    try:
        text = data.decode("cp949")
    except UnicodeDecodeError:
        return False
    wide = [ch for ch in text if ord(ch) > 0x7F]
    return bool(wide) and sum("가" <= ch <= "힣" for ch in wide) >= 0.6 * len(wide)


def _decode_strict(data: bytes, encoding: str) -> str:
    try:
        return data.decode(encoding)
    except UnicodeDecodeError as exc:
        raise DocumentError(_BINARY_REASON) from exc


def _check_text(text: str) -> str:
    if not text.strip():
        raise DocumentError("empty file")
    sample = text[:_SNIFF_BYTES]
    odd = sum(1 for ch in sample if _is_binary_char(ch))
    if odd > 0.02 * len(sample):
        raise DocumentError(_BINARY_REASON)
    return text


def _is_binary_char(ch: str) -> bool:
    if ch in "\n\r\t\f\v":
        return False
    return ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cs")


def _read_text(path: Path) -> str:
    return decode_bytes(path.read_bytes(), source=str(path))


# --- .txt / .md ---------------------------------------------------------------------------------------


def _load_text_file(path: Path, _columns: CsvColumns) -> Iterator[Article]:
    """A scraped page or note. A date-only line among the first three lines becomes `date` and is removed
    from the text; the first line (for Markdown the first `# heading`) becomes the title but stays in the text."""
    raw = _read_text(path)
    meta: dict[str, str] = {}
    heading = None
    if path.suffix.lower() != ".txt":
        meta, raw = split_front_matter(raw)
        heading = markdown_heading(raw)
        raw = markdown_to_text(raw)
    date, text = split_leading_date(clean_scraped_text(raw))
    _require_text(text)
    title = meta.get("title") or heading or first_meaningful_line(text) or path.stem
    yield Article(
        id=meta.get("url") or path.as_posix(),
        text=text,
        title=_clean_title(title),
        date=parse_date(meta.get("date")) or date,
        url=meta.get("url") or None,
        source=meta.get("source") or None,
        origin=str(path),
    )


def _require_text(text: str) -> None:
    if not text.strip():
        raise DocumentError("no text left after removing page boilerplate (menus, bylines, footers)")


def _clean_title(title: str | None) -> str | None:
    if not title:
        return None
    title = normalize_inline(unescape_entities(title))
    return title[:_MAX_TITLE_CHARS] or None


# --- .html / .htm ---------------------------------------------------------------------------------------

_META_CHARSET = re.compile(rb"""<meta[^>]+charset\s*=\s*["']?\s*([A-Za-z0-9_.:-]+)""", re.IGNORECASE)


def _load_html_file(path: Path, _columns: CsvColumns) -> Iterator[Article]:
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
        title=_clean_title(getattr(page, "title", None) or first_meaningful_line(text) or path.stem),
        date=parse_date(getattr(page, "date", None)) or date,
        url=url,
        source=_clean_title(getattr(page, "sitename", None) or getattr(page, "hostname", None)),
        origin=str(path),
    )


def _extract_html(html: str) -> tuple[Any, str]:
    """trafilatura's extraction (None for nothing) and its text, cleaned, a leading date line kept."""
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
    declared = _META_CHARSET.search(data[:_SNIFF_BYTES])
    if declared:
        encoding = declared.group(1).decode("ascii").lower()
        encoding = "cp949" if encoding.replace("-", "_") in _KOREAN_CODECS else encoding
        if data.startswith(codecs.BOM_UTF8):
            data = data[len(codecs.BOM_UTF8) :]
        if _decodes(data, encoding):
            return _check_text(data.decode(encoding))
    return decode_bytes(data)


# --- .pdf ---------------------------------------------------------------------------------------------

_MIN_PDF_LETTERS = 20
_JUNK_PDF_TITLE = re.compile(
    r"^(?:untitled|제목\s*없음|microsoft\s+\w+\s*-|.*\.(?:docx?|hwpx?|pptx?|xlsx?|pdf)$)", re.I
)


def _load_pdf_file(path: Path, _columns: CsvColumns) -> Iterator[Article]:
    """The PDF's text layer, pages separated by a blank line; layout line breaks are kept."""
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
        title=_clean_title(_pdf_title(reader) or first_meaningful_line(text) or path.stem),
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


# --- .jsonl -------------------------------------------------------------------------------------------

# Field names tried in order; the CONTRACT names come first.
_TEXT_KEYS = ("text", "content", "body")
_TEXT_FALLBACK_KEYS = ("content_text", "summary")  # the longest non-stub of these wins
_TITLE_KEYS = ("title", "headline")
_URL_KEYS = ("url", "original_url", "link")
_DATE_KEYS = ("date", "publish_date", "published_at", "published", "approved_at", "pub_date")
_SOURCE_KEYS = ("source", "ministry", "source_name", "publisher")


def _load_jsonl_file(path: Path, _columns: CsvColumns) -> Iterator[Article | LoadFailure]:
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
                _check_unique(article.id, number, seen, "line")
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
    for bom, encoding in _BOMS:
        if encoding != "utf-8" and head.startswith(bom):
            try:
                return path.read_bytes()[len(bom) :].decode(encoding).encode("utf-8")
            except UnicodeDecodeError as exc:
                raise DocumentError(f"not valid {encoding.upper()} text; save the file as UTF-8") from exc
    return None


def _sniff_jsonl_encoding(path: Path) -> str:
    """UTF-8 (the contract's encoding) unless the start of the file says otherwise; NUL bytes mean binary."""
    with path.open("rb") as handle:
        head = handle.read(_SNIFF_BYTES)
    if b"\x00" in head:
        raise DocumentError(_BINARY_REASON)
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
    """An Article from a corpus record (CONTRACT keys, or a common alternate per field).

    Raises DocumentError naming the field when the text is missing or a field has the wrong type.
    Dates never fail: an unreadable date is None.
    """
    title = _clean_title(_first_string(record, _TITLE_KEYS))
    text = _record_text(record, title)
    url = _first_string(record, _URL_KEYS)
    return Article(
        id=_record_id(record) or url or fallback_id,
        text=text,
        title=title,
        date=_record_date(record),
        url=url,
        source=_clean_title(_first_string(record, _SOURCE_KEYS)),
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


def _check_unique(article_id: str, number: int, seen: dict[str, int], unit: str) -> None:
    first = seen.setdefault(article_id, number)
    if first != number:
        raise DocumentError(f"duplicate id '{article_id}' (first on {unit} {first}); this {unit} is skipped")


# --- .csv ---------------------------------------------------------------------------------------------

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


def _load_csv_file(path: Path, columns: CsvColumns) -> Iterator[Article | LoadFailure]:
    """One article per row. A bad row is a failure named "file:LINE", the line it starts on (a quoted field
    may span lines); an article without an id column is "file#ROW" (the header is row 1)."""
    text = _read_text(path)
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
    mapping = _resolve_columns(header, columns)
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
            _check_unique(article.id, line, seen, "line")
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
        title=_clean_title(values.get("title")),
        date=parse_date(values.get("date")),
        url=values.get("url"),
        source=_clean_title(values.get("source")),
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


_Loader = Callable[[Path, CsvColumns], Iterator[Article | LoadFailure]]
_LOADERS: dict[str, _Loader] = {
    **dict.fromkeys(TEXT_SUFFIXES, _load_text_file),
    **dict.fromkeys(HTML_SUFFIXES, _load_html_file),
    ".jsonl": _load_jsonl_file,
    ".csv": _load_csv_file,
    ".pdf": _load_pdf_file,
}


def estimate_documents(files: Sequence[Path]) -> int:
    """Roughly how many documents these files hold (lines of JSONL, rows of CSV, one per other file), so a
    progress bar can show an ETA. Cheap: counts newlines, parses nothing."""
    total = 0
    for file in files:
        suffix = file.suffix.lower()
        if suffix not in (".jsonl", ".csv"):
            total += 1
            continue
        try:
            with file.open("rb") as handle:
                lines = sum(block.count(b"\n") for block in iter(lambda: handle.read(1 << 20), b""))
        except OSError:
            lines = 1
        total += max(lines - (1 if suffix == ".csv" else 0), 1)
    return total
