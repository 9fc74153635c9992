"""Disagreeing sources: two articles that answer the asked question with different values.

Kept simple and precise, because a false alarm ("sources differ" over two unrelated sentences) costs more trust
than it saves: the question must ask for a value of a known kind (a number, a date, a name); the best evidence
sentence and a sentence of another article must both be near the top, say nearly the same thing apart from
their values (most of their other content words shared), and each state a value of that kind the other
does not hold. The question's own values are the topic, not the answer ("How much in 2019?": 2019 is no side).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal, Protocol

from rag.answer.claims import Claim, ClaimChecker
from rag.text.analyzer import BIGRAM_PREFIX

SlotKind = Literal["number", "date", "name"]

WINDOW = 8  # evidence sentences looked at, best first
SCORE_WINDOW = 0.1  # the other side scores at most this much below the best sentence
MIN_FRAME_OVERLAP = 0.6  # share of the shorter sentence's other content words that the two share

# order matters: "몇 년" asks for a date before "몇" asks for a number
_SLOTS: list[tuple[SlotKind, re.Pattern[str]]] = [
    (
        "date",
        re.compile(
            r"\bwhen\b|\b(?:what|which) (?:date|day|year|month)\b|\bsince when\b|언제|며칠|몇\s*(?:년|월|일)|날짜|연도",
            re.IGNORECASE,
        ),
    ),
    (
        "number",
        re.compile(
            r"\bhow (?:many|much|long|large|big|high|far)\b|\bwhat (?:percentage|share|amount|number|proportion|rate"
            r"|budget|sum)\b|몇|얼마|규모|금액|비율|액수",
            re.IGNORECASE,
        ),
    ),
    ("name", re.compile(r"\bwho(?:m|se)?\b|\bwhere\b|\bwhich\b|누가|누구|어디|어느", re.IGNORECASE)),
]
_CLAIM_KINDS: dict[SlotKind, frozenset[str]] = {
    "number": frozenset({"number"}),
    "date": frozenset({"date", "number"}),
    "name": frozenset({"name"}),
}


class Ranked(Protocol):
    @property
    def text(self) -> str: ...

    @property
    def article_id(self) -> str: ...

    @property
    def score(self) -> float: ...


@dataclass(frozen=True)
class Conflict:
    """Two evidence sentences (indices into the list searched) that answer differently."""

    first: int
    second: int
    slot: SlotKind


def asked_slot(question: str) -> SlotKind | None:
    """The kind of value the question asks for, when it asks for one."""
    return next((slot for slot, pattern in _SLOTS if pattern.search(question)), None)


def find_conflict(question: str, evidence: Sequence[Ranked], checker: ClaimChecker) -> Conflict | None:
    """The best sentence against the sentences of other articles near the top (evidence best first)."""
    slot = asked_slot(question)
    if slot is None or not evidence:
        return None
    best = evidence[0]
    kinds = _CLAIM_KINDS[slot]
    if not _values(checker, best.text, question, kinds):
        return None
    for index, other in enumerate(evidence[1:WINDOW], start=1):
        if other.score < best.score - SCORE_WINDOW:
            break
        if other.article_id == best.article_id:
            continue
        if _disagree(checker, question, best.text, other.text, kinds):
            return Conflict(0, index, slot)
    return None


def _values(checker: ClaimChecker, text: str, question: str, kinds: frozenset[str]) -> list[Claim]:
    return [claim for claim in checker.claims(text, question) if claim.kind in kinds]


def _disagree(checker: ClaimChecker, question: str, first: str, second: str, kinds: frozenset[str]) -> bool:
    only_first = [c for c in checker.unsupported(first, [second], question) if c.kind in kinds]
    only_second = [c for c in checker.unsupported(second, [first], question) if c.kind in kinds]
    if not (only_first and only_second):
        return False
    return _frame_overlap(checker, first, only_first, second, only_second) >= MIN_FRAME_OVERLAP


def _frame_overlap(
    checker: ClaimChecker, first: str, first_values: list[Claim], second: str, second_values: list[Claim]
) -> float:
    """How much the two sentences say alike once their differing values are taken out."""
    a, b = _frame(checker, first, first_values), _frame(checker, second, second_values)
    if not a or not b:
        return 0.0
    return len(a & b) / min(len(a), len(b))


def _frame(checker: ClaimChecker, text: str, values: list[Claim]) -> set[str]:
    for value in values:
        text = text.replace(value.text, " ")
    return {
        term
        for term in checker.analyzer.terms(text)
        if not term.startswith(BIGRAM_PREFIX) and not any(ch.isdigit() for ch in term)
    }
