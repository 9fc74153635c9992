"""Request and response bodies of `/v1/answer`, `/v1/search` (the OpenAI-compatible ones live with their routes
in api/chat_completions.py)."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field, field_validator

from rag.types import ChatTurn, Hit, SearchFilters

MAX_QUESTION_CHARS = 2000
MAX_HISTORY_TURNS = 50


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    # strict: `true` is no count and `1` no yes (pydantic would read them as 1 and true)
    top_k: int | None = Field(None, ge=1, le=100, strict=True)
    filters: SearchFilters | None = None
    history: list[ChatTurn] = Field(default_factory=list, max_length=MAX_HISTORY_TURNS)
    stream: bool = Field(False, strict=True, description="Server-sent events: `token` pieces, then one `answer` event.")

    @field_validator("question")
    @classmethod
    def _has_words(cls, value: str) -> str:
        return require_words(value, "question")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=MAX_QUESTION_CHARS)
    top_k: int | None = Field(None, ge=1, le=100, strict=True)
    filters: SearchFilters | None = None

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str) -> str:
        return require_words(value, "query")


def require_words(value: str, field: str) -> str:
    """Blank text, or text with no letter or digit at all (only emoji, punctuation or control characters),
    cannot be searched for meaningfully: refusing it beats a confident answer to nothing."""
    if not value.strip():
        raise ValueError(f"{field} is blank")
    if not any(ch.isalnum() for ch in value):
        raise ValueError(f"{field} has no letters or digits; ask in words")
    return value


class SearchHit(BaseModel):
    doc_id: str
    chunk_id: str
    title: str | None
    url: str | None
    date: str | None
    text: str
    score: float

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchHit:
        chunk = hit.chunk
        return cls(
            doc_id=chunk.article_id,
            chunk_id=chunk.id,
            title=chunk.title,
            url=chunk.url,
            date=chunk.date.isoformat() if chunk.date else None,
            text=chunk.text,
            score=hit.score,
        )


class SearchResponse(BaseModel):
    hits: list[SearchHit]
