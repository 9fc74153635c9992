"""Hits → evidence sentences → an answer whose every `[n]` points at an exact quote in a stored article.

Evidence is chosen sentence by sentence, not chunk by chunk: a CPU LLM reads a short numbered list far
faster than whole chunks, and an extractive answer quotes exactly the sentence that answers.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import numpy as np

from rag.config import AnswerSettings
from rag.embeddings import Embedder
from rag.prompts import REFUSAL_MESSAGE_EN, REFUSAL_MESSAGE_KO
from rag.sparse import TermAnalyzer, hangul_share
from rag.types import Answer, Citation, Hit

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
    """Scores the sentences of the retrieved chunks against the question."""

    def __init__(self, embedder: Embedder, analyzer: TermAnalyzer) -> None:
        self.embedder, self.analyzer = embedder, analyzer

    def select(self, question: str, query_vector: np.ndarray, hits: list[Hit], limit: int) -> list[Evidence]:
        candidates = _candidate_sentences(hits)
        if not candidates:
            return []
        vectors = self.embedder.embed_documents([text for *_, text in candidates])
        similarities = vectors @ query_vector
        question_terms = set(self.analyzer.terms(question))
        scored = []
        for (hit_rank, hit, start, end, text), similarity in zip(candidates, similarities, strict=True):
            overlap = _term_overlap(question_terms, set(self.analyzer.terms(text)))
            score = float(similarity) + LEXICAL_WEIGHT * overlap - RANK_DECAY * hit_rank
            scored.append(Evidence(hit, start, end, text, float(similarity), score))
        scored.sort(key=lambda e: e.score, reverse=True)
        return _dedupe_evidence(scored)[:limit]


def _candidate_sentences(hits: list[Hit]) -> list[tuple[int, Hit, int, int, str]]:
    candidates = []
    for rank, hit in enumerate(hits):
        chunk = hit.chunk
        for span in chunk.sentences:
            text = chunk.text[span.start - chunk.start : span.end - chunk.start]
            if len(text.strip()) >= MIN_SENTENCE_CHARS:
                candidates.append((rank, hit, span.start, span.end, text))
    return candidates


def _term_overlap(question_terms: set[str], sentence_terms: set[str]) -> float:
    if not question_terms:
        return 0.0
    return len(question_terms & sentence_terms) / len(question_terms)


def _dedupe_evidence(evidence: list[Evidence]) -> list[Evidence]:
    """The same sentence arrives twice when chunks overlap; keep its best-scored copy."""
    seen: set[tuple[str, int]] = set()
    unique = []
    for item in evidence:
        key = (item.hit.chunk.article_id, item.start)
        if key not in seen:
            seen.add(key)
            unique.append(item)
    return unique


def refusal(question: str, timings_ms: dict[str, float]) -> Answer:
    message = REFUSAL_MESSAGE_KO if hangul_share(question) >= 0.3 else REFUSAL_MESSAGE_EN
    return Answer(answer=message, refused=True, citations=[], timings_ms=timings_ms)


class ExtractiveAnswerer:
    """Answers by quoting the best evidence sentences, each followed by its citation marker."""

    def __init__(self, selector: EvidenceSelector, settings: AnswerSettings) -> None:
        self.selector, self.settings = selector, settings

    def answer(self, question: str, query_vector: np.ndarray, hits: list[Hit], timings_ms: dict[str, float]) -> Answer:
        started = time.perf_counter()
        evidence = self.selector.select(question, query_vector, hits, self.settings.evidence_sentences)
        timings_ms = {**timings_ms, "evidence": round((time.perf_counter() - started) * 1000, 2)}
        if not evidence or evidence[0].similarity < self.settings.min_evidence_score:
            return refusal(question, timings_ms)
        chosen = evidence[: self.settings.extractive_sentences]
        # quote in article order when the sentences come from one article: it reads naturally
        chosen = sorted(chosen, key=lambda e: (e.hit.chunk.article_id, e.start)) if _one_article(chosen) else chosen
        citations = [item.citation(n) for n, item in enumerate(chosen, start=1)]
        text = " ".join(f"{item.text.strip()} [{n}]" for n, item in enumerate(chosen, start=1))
        return Answer(answer=text, refused=False, citations=citations, timings_ms=timings_ms)


def _one_article(evidence: list[Evidence]) -> bool:
    return len({e.hit.chunk.article_id for e in evidence}) == 1
