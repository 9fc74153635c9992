"""Evidence → an answer whose every `[n]` points at an exact quote in a stored article (rag/answer/evidence.py
chooses the evidence, rag/answer/citations.py reads the LLM's markers, rag/answer/claims.py checks what each
sentence says against what it cites, rag/answer/conflicts.py finds articles that disagree)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from functools import partial

import numpy as np

from rag.answer.citations import draft_sentences
from rag.answer.claims import ClaimChecker, review_answer
from rag.answer.conflicts import find_conflict
from rag.answer.evidence import Evidence, EvidenceSelector
from rag.answer.llm import LLM, Message
from rag.answer.prompts import (
    ANSWER_SYSTEM,
    ANSWER_USER,
    EXAMPLE_ANSWERS,
    EXAMPLE_EVIDENCE,
    EXAMPLE_QUESTION,
    LANGUAGE_INSTRUCTION,
    QUOTE_THEN_SAY_SYSTEM,
    REFUSAL_MESSAGE_EN,
    REFUSAL_MESSAGE_KO,
    REFUSAL_SENTINEL,
    SOURCES_DIFFER_EN,
    SOURCES_DIFFER_KO,
    conflict_note,
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


def sources_differ(question: str) -> str:
    return SOURCES_DIFFER_KO if is_korean(question) else SOURCES_DIFFER_EN


AnswerEvent = str | Answer  # streamed text pieces, then the final validated Answer
Sides = tuple[int, int]  # two evidence sentences (indices) from articles that disagree on the answer


class Answerer:
    """Evidence → answer. With an LLM the model writes the answer and cites evidence numbers, which are
    then validated; without one (`none`) the best evidence sentences are quoted. Both follow the same
    refusal rule and citation format. Every generated sentence goes through the claim check (rag/answer/claims.py);
    when two articles disagree on the answer (rag/answer/conflicts.py), the answer says so and cites both."""

    def __init__(
        self,
        selector: EvidenceSelector,
        settings: AnswerSettings,
        llm: LLM | None,
        analyzer: TermAnalyzer,
        temperature: float = 0.0,
        checker: ClaimChecker | None = None,
    ) -> None:
        self.selector, self.settings, self.llm, self.analyzer = selector, settings, llm, analyzer
        self.temperature = temperature
        self.checker = checker or ClaimChecker(analyzer)

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
        conflict = find_conflict(question, evidence, self.checker)
        sides = (conflict.first, conflict.second) if conflict else None
        if self.llm is None:
            yield self._extractive(question, evidence, timings, sides)
            return
        given = self._competitive(evidence)
        if sides:  # both sides go to the model, whatever the margin
            given += [evidence[i] for i in sides if not any(evidence[i] is e for e in given)]
        if self.settings.evidence_order == "best-last":
            given.reverse()
        given_sides = (_position(given, evidence[sides[0]]), _position(given, evidence[sides[1]])) if sides else None
        # what extractive mode would show for this question: the answer when the model's words cannot be
        fallback = partial(self._extractive, question, evidence, timings, sides)
        yield from self._generate(question, given, timings, given_sides, fallback)

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

    def _extractive(
        self, question: str, evidence: list[Evidence], timings: dict[str, float], sides: Sides | None = None
    ) -> Answer:
        if sides:
            chosen = [evidence[i] for i in sides]
            quotes = " ".join(f"{item.text.strip()} [{n}]" for n, item in enumerate(chosen, start=1))
            citations = [item.citation(n) for n, item in enumerate(chosen, start=1)]
            return Answer(
                answer=f"{sources_differ(question)} {quotes}", refused=False, citations=citations, timings_ms=timings
            )
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

    def _generate(
        self,
        question: str,
        evidence: list[Evidence],
        timings: dict[str, float],
        sides: Sides | None,
        fallback: Callable[[], Answer],
    ) -> Iterator[AnswerEvent]:
        assert self.llm is not None
        messages = build_answer_messages(question, evidence, sides, self.settings)
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
            # the evidence cleared the refusal cut-off; the 1.5B model says NOT_FOUND to answerable questions
            # (8 of 20 KorQuAD questions, all answerable), so by default the evidence is quoted instead
            if self.settings.on_model_refusal == "quote":
                yield fallback().model_copy(update={"checks": []})
            else:
                yield refusal(question, timings)
            return
        started = time.perf_counter()
        reviewed = review_answer(
            self.checker,
            question,
            draft_sentences(reply, evidence, self.analyzer),
            evidence,
            must_cite=[i + 1 for i in sides] if sides else (),
            lead_in=sources_differ(question),
        )
        timings["check"] = _ms_since(started)
        if not reviewed.text:
            # nothing the model said could be shown: quote the evidence instead of guessing
            yield fallback().model_copy(update={"checks": reviewed.checks})
            return
        yield Answer(
            answer=reviewed.text,
            refused=False,
            citations=reviewed.citations,
            timings_ms=timings,
            checks=reviewed.checks,
        )


def _position(evidence: list[Evidence], item: Evidence) -> int:
    return next(i for i, e in enumerate(evidence) if e is item)


def build_answer_messages(
    question: str, evidence: list[Evidence], sides: Sides | None = None, settings: AnswerSettings | None = None
) -> list[Message]:
    """The prompt, shaped by the prompt settings (format, worked example, language line); evidence is numbered in
    the order given (the caller orders it)."""
    settings = settings or AnswerSettings()
    numbered = "\n".join(f"[{n}] {quote_evidence(item.text)}" for n, item in enumerate(evidence, start=1))
    system = QUOTE_THEN_SAY_SYSTEM if settings.prompt_format == "quote-then-say" else ANSWER_SYSTEM
    messages: list[Message] = [{"role": "system", "content": system}]
    if settings.prompt_example:
        example = _user_message(EXAMPLE_EVIDENCE, EXAMPLE_QUESTION, "English", settings)
        messages += [
            {"role": "user", "content": example},
            {"role": "assistant", "content": EXAMPLE_ANSWERS[settings.prompt_format]},
        ]
    language = "Korean" if is_korean(question) else "English"
    user = _user_message(numbered, quote_evidence(question), language, settings)
    if sides:
        user += "\n" + conflict_note(sides[0] + 1, sides[1] + 1)
    return [*messages, {"role": "user", "content": user}]


def _user_message(numbered: str, question: str, language: str, settings: AnswerSettings) -> str:
    user = render(ANSWER_USER, evidence=numbered, question=question)
    if settings.language_instruction:
        user += "\n" + render(LANGUAGE_INSTRUCTION, language=language)
    return user


def _ms_since(started: float) -> float:
    return round((time.perf_counter() - started) * 1000, 2)
