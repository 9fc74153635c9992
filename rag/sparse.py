"""Keyword (BM25-style) terms for Korean and English text, as sparse vectors Qdrant can score.

Qdrant applies IDF itself (`modifier=IDF` on the sparse vector), so a document vector carries only the
BM25 term-frequency part and a query vector carries 1.0 per distinct term.

Analysis, per language (FINDINGS.md #4-#6):
- Korean: kiwipiepy morphemes, content tags only (nouns, verb/adjective stems, roots, numbers, hanja);
  plus character bigrams of each Hangul run, because kiwi can split an unknown proper noun differently
  in a question (`이큐브랩의` → 이/큐브/랩/의) than in the article (`이큐브랩`). Bigrams are weighted lower.
- English and other Latin text: lower-cased, stop words dropped, Snowball (Porter2) stemmed.
"""

from __future__ import annotations

import hashlib
import math
import re
import threading
from collections import defaultdict
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from kiwipiepy import Kiwi

ANALYZER_VERSION = "kiwi-bigram-snowball-1"

# Kiwi tags that carry content; particles (J*), endings (E*), affixes and punctuation are dropped.
_CONTENT_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "VV", "VA", "XR", "SH", "SN", "SL"})
_VERB_TAGS = frozenset({"VV", "VA"})
_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]{2,}")
_HANGUL_CHAR = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

BIGRAM_WEIGHT = 0.5  # a bigram is weaker evidence than a whole morpheme

_ENGLISH_STOPWORDS = frozenset(
    [
        "a",
        "about",
        "above",
        "after",
        "again",
        "against",
        "all",
        "am",
        "an",
        "and",
        "any",
        "are",
        "as",
        "at",
        "be",
        "because",
        "been",
        "before",
        "being",
        "below",
        "between",
        "both",
        "but",
        "by",
        "can",
        "could",
        "did",
        "do",
        "does",
        "doing",
        "down",
        "during",
        "each",
        "few",
        "for",
        "from",
        "further",
        "had",
        "has",
        "have",
        "having",
        "he",
        "her",
        "here",
        "hers",
        "herself",
        "him",
        "himself",
        "his",
        "how",
        "i",
        "if",
        "in",
        "into",
        "is",
        "it",
        "its",
        "itself",
        "just",
        "me",
        "more",
        "most",
        "my",
        "myself",
        "no",
        "nor",
        "not",
        "now",
        "of",
        "off",
        "on",
        "once",
        "only",
        "or",
        "other",
        "our",
        "ours",
        "ourselves",
        "out",
        "over",
        "own",
        "same",
        "she",
        "should",
        "so",
        "some",
        "such",
        "than",
        "that",
        "the",
        "their",
        "theirs",
        "them",
        "themselves",
        "then",
        "there",
        "these",
        "they",
        "this",
        "those",
        "through",
        "to",
        "too",
        "under",
        "until",
        "up",
        "very",
        "was",
        "we",
        "were",
        "what",
        "when",
        "where",
        "which",
        "while",
        "who",
        "whom",
        "why",
        "will",
        "with",
        "would",
        "you",
        "your",
        "yours",
        "yourself",
        "yourselves",
        "s",
        "t",
        "don",
        "didn",
        "doesn",
        "isn",
        "wasn",
        "weren",
        "won",
        "wouldn",
        "shouldn",
        "couldn",
        "also",
        "may",
        "might",
        "must",
        "shall",
    ]
)


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def is_empty(self) -> bool:
        return not self.indices


@lru_cache(maxsize=1)
def get_kiwi() -> Kiwi:
    """One Kiwi per process: loading its model takes about a second."""
    from kiwipiepy import Kiwi

    return Kiwi(num_workers=-1)


_kiwi_lock = threading.Lock()


def term_id(term: str) -> int:
    """Stable 31-bit id for a term (Qdrant sparse indices are uint32; stay clear of the sign bit)."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


def contains_hangul(text: str) -> bool:
    return _HANGUL_CHAR.search(text) is not None


def hangul_share(text: str) -> float:
    """Share of letters that are Hangul: how Korean a query is, for weighting the keyword side."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _HANGUL_CHAR.match(ch)) / len(letters)


class TermAnalyzer:
    """Turns text into weighted keyword terms (`term -> weight per occurrence`)."""

    def __init__(self) -> None:
        # snowball's English (Porter2) stemmer: pure Python and imports in milliseconds (nltk takes seconds)
        import snowballstemmer

        self._stemmer = snowballstemmer.stemmer("english")

    def terms(self, text: str) -> dict[str, float]:
        counts: defaultdict[str, float] = defaultdict(float)
        if contains_hangul(text):
            self._add_korean_terms(text, counts)
        else:
            self._add_latin_terms(text, counts)
            for number in _NUMBER.findall(text):
                counts[number.replace(",", "")] += 1.0
        return counts

    def _add_korean_terms(self, text: str, counts: defaultdict[str, float]) -> None:
        with _kiwi_lock:
            tokens = get_kiwi().tokenize(text)
        for token in tokens:
            if token.tag not in _CONTENT_TAGS:
                continue
            if token.tag == "SL":
                self._add_latin_terms(token.form, counts)
            elif token.tag in _VERB_TAGS:
                counts[f"{token.form}다"] += 1.0
            else:
                counts[token.form.lower()] += 1.0
        for run in _HANGUL_RUN.findall(text):
            for i in range(len(run) - 1):
                counts["#" + run[i : i + 2]] += BIGRAM_WEIGHT

    def _add_latin_terms(self, text: str, counts: defaultdict[str, float]) -> None:
        for word in _LATIN_WORD.findall(text):
            for part in re.split(r"[-'’]", word.lower()):
                if len(part) < 2 or part in _ENGLISH_STOPWORDS:
                    continue
                counts[self._stemmer.stemWord(part)] += 1.0


class SparseEncoder:
    """BM25 term-frequency weighting on top of TermAnalyzer; IDF comes from Qdrant."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, average_length: float = 120.0) -> None:
        self.k1, self.b, self.average_length = k1, b, average_length
        self.analyzer = TermAnalyzer()

    def encode_document(self, text: str) -> SparseVector:
        counts = self.analyzer.terms(text)
        length = sum(counts.values())
        norm = self.k1 * (1 - self.b + self.b * length / self.average_length)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            index = term_id(term)
            weights[index] = weights.get(index, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return _to_vector(weights)

    def word_term_ids(self, text: str) -> list[int]:
        """Ids of the query's word terms; numbers are left out (they are script-neutral: a year in an English
        question matches Korean articles as well as English ones, so it says nothing about the language)."""
        return sorted({term_id(term) for term in self.analyzer.terms(text) if not _NUMBER.fullmatch(term)})

    def encode_query(self, text: str) -> SparseVector:
        counts = self.analyzer.terms(text)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            index = term_id(term)
            # a bigram term keeps its lower weight; repeated query words do not count twice
            weights[index] = max(weights.get(index, 0.0), min(tf, 1.0))
        return _to_vector(weights)


def _to_vector(weights: dict[int, float]) -> SparseVector:
    items = sorted((i, w) for i, w in weights.items() if w > 0 and math.isfinite(w))
    return SparseVector(indices=[i for i, _ in items], values=[w for _, w in items])
