"""Evidence → an answer whose every `[n]` points at an exact quote in a stored article (rag/answer/evidence.py
chooses the evidence, rag/answer/citations.py checks the LLM's markers)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np

from rag.answer.citations import validate_citations
from rag.answer.evidence import Evidence, EvidenceSelector
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
from rag.text.analyzer import TermAnalyzer
from rag.text.hangul import is_korean
from rag.types import Answer, Hit


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


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
