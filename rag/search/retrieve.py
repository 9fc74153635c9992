"""Question → ranked hits: dense + Korean-aware keyword search fused (store.py), then shaped.

Whether the keyword side takes part depends on the question (docs/architecture.md, traps 5 and 8): an English question
over Korean articles matches almost nothing by keywords, and fusing that noise pushes good dense hits down; an
English question over English articles, or any Korean question, gains from it. The test is cheap: is the
question in Hangul, or does one chunk hold most of its keywords? (Per chunk: Korean news is sprinkled with
English words, so "smart", "city" and "alliance" each occur somewhere without any English text about them.)
An English question that fails the test searches by sound and by translation instead, each at a lower weight:
its words' transliteration keys against the borrowed nouns of Korean articles ("alliance" finds 얼라이언스;
rag/text/transliteration.py), and its words' Sino-Korean translations against their Korean terms ("audit" finds
감사; rag/text/lexicon.py).
"""

from __future__ import annotations

import hashlib
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from rag.config import RetrievalSettings
from rag.embed.base import Embedder
from rag.search.sparse import SparseEncoder, SparseVector
from rag.search.store import QdrantStore
from rag.text.hangul import is_korean
from rag.text.lexicon import Lexicon, NoLexicon
from rag.types import Hit, SearchFilters

RetrievalMode = Literal["hybrid", "dense", "sparse"]


@dataclass
class Retrieval:
    hits: list[Hit]
    query_vector: np.ndarray
    timings_ms: dict[str, float] = field(default_factory=dict)


class Retriever:
    def __init__(
        self,
        store: QdrantStore,
        embedder: Embedder,
        sparse: SparseEncoder,
        settings: RetrievalSettings,
        lexicon: Lexicon | None = None,
    ) -> None:
        self.store, self.embedder, self.sparse, self.settings = store, embedder, sparse, settings
        self.lexicon = lexicon or NoLexicon()

    def keyword_sides_for(self, question: str) -> list[tuple[SparseVector, float]]:
        """The keyword queries and their fusion weights. A Korean question: its own terms. A question without
        Hangul: its own terms at the Korean weight when one chunk holds most of its words, else at the `other`
        weight (0 by default), plus the sound keys of its words at the `sound` weight and their Korean
        translations at the `translation` weight either way: a collection can hold English items beside
        Korean ones (bilingual headlines), and the Korean article may be the answer. Sides weighted 0 or
        without terms are left out."""
        settings = self.settings
        sides: list[tuple[Callable[[str], SparseVector], float]]
        if is_korean(question):
            sides = [(self.sparse.encode_query, settings.sparse_weight_korean)]
        else:
            own_weight = (
                settings.sparse_weight_korean
                if self._one_chunk_holds_its_words(question)
                else settings.sparse_weight_other
            )
            sides = [
                (self.sparse.encode_query, own_weight),
                (self.sparse.encode_sound_query, settings.sound_weight()),
                (self._encode_translations, settings.translation_weight()),
            ]
        # a side weighted 0 (the question's own terms, by default) is not even encoded; one with no terms is dropped
        encoded = [(encode(question), weight) for encode, weight in sides if weight > 0]
        return [(vector, weight) for vector, weight in encoded if not vector.is_empty()]

    def _encode_translations(self, question: str) -> SparseVector:
        return self.sparse.encode_translations(self.lexicon.translate(question))

    def _one_chunk_holds_its_words(self, question: str) -> bool:
        """A question without Hangul whose words one chunk mostly holds (see RetrievalSettings.keyword_coverage)."""
        coverage = self.store.keyword_coverage(self.sparse.word_term_ids(question))
        return coverage is not None and coverage >= self.settings.keyword_coverage

    def retrieve(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        mode: RetrievalMode = "hybrid",
    ) -> Retrieval:
        top_k = top_k or self.settings.top_k
        timings: dict[str, float] = {}
        started = time.perf_counter()
        dense_query = self.embedder.embed_query(question)
        timings["embed"] = _ms_since(started)
        started = time.perf_counter()
        # over-fetch so that the per-article cap and de-duplication still leave top_k hits
        limit = min(max(top_k * 4, top_k + 10), self.settings.candidates * 2)
        if mode == "dense":
            raw = self.store.search_dense(dense_query, limit=limit, filters=filters)
        elif mode == "sparse":
            raw = self.store.search_sparse(self.sparse.encode_query(question), limit=limit, filters=filters)
        else:
            raw = self.store.search(
                dense_query,
                self.keyword_sides_for(question),
                limit=limit,
                candidates=self.settings.candidates,
                fusion=self.settings.fusion,
                rrf_k=self.settings.rrf_k,
                dense_weight=self.settings.dense_weight,
                filters=filters,
            )
        timings["search"] = _ms_since(started)
        hits = shape_hits(raw, top_k=top_k, max_per_article=self.settings.max_chunks_per_article)
        return Retrieval(hits=hits, query_vector=dense_query, timings_ms=timings)


def shape_hits(hits: list[Hit], *, top_k: int, max_per_article: int) -> list[Hit]:
    """Drop near-identical chunks (syndicated copies, overlapping windows) and demote chunks past the
    per-article cap behind those of other articles, so one long article cannot crowd out the rest
    (docs/architecture.md, trap 7); when there are not enough other articles, the demoted chunks fill the list."""
    unique: list[Hit] = []
    first_with_text: dict[str, int] = {}
    for hit in hits:
        key = _text_key(hit.chunk.text)
        if key not in first_with_text:
            first_with_text[key] = len(unique)
            unique.append(hit)
            continue
        # the copy is not shown again, but the kept hit remembers where else its text lives: an evaluation
        # asking for one of the copies by id has been answered (and a tie between copies is a coin toss)
        kept = unique[first_with_text[key]]
        other = hit.chunk.article_id
        if other != kept.chunk.article_id and other not in kept.copies_in:
            unique[first_with_text[key]] = kept.model_copy(update={"copies_in": (*kept.copies_in, other)})
    within_cap: list[Hit] = []
    demoted: list[Hit] = []
    per_article: dict[str, int] = {}
    for hit in unique:
        count = per_article.get(hit.chunk.article_id, 0)
        (within_cap if count < max_per_article else demoted).append(hit)
        per_article[hit.chunk.article_id] = count + 1
    return (within_cap + demoted)[:top_k]


def _text_key(text: str) -> str:
    normalized = re.sub(r"\W+", "", text.lower())
    return hashlib.blake2b(normalized.encode("utf-8"), digest_size=8).hexdigest()


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
