"""Keyword (BM25-style) terms as sparse vectors Qdrant can score (terms from rag/text/analyzer.py).

Qdrant applies IDF itself (`modifier=IDF` on the sparse vector), so a document vector carries only the
BM25 term-frequency part and a query vector carries 1.0 per distinct term. Sound keys are counted per article
and do not count towards a chunk's length (see SparseEncoder.encode_article).
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from functools import lru_cache

from rag.text.analyzer import BIGRAM_PREFIX, NUMBER, TermAnalyzer
from rag.text.lexicon import Translation

# Sound keys only add terms, so a collection built without them still opens and answers as before; the
# version joins each article's content hash (ingest/pipeline.py), so the next ingest adds them article by article.
SOUND_KEYS_VERSION = "sound-keys-per-article-k5-1"

# BM25 saturation of a sound key's count over a whole article. Slower than within a chunk (k1 1.2), so that a
# name the article is about (얼라이언스, 20 times) outweighs one mentioned in passing; a key met once weighs 1
# either way. Measured (make bench-retrieval): held-out English→Korean stories recall@1 0.602 at 5 vs 0.600 at
# 1.2; the sample article's "How many companies founded the alliance?" 1st vs 2nd among 2,372 articles.
SOUND_KEY_K1 = 5.0


@dataclass(frozen=True)
class SparseVector:
    indices: list[int]
    values: list[float]

    def is_empty(self) -> bool:
        return not self.indices


def term_id(term: str) -> int:
    """Stable 31-bit id for a term (Qdrant sparse indices are uint32; stay clear of the sign bit)."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "little") & 0x7FFFFFFF


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
        return sorted({term_id(term) for term in self.analyzer.terms(text) if not NUMBER.fullmatch(term)})

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
