"""Korean and English text → weighted keyword terms, and the sound keys of borrowed Korean nouns.

Analysis, per language (docs/architecture.md, traps 4-6):
- Korean: kiwipiepy morphemes, content tags only (nouns, verb/adjective stems, roots, numbers, hanja);
  plus character bigrams of each Hangul run, because kiwi can split an unknown proper noun differently
  in a question (`이큐브랩의` → 이/큐브/랩/의) than in the article (`이큐브랩`). Bigrams are weighted lower.
- English and other Latin text: lower-cased, stop words dropped, Snowball (Porter2) stemmed.
- Sound keys (rag/text/transliteration.py): a Korean document also carries the consonant skeleton of each noun
  that looks borrowed (얼라이언스 → `~LNS`), and an English question can be turned into the skeletons of its
  words (alliance → `~LNS`), so an English question finds the Korean article that transliterates its words.
The terms become sparse vectors in rag/search/sparse.py.
"""

from __future__ import annotations

import re
import threading
from collections import defaultdict
from collections.abc import Sequence
from functools import lru_cache
from typing import TYPE_CHECKING

import snowballstemmer  # English (Porter2) stemmer: pure Python, imports in milliseconds (nltk: seconds)

from rag.text.hangul import SYLLABLES, contains_hangul
from rag.text.stopwords import ENGLISH_STOPWORDS
from rag.text.transliteration import english_keys, hangul_key, looks_borrowed, usable

if TYPE_CHECKING:
    from kiwipiepy import Kiwi, Token

ANALYZER_VERSION = "kiwi-bigram-snowball-1"

# Kiwi tags that carry content; particles (J*), endings (E*), affixes and punctuation are dropped.
_CONTENT_TAGS = frozenset({"NNG", "NNP", "NNB", "NR", "VV", "VA", "XR", "SH", "SN", "SL"})
_VERB_TAGS = frozenset({"VV", "VA"})
_NOUN_TAGS = frozenset({"NNG", "NNP"})
# where an eojeol's stem ends: particles, endings, suffixes, the copula, punctuation and symbols
_GRAMMAR_TAG_PREFIXES = ("J", "E", "XS", "VCP", "S")
SOUND_KEY_PREFIX = "~"
# particles kiwi leaves glued to a word it does not know (얼라이언스가 → one NNP): keyed with and without
_GLUED_PARTICLES = ("에서", "으로", "가", "이", "은", "는", "을", "를", "의", "에", "와", "과", "도", "로")
_HANGUL_RUN = re.compile(f"[{SYLLABLES}]{{2,}}")
_LATIN_WORD = re.compile(r"[A-Za-z][A-Za-z0-9'’\-]*")
NUMBER = re.compile(r"\d+(?:[.,]\d+)*")

BIGRAM_WEIGHT = 0.5  # a bigram is weaker evidence than a whole morpheme
BIGRAM_PREFIX = "#"  # keeps a bigram term apart from a one-syllable-pair morpheme of the same letters


@lru_cache(maxsize=1)
def get_kiwi() -> Kiwi:
    """One Kiwi per process: loading its model takes about a second."""
    from kiwipiepy import Kiwi  # loaded on first use: its import and model take seconds

    return Kiwi(num_workers=-1)


_kiwi_lock = threading.Lock()


class TermAnalyzer:
    """Turns text into weighted keyword terms (`term -> weight per occurrence`)."""

    def __init__(self) -> None:
        self._stemmer = snowballstemmer.stemmer("english")
        # a snowball stemmer keeps the word it works on in the instance: two threads at once garble each other's
        self._stem_lock = threading.Lock()

    def terms(self, text: str) -> dict[str, float]:
        return self._analyse(text, with_sound_keys=False)[0]

    def tokens(self, text: str) -> list[Token]:
        """kiwi's morphemes of `text` with their tags and offsets (the claim check reads its proper nouns)."""
        with _kiwi_lock:
            return list(get_kiwi().tokenize(text))

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
            for number in NUMBER.findall(text):
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
                with self._stem_lock:
                    stem = self._stemmer.stemWord(part)
                counts[stem] += 1.0


def _add_sound_keys(text: str, tokens: list[Token], keys: defaultdict[str, float]) -> None:
    """Keys of each eojeol's stem (kiwi splits unknown loanwords: 얼라이언스 → 얼라이언 + 스) and of each noun
    inside it, for the ones that look borrowed."""
    for eojeol in eojeols(tokens):
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


def eojeols(tokens: Sequence[Token]) -> list[list[Token]]:
    """Tokens grouped by the space-separated word they come from."""
    groups: list[list[Token]] = []
    end = -1
    for token in tokens:
        if not groups or token.start > end:
            groups.append([])
        groups[-1].append(token)
        end = token.end
    return groups
