"""Keyword (BM25-style) terms for Korean and English text, as sparse vectors Qdrant can score.

Qdrant applies IDF itself (`modifier=IDF` on the sparse vector), so a document vector carries only the
BM25 term-frequency part and a query vector carries 1.0 per distinct term.

Analysis, per language (FINDINGS.md #4-#6):
- Korean: kiwipiepy morphemes, content tags only (nouns, verb/adjective stems, roots, numbers, hanja);
  plus character bigrams of each Hangul run, because kiwi can split an unknown proper noun differently
  in a question (`이큐브랩의` → 이/큐브/랩/의) than in the article (`이큐브랩`). Bigrams are weighted lower.
- English and other Latin text: lower-cased, stop words dropped, Snowball (Porter2) stemmed.
- Sound keys (rag/text/transliteration.py): a Korean document also carries the consonant skeleton of each noun
  that looks borrowed (얼라이언스 → `~LNS`), and an English question can be turned into the skeletons of its
  words (alliance → `~LNS`), so an English question finds the Korean article that transliterates its words.
  Keys are counted per article and do not count towards a chunk's length (see SparseEncoder.encode_article).
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

from rag.text.transliteration import english_keys, hangul_key, looks_borrowed, usable

if TYPE_CHECKING:
    from collections.abc import Sequence

    from kiwipiepy import Kiwi, Token

    from rag.text.lexicon import Translation

ANALYZER_VERSION = "kiwi-bigram-snowball-1"
# Sound keys only add terms, so a collection built without them still opens and answers as before; the
# version joins each article's content hash (ingest/pipeline.py), so the next ingest adds them article by article.
SOUND_KEYS_VERSION = "sound-keys-per-article-k5-1"

# Kiwi tags that carry content; particles (J*), endings (E*), affixes and punctuation are dropped.
_CONTENT_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "VV", "VA", "XR", "SH", "SN", "SL"})
_VERB_TAGS = frozenset({"VV", "VA"})
_NOUN_TAGS = frozenset({"NNG", "NNP"})
# where an eojeol's stem ends: particles, endings, suffixes, the copula, punctuation and symbols
_GRAMMAR_TAG_PREFIXES = ("J", "E", "XS", "VCP", "S")
SOUND_KEY_PREFIX = "~"
# BM25 saturation of a sound key's count over a whole article. Slower than within a chunk (k1 1.2), so that a
# name the article is about (얼라이언스, 20 times) outweighs one mentioned in passing; a key met once weighs 1
# either way. Measured (make bench-retrieval): held-out English→Korean stories recall@1 0.602 at 5 vs 0.600 at
# 1.2; the sample article's "How many companies founded the alliance?" 1st vs 2nd among 2,372 articles.
SOUND_KEY_K1 = 5.0
# particles kiwi leaves glued to a word it does not know (얼라이언스가 → one NNP): keyed with and without
_GLUED_PARTICLES = ("에서", "으로", "가", "이", "은", "는", "을", "를", "의", "에", "와", "과", "도", "로")
_HANGUL_RUN = re.compile(r"[\uac00-\ud7a3]{2,}")
_HANGUL_CHAR = re.compile(r"[\u1100-\u11ff\u3130-\u318f\uac00-\ud7a3]")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*")
_NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

BIGRAM_WEIGHT = 0.5  # a bigram is weaker evidence than a whole morpheme
BIGRAM_PREFIX = "#"  # keeps a bigram term apart from a one-syllable-pair morpheme of the same letters

ENGLISH_STOPWORDS = frozenset(
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
        return self._analyse(text, with_sound_keys=False)[0]

    def terms_and_sound_keys(self, text: str) -> tuple[dict[str, float], dict[str, float]]:
        """Keyword terms, and the sound keys of the borrowed nouns (Korean text only; one kiwi pass)."""
        return self._analyse(text, with_sound_keys=True)

    def _analyse(self, text: str, *, with_sound_keys: bool) -> tuple[dict[str, float], dict[str, float]]:
        counts: defaultdict[str, float] = defaultdict(float)
        keys: defaultdict[str, float] = defaultdict(float)
        if contains_hangul(text):
            with _kiwi_lock:
                tokens = get_kiwi().tokenize(text)
            self._add_korean_terms(text, tokens, counts)
            if with_sound_keys:
                _add_sound_keys(text, tokens, keys)
        else:
            self._add_latin_terms(text, counts)
            for number in _NUMBER.findall(text):
                counts[number.replace(",", "")] += 1.0
        return counts, keys

    def english_sound_keys(self, text: str) -> set[str]:
        """Sound keys of an English question's words, to look for their Korean transliterations."""
        return {SOUND_KEY_PREFIX + key for key in english_keys(text, ENGLISH_STOPWORDS)}

    def _add_korean_terms(self, text: str, tokens: list[Token], counts: defaultdict[str, float]) -> None:
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
                counts[BIGRAM_PREFIX + run[i : i + 2]] += BIGRAM_WEIGHT

    def _add_latin_terms(self, text: str, counts: defaultdict[str, float]) -> None:
        for word in _LATIN_WORD.findall(text):
            for part in re.split(r"[-'’]", word.lower()):
                if len(part) < 2 or part in ENGLISH_STOPWORDS:
                    continue
                counts[self._stemmer.stemWord(part)] += 1.0


def _add_sound_keys(text: str, tokens: list[Token], keys: defaultdict[str, float]) -> None:
    """Keys of each eojeol's stem (kiwi splits unknown loanwords: 얼라이언스 → 얼라이언 + 스) and of each noun
    inside it, for the ones that look borrowed."""
    for eojeol in _eojeols(tokens):
        stem_end = next((i for i, t in enumerate(eojeol) if t.tag.startswith(_GRAMMAR_TAG_PREFIXES)), len(eojeol))
        words = {token.form for token in eojeol[:stem_end] if token.tag in _NOUN_TAGS}
        if stem_end and eojeol[0].tag in _NOUN_TAGS:
            words.add(text[eojeol[0].start : eojeol[stem_end - 1].end])
        words |= {w[: -len(p)] for w in words for p in _GLUED_PARTICLES if w.endswith(p) and len(w) - len(p) >= 2}
        for word in words:
            if len(word) < 2 or not looks_borrowed(word):
                continue
            key = hangul_key(word)
            if usable(key):
                keys[SOUND_KEY_PREFIX + key] += 1.0


def _eojeols(tokens: list[Token]) -> list[list[Token]]:
    """Tokens grouped by the space-separated word they come from."""
    groups: list[list[Token]] = []
    end = -1
    for token in tokens:
        if not groups or token.start > end:
            groups.append([])
        groups[-1].append(token)
        end = token.end
    return groups


class SparseEncoder:
    """BM25 term-frequency weighting on top of TermAnalyzer; IDF comes from Qdrant."""

    def __init__(self, k1: float = 1.2, b: float = 0.75, average_length: float = 120.0) -> None:
        self.k1, self.b, self.average_length = k1, b, average_length
        self.analyzer = TermAnalyzer()
        # a translation's index terms, once per Korean word: kiwi runs under a lock that ingest holds too, so
        # an English question should not queue behind an ingest to analyse the same few nouns again
        self._noun_term_ids = lru_cache(maxsize=20_000)(self._morpheme_term_ids)

    def encode_document(self, text: str) -> SparseVector:
        return self.encode_article([text])[0]

    def encode_article(self, chunk_texts: list[str]) -> list[SparseVector]:
        """One vector per chunk: its own terms (BM25 within the chunk), plus the sound keys of the whole
        article, the same in every chunk. Sound keys say which article an English question is about, not which
        passage: keyed per chunk, they pulled the chunks that repeat the borrowed name (얼라이언스, four times in
        one paragraph) above the one that answers "Who co-chairs the alliance?"; per article, the chunks of an
        article gain alike and the dense side orders them."""
        analysed = [self.analyzer.terms_and_sound_keys(text) for text in chunk_texts]
        article_keys: defaultdict[str, float] = defaultdict(float)
        for _, keys in analysed:
            for key, tf in keys.items():
                article_keys[key] += tf
        # no length normalisation: every chunk carries the same key weights, whatever its own length
        k1 = SOUND_KEY_K1
        key_weights = {term_id(key): tf * (k1 + 1) / (tf + k1) for key, tf in article_keys.items()}
        return [self._with_keys(self._bm25(counts), key_weights) for counts, _ in analysed]

    def _bm25(self, counts: dict[str, float]) -> dict[int, float]:
        length = sum(counts.values())
        norm = self.k1 * (1 - self.b + self.b * length / self.average_length)
        weights: dict[int, float] = {}
        for term, tf in counts.items():
            index = term_id(term)
            weights[index] = weights.get(index, 0.0) + tf * (self.k1 + 1) / (tf + norm)
        return weights

    @staticmethod
    def _with_keys(weights: dict[int, float], key_weights: dict[int, float]) -> SparseVector:
        merged = dict(weights)
        for index, weight in key_weights.items():
            merged[index] = merged.get(index, 0.0) + weight
        return _to_vector(merged)

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

    def encode_translations(self, translations: Sequence[Translation]) -> SparseVector:
        """Korean nouns translating an English question's words (rag/text/lexicon.py), as the Korean analyser indexes
        them (a compound 공동의장 as 공동 + 의장, no bigrams): each English word's translations share a weight of
        1, so a word with six senses weighs no more than a word with one."""
        weights: dict[int, float] = {}
        for translation in translations:
            share = 1.0 / len(translation.korean)
            for korean in translation.korean:
                for index in self._noun_term_ids(korean):
                    weights[index] = max(weights.get(index, 0.0), share)
        return _to_vector(weights)

    def _morpheme_term_ids(self, korean: str) -> tuple[int, ...]:
        return tuple(term_id(term) for term in self.analyzer.terms(korean) if not term.startswith(BIGRAM_PREFIX))

    def encode_sound_query(self, text: str) -> SparseVector:
        """The sound keys of an English question, 1.0 each (see rag/text/transliteration.py)."""
        return _to_vector({term_id(key): 1.0 for key in self.analyzer.english_sound_keys(text)})


def _to_vector(weights: dict[int, float]) -> SparseVector:
    items = sorted((i, w) for i, w in weights.items() if w > 0 and math.isfinite(w))
    return SparseVector(indices=[i for i, _ in items], values=[w for _, w in items])
