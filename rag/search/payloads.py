"""What the store writes into Qdrant and reads back: chunk and article payloads, and search filters.

Plain data both ways; the Qdrant model classes a filter is built from are handed in (`m`), so Qdrant itself is
imported only by rag/search/store.py.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

from rag.types import Article, Chunk, SearchFilters, Span


@dataclass(frozen=True)
class StoredArticle:
    article: Article
    content_hash: str
    chunk_count: int
    chunk_generation: int = 0  # which set of point ids its chunks use (see QdrantStore.replace_article)


def build_filter(m: Any, filters: SearchFilters | None) -> Any:
    if filters is None or filters.is_empty():
        return None
    must: list[Any] = []
    if filters.source:
        must.append(m.FieldCondition(key="source", match=m.MatchValue(value=filters.source)))
    if filters.date_from or filters.date_to:
        must.append(
            m.FieldCondition(
                key="date",
                range=m.DatetimeRange(
                    gte=_as_datetime(filters.date_from) if filters.date_from else None,
                    lte=_as_datetime(filters.date_to, end_of_day=True) if filters.date_to else None,
                ),
            )
        )
    return m.Filter(must=must)


def _as_datetime(day: dt.date, end_of_day: bool = False) -> dt.datetime:
    moment = dt.time(23, 59, 59) if end_of_day else dt.time(0, 0)
    return dt.datetime.combine(day, moment, tzinfo=dt.UTC)


def chunk_payload(chunk: Chunk) -> dict[str, Any]:
    return {
        "article_id": chunk.article_id,
        "index": chunk.index,
        "text": chunk.text,
        "start": chunk.start,
        "end": chunk.end,
        "sentences": [[s.start, s.end] for s in chunk.sentences],
        "title": chunk.title,
        "date": chunk.date.isoformat() if chunk.date else None,
        "url": chunk.url,
        "source": chunk.source,
        "generation": chunk.generation,
    }


def chunk_from_payload(payload: dict[str, Any]) -> Chunk:
    return Chunk(
        article_id=payload["article_id"],
        index=payload["index"],
        text=payload["text"],
        start=payload["start"],
        end=payload["end"],
        sentences=[Span(start=s, end=e) for s, e in payload.get("sentences", [])],
        title=payload.get("title"),
        date=parse_date(payload.get("date")),
        url=payload.get("url"),
        source=payload.get("source"),
        generation=payload.get("generation", 0),
    )


def article_payload(article: Article, content_hash: str, chunk_count: int, generation: int) -> dict[str, Any]:
    return {
        "article_id": article.id,
        "text": article.text,
        "title": article.title,
        "date": article.date.isoformat() if article.date else None,
        "url": article.url,
        "source": article.source,
        "origin": article.origin,
        "content_hash": content_hash,
        "chunk_count": chunk_count,
        "chunk_generation": generation,
    }


def stored_article(payload: dict[str, Any]) -> StoredArticle:
    article = Article(
        id=payload["article_id"],
        text=payload.get("text", ""),
        title=payload.get("title"),
        date=parse_date(payload.get("date")),
        url=payload.get("url"),
        source=payload.get("source"),
        origin=payload.get("origin"),
    )
    return StoredArticle(
        article=article,
        content_hash=payload["content_hash"],
        chunk_count=payload["chunk_count"],
        chunk_generation=payload.get("chunk_generation", 0),
    )


def parse_date(value: Any) -> dt.date | None:
    return dt.date.fromisoformat(value) if value else None
