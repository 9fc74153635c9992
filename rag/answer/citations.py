"""An LLM's reply → its sentences, each with the evidence it may cite: every `[n]` must point at evidence it
was given.

Markers to evidence that was not given are dropped; a sentence that repeats an evidence sentence is tied to
it whatever marker it carries (repair), one that repeats none keeps the model's markers, one with neither
cites nothing. The claim check (rag/answer/claims.py) then decides what each sentence may say (a sentence
citing nothing, or naming a link its cited evidence lacks, is dropped there) and renumbers the citations by
first appearance.
"""

from __future__ import annotations

import re

from rag.answer.claims import DraftSentence
from rag.answer.evidence import Evidence
from rag.text.analyzer import TermAnalyzer

_MARKER = re.compile(r"\[(\d+(?:\s*[,;]\s*\d+)*)\]")
_TRAILING_MARKERS = re.compile(r"([.!?。])\s*((?:\[\d+(?:\s*[,;]\s*\d+)*\]\s*)+)")
_ANSWER_SENTENCE = re.compile(r"(?<=[.!?。])\s+|\n+")
MIN_REPAIR_OVERLAP = 0.5  # share of a sentence's terms that must appear in the evidence it is tied to


def draft_sentences(reply: str, evidence: list[Evidence], analyzer: TermAnalyzer) -> list[DraftSentence]:
    """The reply's sentences, markers removed, each with the evidence numbers it stands on."""
    drafts: list[DraftSentence] = []
    # "… IcubeLab. [1]" → "… IcubeLab [1]." so a marker after the full stop stays with its sentence
    reply = _TRAILING_MARKERS.sub(lambda m: f" {m.group(2).strip()}{m.group(1)} ", reply)
    for sentence in (s.strip() for s in _ANSWER_SENTENCE.split(reply)):
        if not sentence:
            continue
        cited = [n for n in _cited_numbers(sentence) if 1 <= n <= len(evidence)]
        bare = re.sub(r"\s+([.!?。])", r"\1", _MARKER.sub("", sentence)).strip()
        if not any(ch.isalnum() for ch in bare):
            continue  # a stray marker or punctuation on its own line
        numbers = _supporting_numbers(bare, cited, evidence, analyzer)
        drafts.append(DraftSentence(bare, tuple(dict.fromkeys(numbers))))
    return drafts


def _cited_numbers(sentence: str) -> list[int]:
    return [int(n) for group in _MARKER.findall(sentence) for n in re.split(r"[,;]", group) if n.strip()]


def _supporting_numbers(sentence: str, cited: list[int], evidence: list[Evidence], analyzer: TermAnalyzer) -> list[int]:
    """The evidence a sentence stands on. A sentence that repeats an evidence sentence's words is tied to it:
    to the one it repeats when the model cited none, or cited only sentences it does not repeat (a marker
    copied from an article, "… [1]" written inside its text, must not pin the article's words on another
    source). A sentence that repeats none (a translation, a summary) keeps the model's citations."""
    overlaps = _term_overlaps(sentence, evidence, analyzer)
    if any(overlaps[n - 1] >= MIN_REPAIR_OVERLAP for n in cited):
        return cited
    best = max(range(len(evidence)), key=overlaps.__getitem__, default=None)
    if best is not None and overlaps[best] >= MIN_REPAIR_OVERLAP:
        return [best + 1]
    return cited


def _term_overlaps(sentence: str, evidence: list[Evidence], analyzer: TermAnalyzer) -> list[float]:
    """Share of the sentence's terms found in each evidence sentence."""
    terms = set(analyzer.terms(sentence))
    if not terms:
        return [0.0] * len(evidence)
    return [len(terms & set(analyzer.terms(item.text))) / len(terms) for item in evidence]
