"""What every format loader shares: the outcome types, the supported suffixes, title and id checks."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ingest.cleaning import normalize_inline, unescape_entities
from rag.config import IngestSettings
from rag.errors import DocumentError
from rag.types import Article

TEXT_SUFFIXES = frozenset({".txt", ".md", ".markdown"})
HTML_SUFFIXES = frozenset({".html", ".htm"})
MULTI_DOCUMENT_SUFFIXES = frozenset({".jsonl", ".csv"})  # one article per line or row; every other file is one
SUPPORTED_SUFFIXES: frozenset[str] = TEXT_SUFFIXES | HTML_SUFFIXES | MULTI_DOCUMENT_SUFFIXES | {".pdf"}
MAX_TITLE_CHARS = 300
# RAG_INGEST_MAX_DOCUMENT_CHARS's default, for callers that pass none (the pipeline passes the setting)
DEFAULT_MAX_DOCUMENT_CHARS: int = IngestSettings.model_fields["max_document_chars"].default


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


@dataclass(frozen=True)
class LoadOptions:
    """How files are read: the CSV column mapping, and the most text one document may hold."""

    csv_columns: CsvColumns = CsvColumns()
    max_document_chars: int = DEFAULT_MAX_DOCUMENT_CHARS


Loader = Callable[[Path, LoadOptions], Iterator[Article | LoadFailure]]


def suffix_list() -> str:
    return ", ".join(sorted(SUPPORTED_SUFFIXES))


def unsupported_reason(path: Path) -> str:
    kind = f"'{path.suffix}'" if path.suffix else "without a suffix"
    return f"unsupported file type {kind}; supported types are {suffix_list()}"


def require_text(text: str) -> None:
    if not text.strip():
        raise DocumentError("no text left after removing page boilerplate (menus, bylines, footers)")


def clean_title(title: str | None) -> str | None:
    if not title:
        return None
    title = normalize_inline(unescape_entities(title))
    return title[:MAX_TITLE_CHARS] or None


def too_long_reason(chars: int, max_chars: int, *, stopped: str = "", about: str = "") -> str:
    """Why a document over the length limit is not ingested (`stopped`: where reading it was given up)."""
    return (
        f"has {about}{chars:,} characters of text{stopped}, over the limit of {max_chars:,}; split it into "
        "smaller documents, or raise RAG_INGEST_MAX_DOCUMENT_CHARS"
    )


def check_length(article: Article, max_chars: int) -> None:
    """For loaders of many documents a file, whose failures name the line."""
    if len(article.text) > max_chars:
        raise DocumentError(too_long_reason(len(article.text), max_chars))


def check_unique(article_id: str, number: int, seen: dict[str, int], unit: str) -> None:
    first = seen.setdefault(article_id, number)
    if first != number:
        raise DocumentError(f"duplicate id '{article_id}' (first on {unit} {first}); this {unit} is skipped")
