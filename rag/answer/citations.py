"""An LLM's reply → only the citations it may make: every `[n]` must point at evidence it was given.

Markers to evidence that was not given are dropped; a sentence without a marker is tied to the evidence it
repeats (repair) or dropped; citations are renumbered by first appearance.
"""

from __future__ import annotations

import re

from rag.answer.evidence import Evidence
from rag.text.analyzer import TermAnalyzer
from rag.types import Citation

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
