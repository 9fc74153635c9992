"""Hits → evidence sentences → an answer whose every `[n]` points at an exact quote in a stored article.

Evidence is chosen sentence by sentence, not chunk by chunk: a CPU LLM reads a short numbered list far
faster than whole chunks, and an extractive answer quotes exactly the sentence that answers.
"""

from __future__ import annotations

import re
import time
from collections import OrderedDict
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np

from rag.answer.llm import LLM, Message
from rag.answer.prompts import (
    ANSWER_SYSTEM,
    ANSWER_USER,
    REFUSAL_MESSAGE_EN,
    REFUSAL_MESSAGE_KO,
    REFUSAL_SENTINEL,
    quote_evidence,
    render,
)
from rag.config import AnswerSettings
from rag.embed.base import Embedder
from rag.text.analyzer import TermAnalyzer, hangul_share
from rag.types import Answer, Citation, Hit

LEXICAL_WEIGHT = 0.15  # how much exact keyword overlap adds to a sentence's cosine similarity
RANK_DECAY = 0.01  # small preference for sentences from higher-ranked chunks
MIN_SENTENCE_CHARS = 8  # shorter fragments (dates, captions) are poor evidence on their own
KOREAN_SHARE = 0.3  # share of Hangul letters from which a question is treated as Korean


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
    """Scores the sentences of the retrieved chunks against the question.

    Sentence vectors are computed at question time (title line + sentence) and kept in a bounded cache,
    so a popular article is embedded once, not at every question.
    """

    CACHE_SIZE = 20_000

    def __init__(self, embedder: Embedder, analyzer: TermAnalyzer, max_chunks: int = 8) -> None:
        self.embedder, self.analyzer, self.max_chunks = embedder, analyzer, max_chunks
        self._vectors: OrderedDict[tuple[str, int, int], np.ndarray] = OrderedDict()

    def select(self, question: str, query_vector: np.ndarray, hits: list[Hit], limit: int) -> list[Evidence]:
        candidates = _candidate_sentences(hits[: self.max_chunks])
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
        missing = [i for i, key in enumerate(keys) if key not in self._vectors]
        if missing:
            # a sentence alone loses its subject ("it", an elided Korean subject); the headline restores it
            # (measured on the sample article: sentence MRR 0.73 alone, 0.89 with the title line)
            texts = [_with_title(candidates[i][1], candidates[i][4]) for i in missing]
            for i, vector in zip(missing, self.embedder.embed_documents(texts), strict=True):
                self._vectors[keys[i]] = vector
        for key in keys:
            self._vectors.move_to_end(key)
        while len(self._vectors) > self.CACHE_SIZE:
            self._vectors.popitem(last=False)
        return np.stack([self._vectors[key] for key in keys])


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


def is_korean(text: str) -> bool:
    return hangul_share(text) >= KOREAN_SHARE


def refusal(question: str, timings_ms: dict[str, float]) -> Answer:
    message = REFUSAL_MESSAGE_KO if is_korean(question) else REFUSAL_MESSAGE_EN
    return Answer(answer=message, refused=True, citations=[], timings_ms=timings_ms)


AnswerEvent = str | Answer  # streamed text pieces, then the final validated Answer


class Answerer:
    """Evidence → answer. With an LLM the model writes the answer and cites evidence numbers, which are
    then validated; without one (`none`) the best evidence sentences are quoted. Both follow the same
    refusal rule and citation format."""

    def __init__(
        self,
        selector: EvidenceSelector,
        settings: AnswerSettings,
        llm: LLM | None,
        analyzer: TermAnalyzer,
        temperature: float = 0.0,
    ) -> None:
        self.selector, self.settings, self.llm, self.analyzer = selector, settings, llm, analyzer
        self.temperature = temperature

    def answer(self, question: str, query_vector: np.ndarray, hits: list[Hit], timings_ms: dict[str, float]) -> Answer:
        final = None
        for event in self.stream(question, query_vector, hits, timings_ms):
            if isinstance(event, Answer):
                final = event
        assert final is not None  # stream always ends with an Answer
        return final

    def stream(
        self, question: str, query_vector: np.ndarray, hits: list[Hit], timings_ms: dict[str, float]
    ) -> Iterator[AnswerEvent]:
        timings = dict(timings_ms)
        started = time.perf_counter()
        limit = max(self.settings.evidence_sentences, self.settings.extractive_max_sentences)
        evidence = self.selector.select(question, query_vector, hits, limit)
        timings["evidence"] = _ms_since(started)
        if not self.relevant(question, evidence):
            yield refusal(question, timings)
            return
        if self.llm is None:
            yield self._extractive(evidence, timings)
            return
        yield from self._generate(question, self._competitive(evidence), timings)

    def _competitive(self, evidence: list[Evidence]) -> list[Evidence]:
        """Evidence within `evidence_margin` of the best: clear losers only distract a small model and cost
        prompt time; when the scores are close (cross-lingual questions) the model gets them all."""
        best = evidence[0].score
        close = [e for e in evidence if e.score >= best - self.settings.evidence_margin]
        return close[: self.settings.evidence_sentences]

    def relevant(self, question: str, evidence: list[Evidence]) -> bool:
        """Whether any evidence sentence clears the cut-off for its pair of scripts (question, sentence)."""
        korean = is_korean(question)
        return any(
            e.similarity >= self.settings.min_evidence_score(korean, evidence_korean=is_korean(e.text))
            for e in evidence
        )

    def _extractive(self, evidence: list[Evidence], timings: dict[str, float]) -> Answer:
        # every sentence as good as the best (within the margin) is quoted, up to a cap: when the scores are
        # flat (an English question over Korean sentences) picking two would be a coin toss
        close = len(self._competitive(evidence))
        count = min(max(self.settings.extractive_sentences, close), self.settings.extractive_max_sentences)
        chosen = evidence[:count]
        # quote in article order when the sentences come from one article: it reads naturally
        if len({e.hit.chunk.article_id for e in chosen}) == 1:
            chosen = sorted(chosen, key=lambda e: e.start)
        citations = [item.citation(n) for n, item in enumerate(chosen, start=1)]
        text = " ".join(f"{item.text.strip()} [{n}]" for n, item in enumerate(chosen, start=1))
        return Answer(answer=text, refused=False, citations=citations, timings_ms=timings)

    def _generate(self, question: str, evidence: list[Evidence], timings: dict[str, float]) -> Iterator[AnswerEvent]:
        assert self.llm is not None
        messages = build_answer_messages(question, evidence)
        started = time.perf_counter()
        pieces: list[str] = []
        for piece in self.llm.stream(messages, max_tokens=self.settings.max_new_tokens, temperature=self.temperature):
            if not pieces:
                timings["first_token"] = _ms_since(started)
            pieces.append(piece)
            yield piece
        timings["generate"] = _ms_since(started)
        reply = "".join(pieces).strip()
        if not reply or REFUSAL_SENTINEL in reply:
            yield refusal(question, timings)
            return
        validated = validate_citations(reply, evidence, self.analyzer)
        if validated is None:
            # nothing the model said could be tied to evidence: quote the evidence instead of guessing
            yield self._extractive(evidence, timings)
            return
        text, citations = validated
        yield Answer(answer=text, refused=False, citations=citations, timings_ms=timings)


def build_answer_messages(question: str, evidence: list[Evidence]) -> list[Message]:
    numbered = "\n".join(f"[{n}] {quote_evidence(item.text)}" for n, item in enumerate(evidence, start=1))
    language = "Korean" if is_korean(question) else "English"
    return [
        {"role": "system", "content": ANSWER_SYSTEM},
        {
            "role": "user",
            "content": render(ANSWER_USER, evidence=numbered, question=quote_evidence(question), language=language),
        },
    ]


_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_TRAILING_MARKERS = re.compile(r"([.!?。])\s*((?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+)")
_ANSWER_SENTENCE = re.compile(r"(?<=[.!?。])\s+|\n+")
MIN_REPAIR_OVERLAP = 0.5  # share of a sentence's terms that must appear in the evidence it is tied to


def validate_citations(
    reply: str, evidence: list[Evidence], analyzer: TermAnalyzer
) -> tuple[str, list[Citation]] | None:
    """Keep only citations to evidence that was given; tie an uncited sentence to the evidence it
    repeats (repair) or drop it; renumber citations by first appearance. None when nothing is supported."""
    renumbered: dict[int, int] = {}
    sentences: list[str] = []
    # "… IcubeLab. [1]" → "… IcubeLab [1]." so a marker after the full stop stays with its sentence
    reply = _TRAILING_MARKERS.sub(lambda m: f" {m.group(2).strip()}{m.group(1)} ", reply)
    for sentence in (s.strip() for s in _ANSWER_SENTENCE.split(reply)):
        if not sentence:
            continue
        numbers = [n for n in _cited_numbers(sentence) if 1 <= n <= len(evidence)]
        bare = re.sub(r"\s+([.!?。])", r"\1", _MARKER.sub("", sentence)).strip()
        if not any(ch.isalnum() for ch in bare):
            continue  # a stray marker or punctuation on its own line
        if not numbers:
            repaired = _best_supporting(bare, evidence, analyzer)
            if repaired is None:
                continue
            numbers = [repaired]
        for n in numbers:
            renumbered.setdefault(n, len(renumbered) + 1)
        markers = "".join(f"[{renumbered[n]}]" for n in dict.fromkeys(numbers))
        sentences.append(_attach_markers(bare, markers))
    if not sentences:
        return None
    citations = [evidence[n - 1].citation(new) for n, new in sorted(renumbered.items(), key=lambda kv: kv[1])]
    return " ".join(sentences), citations


def _cited_numbers(sentence: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(sentence) for n in re.split(r"[,;]", group) if n.strip()]


def _attach_markers(sentence: str, markers: str) -> str:
    """Put markers before the final punctuation: "… IcubeLab [1]." reads better than "… IcubeLab. [1]"."""
    if sentence and sentence[-1] in ".!?。":
        return f"{sentence[:-1].rstrip()} {markers}{sentence[-1]}"
    return f"{sentence} {markers}"


def _best_supporting(sentence: str, evidence: list[Evidence], analyzer: TermAnalyzer) -> int | None:
    terms = set(analyzer.terms(sentence))
    if not terms:
        return None
    best, best_overlap = None, 0.0
    for n, item in enumerate(evidence, start=1):
        overlap = len(terms & set(analyzer.terms(item.text))) / len(terms)
        if overlap > best_overlap:
            best, best_overlap = n, overlap
    return best if best_overlap >= MIN_REPAIR_OVERLAP else None


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
