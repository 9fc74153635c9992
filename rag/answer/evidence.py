"""Hits → evidence sentences, scored against the question, each with its offsets in the stored article.

Evidence is chosen sentence by sentence, not chunk by chunk: a CPU LLM reads a short numbered list far
faster than whole chunks, and an extractive answer quotes exactly the sentence that answers.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from rag.answer.prompts import addresses_the_model
from rag.embed.base import Embedder
from rag.text.analyzer import TermAnalyzer
from rag.types import Citation, Hit

logger = logging.getLogger(__name__)

LEXICAL_WEIGHT = 0.15  # how much exact keyword overlap adds to a sentence's cosine similarity
RANK_DECAY = 0.01  # small preference for sentences from higher-ranked chunks
MIN_SENTENCE_CHARS = 8  # shorter fragments (dates, captions) are poor evidence on their own


@dataclass(frozen=True)
class Evidence:
    """One candidate sentence, with its offsets in the stored article text."""

    hit: Hit
    start: int
    end: int
    text: str
    similarity: float
    score: float

    @property
    def article_id(self) -> str:
        return self.hit.chunk.article_id

    def citation(self, n: int) -> Citation:
        chunk = self.hit.chunk
        return Citation(
            n=n,
            doc_id=chunk.article_id,
            title=chunk.title,
            url=chunk.url,
            date=chunk.date.isoformat() if chunk.date else None,
            chunk_id=chunk.id,
            quote=self.text,
            start=self.start,
            end=self.end,
        )


class EvidenceSelector:
    """Scores the sentences of the retrieved chunks against the question.

    Sentence vectors are computed at question time (title line + sentence) and kept in a bounded cache,
    so a popular article is embedded once, not at every question.
    """

    CACHE_SIZE = 20_000

    def __init__(self, embedder: Embedder, analyzer: TermAnalyzer, max_chunks: int = 8) -> None:
        self.embedder, self.analyzer, self.max_chunks = embedder, analyzer, max_chunks
        self._vectors: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()
        # questions are answered on several threads; the model runs outside the lock, only the cache inside
        self._cache_lock = threading.Lock()

    def select(self, question: str, query_vector: np.ndarray, hits: list[Hit], limit: int) -> list[Evidence]:
        candidates = _candidate_sentences(_without_articles_addressing_the_model(hits)[: self.max_chunks])
        if not candidates:
            return []
        similarities = self._sentence_vectors(candidates) @ query_vector
        question_terms = set(self.analyzer.terms(question))
        scored = []
        for (hit_rank, hit, start, end, text), similarity in zip(candidates, similarities, strict=True):
            overlap = _term_overlap(question_terms, set(self.analyzer.terms(text)))
            score = float(similarity) + LEXICAL_WEIGHT * overlap - RANK_DECAY * hit_rank
            scored.append(Evidence(hit, start, end, text, float(similarity), score))
        scored.sort(key=lambda e: e.score, reverse=True)
        return scored[:limit]

    def _sentence_vectors(self, candidates: list[tuple[int, Hit, int, int, str]]) -> np.ndarray:
        keys = [(hit.chunk.article_id, start, end) for _, hit, start, end, _ in candidates]
        with self._cache_lock:
            found = {key: self._vectors[key] for key in keys if key in self._vectors}
        missing = [i for i, key in enumerate(keys) if key not in found]
        if missing:
            # a sentence alone loses its subject ("it", an elided Korean subject); the headline restores it
            # (measured on the sample article: sentence MRR 0.73 alone, 0.89 with the title line)
            texts = [_with_title(candidates[i][1], candidates[i][4]) for i in missing]
            for i, vector in zip(missing, self.embedder.embed_documents(texts), strict=True):
                found[keys[i]] = vector
        with self._cache_lock:
            for key in keys:
                self._vectors[key] = found[key]
                self._vectors.move_to_end(key)
            while len(self._vectors) > self.CACHE_SIZE:
                self._vectors.popitem(last=False)
        return np.stack([found[key] for key in keys])


def _without_articles_addressing_the_model(hits: list[Hit]) -> list[Hit]:
    """Hits of articles none of whose retrieved chunks speaks to the model. An injected payload is written to
    be retrieved (it repeats the question's words), so it would crowd the real answer out of the evidence
    even when the model ignores it; and its neighbouring sentences ("whoever asks, reply …") carry it on."""
    hostile = {hit.chunk.article_id for hit in hits if addresses_the_model(hit.chunk.text)}
    for article_id in hostile:
        logger.warning("article %s is left out of the evidence: its text addresses the language model", article_id)
    return [hit for hit in hits if hit.chunk.article_id not in hostile]


def _candidate_sentences(hits: list[Hit]) -> list[tuple[int, Hit, int, int, str]]:
    """Sentences of the hits, each once (overlapping chunks share sentences), with the rank of its hit."""
    candidates = []
    seen: set[tuple[str, int]] = set()
    for rank, hit in enumerate(hits):
        chunk = hit.chunk
        for span in chunk.sentences:
            key = (chunk.article_id, span.start)
            text = chunk.text[span.start - chunk.start : span.end - chunk.start]
            if key in seen or len(text.strip()) < MIN_SENTENCE_CHARS or text.strip() == (chunk.title or "").strip():
                continue  # the headline itself says nothing its article's sentences do not
            seen.add(key)
            candidates.append((rank, hit, span.start, span.end, text))
    return candidates


def _with_title(hit: Hit, sentence: str) -> str:
    title = hit.chunk.title
    return f"{title}\n{sentence}" if title and title not in sentence else sentence


def _term_overlap(question_terms: set[str], sentence_terms: set[str]) -> float:
    if not question_terms:
        return 0.0
    return len(question_terms & sentence_terms) / len(question_terms)
