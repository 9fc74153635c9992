"""Domain vocabulary shared by ingest, retrieval, answering, the API and evaluation."""

from __future__ import annotations

import datetime as dt
import re
import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

# Fixed namespace so point ids are stable across runs, machines and Qdrant deployments.
POINT_ID_NAMESPACE = uuid.UUID("6f1d9c1e-3b7a-5d1e-9a53-0c2b1f7e8a11")

_SURROGATE = re.compile("[\ud800-\udfff]")


def without_surrogates(text: str) -> str:
    """`text` with lone UTF-16 surrogates replaced by U+FFFD, one for one (offsets stay valid).

    They reach Python strings from a JSON "\\ud800" escape or from a file name that is not UTF-8
    (surrogateescape), and no UTF-8 encoder accepts them: left in, they crash the first hash, store write
    or print of the run instead of failing one document.
    """
    return _SURROGATE.sub("\ufffd", text) if _SURROGATE.search(text) else text


class Article(BaseModel):
    """A cleaned document ready to chunk. `text` is the stored text that citation offsets refer to."""

    model_config = ConfigDict(frozen=True)

    id: str = Field(min_length=1)
    text: str
    title: str | None = None
    date: dt.date | None = None
    url: str | None = None
    source: str | None = None
    origin: str | None = Field(None, description="Where it was read from (file path, or file:line); used by --sync.")

    @field_validator("id", "text", "title", "url", "source", "origin", mode="before")
    @classmethod
    def _encodable(cls, value: Any) -> Any:
        return without_surrogates(value) if isinstance(value, str) else value


class Span(BaseModel):
    """A half-open character range [start, end) in an article's text."""

    model_config = ConfigDict(frozen=True)

    start: int = Field(ge=0)
    end: int = Field(ge=0)


class Chunk(BaseModel):
    """A slice of an article that is embedded and stored as one point."""

    model_config = ConfigDict(frozen=True)

    article_id: str
    index: int = Field(ge=0)
    text: str
    start: int = Field(ge=0, description="Offset of the chunk in the article text.")
    end: int = Field(ge=0)
    sentences: list[Span] = Field(default_factory=list, description="Sentence spans, article offsets.")
    title: str | None = None
    date: dt.date | None = None
    url: str | None = None
    source: str | None = None
    generation: int = Field(
        0, ge=0, le=1, description="Which of two sets of point ids it uses: a new version is written beside the old."
    )

    @property
    def id(self) -> str:
        return chunk_point_id(self.article_id, self.index, self.generation)


def chunk_point_id(article_id: str, index: int, generation: int = 0) -> str:
    """Deterministic point id: re-ingesting the same article overwrites, never duplicates. Generation 0 keeps
    the ids chunks had before generations existed."""
    key = f"{article_id}\x1f{index}" if generation == 0 else f"{article_id}\x1f{index}\x1f{generation}"
    return str(uuid.uuid5(POINT_ID_NAMESPACE, key))


def article_point_id(article_id: str) -> str:
    return str(uuid.uuid5(POINT_ID_NAMESPACE, f"article\x1f{article_id}"))


class Hit(BaseModel):
    """A retrieved chunk with its fused score (higher is better)."""

    chunk: Chunk
    score: float
    dense_score: float | None = Field(None, description="Cosine similarity of the dense side, when known.")
    copies_in: tuple[str, ...] = Field(
        (), description="Other articles holding this same text, whose copies were dropped as duplicates."
    )


_ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}")


class SearchFilters(BaseModel):
    model_config = ConfigDict(extra="forbid")

    source: str | None = Field(None, max_length=500)
    date_from: dt.date | None = None
    date_to: dt.date | None = None

    @field_validator("date_from", "date_to", mode="before")
    @classmethod
    def _written_as_a_date(cls, value: object) -> object:
        # pydantic reads a number, or a string of digits, as seconds since 1970: `"date_from": 0` or "0" silently
        # meant 1970-01-01
        if value is None or isinstance(value, dt.date):
            return value
        if isinstance(value, str) and _ISO_DATE.fullmatch(value.strip()):
            return value.strip()
        raise ValueError("write dates as YYYY-MM-DD")

    @model_validator(mode="after")
    def _ordered_range(self) -> SearchFilters:
        if self.date_from and self.date_to and self.date_from > self.date_to:
            raise ValueError("date_from is after date_to")
        return self

    def is_empty(self) -> bool:
        return not (self.source or self.date_from or self.date_to)


class Citation(BaseModel):
    n: int
    doc_id: str
    title: str | None
    url: str | None
    date: str | None
    chunk_id: str
    quote: str
    start: int
    end: int


class ChatTurn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    role: Literal["user", "assistant"]
    content: str = Field(max_length=20_000)


class SentenceCheck(BaseModel):
    """What the claim check (rag/claims.py) decided for one sentence the LLM wrote."""

    sentence: str = Field(description="The sentence as the model wrote it, citation markers removed.")
    verdict: Literal["supported", "repaired", "dropped"] = Field(
        description="supported: shown as written; repaired: replaced by the quote of the evidence it cites; "
        "dropped: not shown."
    )
    unsupported: list[str] = Field(
        default_factory=list, description="Its numbers, dates, names or links that the evidence it cites lacks."
    )
    citations: list[int] = Field(
        default_factory=list, description="The `n` of the citations shown for it (its quote's when repaired)."
    )


class Answer(BaseModel):
    answer: str
    refused: bool
    citations: list[Citation] = Field(default_factory=list)
    timings_ms: dict[str, float] = Field(default_factory=dict)
    checks: list[SentenceCheck] | None = Field(
        None, description="The claim check of each sentence the LLM wrote; null when no LLM wrote the answer."
    )
