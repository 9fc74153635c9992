"""An LLM's reply → only the citations it may make: every `[n]` must point at evidence it was given.

Markers to evidence that was not given are dropped; a sentence that repeats an evidence sentence is tied to
it whatever marker it carries (repair), one that repeats none keeps the model's markers, and one with
neither, or naming a link its cited evidence lacks, is dropped; citations are renumbered by first appearance.
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
        cited = [n for n in _cited_numbers(sentence) if 1 <= n <= len(evidence)]
        bare = re.sub(r"\s+([.!?。])", r"\1", _MARKER.sub("", sentence)).strip()
        if not any(ch.isalnum() for ch in bare):
            continue  # a stray marker or punctuation on its own line
        numbers = _supporting_numbers(bare, cited, evidence, analyzer)
        if not numbers or _names_a_link_not_in(bare, [evidence[n - 1].text for n in numbers]):
            continue
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


# a web address, an e-mail address or a bare domain ("evil.example"): ASCII labels and a letter-only last label
_LINK = re.compile(
    r"(?:https?://|www\.)[^\s<>\"')\]]+|[\w.+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+|\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b",
    re.IGNORECASE,
)


def _link_host(link: str) -> str:
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", link.lower()).split("/", 1)[0]
    return host.rsplit("@", 1)[-1].rstrip(".,;:")


def _names_a_link_not_in(sentence: str, cited_texts: list[str]) -> bool:
    """Whether the sentence points somewhere (a web or e-mail address, a domain) that its cited evidence
    does not mention: a link is never the model's own addition, and an injected "visit evil.example" must
    not reach the user under a real source's number."""
    cited = " ".join(cited_texts).lower()
    return any(_link_host(link) not in cited for link in _LINK.findall(sentence))
