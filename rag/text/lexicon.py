"""English words → the Sino-Korean nouns that translate them, for English questions over Korean articles.

Sound keys (rag/text/transliteration.py) find the Korean words that *transliterate* an English one (alliance ↔
얼라이언스); most of a Korean news article's vocabulary is Sino-Korean instead (감사 "audit", 의장 "chair", 예산
"budget"), and a small multilingual embedding model misses those links when the article sits among thousands.
No English–Korean dictionary ships in a package, but an English–Japanese one does (JMdict, in `jamdict-data`),
and Japanese and Korean share most of their Sino-Xenic vocabulary: 監査 is kansa in Japanese and 감사 in Korean,
議長 gichō and 의장. So the setup step (`python -m rag models`, rag/provision/lexicon_build.py) turns JMdict's kanji
words into Hangul through KANJIDIC2's Korean readings, keeps the ones the Korean morphological analyser knows
as nouns, and writes `english stem → Korean nouns` as a small TSV this module reads.

A translation is a clue, not an answer: 監査 is also "auditing a class" (청강), Japanese and Korean drift apart
on some words, and a common word has many translations. So a word's translations share one unit of query
weight (a rare wrong one cannot outweigh the word), and the side joins the fusion at a low weight
(rag/search/retrieve.py) next to the dense side, which decides the order among the articles this side brings.
"""

from __future__ import annotations

import logging
import re
import threading
from dataclasses import dataclass
from pathlib import Path

import snowballstemmer

logger = logging.getLogger(__name__)

LEXICON_VERSION = "jmdict-kanjidic-ko-1"
# per English word; 3 or 10 measured a little lower (docs/benchmarks.md, English questions over Korean news)
MAX_TRANSLATIONS = 6
# English prefixes that Korean renders as a word of its own: co-chair → 공동의장, co-host → 공동주최
PREFIX_TRANSLATIONS: dict[str, tuple[str, ...]] = {"co": ("공동",)}
_WORD = re.compile(r"[A-Za-z][A-Za-z'’]*(?:-[A-Za-z]+)*")


@dataclass(frozen=True)
class Translation:
    english: str  # the question's word (or two words) as written
    korean: tuple[str, ...]  # its Korean nouns, most common sense first


class Lexicon:
    """`english stem (or two stems) → Korean nouns`, read from the TSV rag/provision/lexicon_build.py writes."""

    def __init__(self, entries: dict[str, tuple[str, ...]], stopwords: frozenset[str] = frozenset()) -> None:
        self.entries = entries
        self.stopwords = stopwords
        self._stemmer = snowballstemmer.stemmer("english")
        self._stem_lock = threading.Lock()  # the stemmer keeps its word in the instance: one thread at a time

    @classmethod
    def load(cls, path: Path, stopwords: frozenset[str] = frozenset()) -> Lexicon:
        """Rows `stem<TAB>korean<TAB>rank`; for each stem only the best-ranked tier is kept (rank 2: a common
        word in JMdict's news/ichi lists), at most MAX_TRANSLATIONS of them."""
        tiers: dict[str, tuple[int, list[str]]] = {}
        with path.open(encoding="utf-8") as handle:
            for line in handle:
                parts = line.rstrip("\n").split("\t")
                if len(parts) != 3 or not parts[2].isdigit():
                    continue
                key, korean, rank = parts[0], parts[1], int(parts[2])
                best, words = tiers.get(key, (rank, []))
                if rank > best:
                    tiers[key] = (rank, [korean])
                elif rank == best:
                    words.append(korean)
                    tiers[key] = (best, words)
        entries = {key: tuple(words[:MAX_TRANSLATIONS]) for key, (_, words) in tiers.items()}
        return cls(entries, stopwords)

    def translate(self, text: str) -> list[Translation]:
        """The question's words with their Korean translations; two adjacent words translated as one when the
        dictionary has the pair ("interest rate" → 금리), a hyphenated word part by part when it lacks the whole."""
        words = [w.lower().replace("’", "'") for w in _WORD.findall(text)]
        found: list[Translation] = []
        i = 0
        while i < len(words):
            if i + 1 < len(words):
                pair = self.entries.get(f"{self._key(words[i])} {self._key(words[i + 1])}")
                if pair and words[i] not in self.stopwords:
                    found.append(Translation(f"{words[i]} {words[i + 1]}", pair))
                    i += 2
                    continue
            found.extend(self._word(words[i]))
            i += 1
        return found

    def _word(self, word: str) -> list[Translation]:
        if word in self.stopwords or (len(word) < 3 and "-" not in word):
            return []
        whole = self.entries.get(self._key(word))
        if whole:
            return [Translation(word, whole)]
        if "-" not in word:
            return []
        parts: list[Translation] = []
        for part in word.split("-"):
            if part in PREFIX_TRANSLATIONS:
                parts.append(Translation(part, PREFIX_TRANSLATIONS[part]))
            else:
                parts.extend(self._word(part))
        return parts

    def _key(self, word: str) -> str:
        with self._stem_lock:
            return str(self._stemmer.stemWord(word.removesuffix("'s")))


class NoLexicon(Lexicon):
    """Stands in when the lexicon was not provisioned: translates nothing."""

    def __init__(self) -> None:
        super().__init__({})


def load_lexicon(path: Path, stopwords: frozenset[str] = frozenset()) -> Lexicon:
    """The lexicon at `path`; a missing or unreadable one is a warning, not an error: answers still work, English
    questions over Korean articles just lose one clue."""
    without = "English questions over Korean articles are searched without translated keywords"
    if not path.is_file():
        logger.warning("no English→Korean lexicon at %s: %s; run `python -m rag models` to provision it", path, without)
        return NoLexicon()
    try:
        return Lexicon.load(path, stopwords)
    except (OSError, UnicodeDecodeError) as exc:
        logger.warning(
            "the English→Korean lexicon %s cannot be read (%s): %s; delete it and run `python -m rag models`",
            path,
            exc,
            without,
        )
        return NoLexicon()
