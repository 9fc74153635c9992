"""Hangul: the one definition of which characters are Korean letters, and of how a syllable is built.

Three ranges, because callers need different ones:
- SYLLABLES (가-힣, U+AC00-U+D7A3): the precomposed syllables modern Korean text is written in. Syllable
  arithmetic (initial, vowel, final) and anything cut at syllables (bigrams, sound keys) needs exactly these.
- JAMO (conjoining jamo U+1100-U+11FF, compatibility jamo U+3130-U+318F): letters written on their own (ㅋㅋ,
  ㅠㅠ) or text in decomposed form (NFD). "Is this text Korean?" counts them as Hangul too.
- ARCHAIC_JAMO (Hangul Jamo Extended-A and -B): old letters, only in decomposed historical text. Only the
  answer-scoring rule of the benchmarks (eval/metrics.py) counts them.
"""

from __future__ import annotations

import re

SYLLABLES = "\uac00-\ud7a3"
JAMO = "\u1100-\u11ff\u3130-\u318f"
ARCHAIC_JAMO = "\ua960-\ua97f\ud7b0-\ud7ff"

KOREAN_LETTER_SHARE = 0.3  # share of Hangul letters from which a text (a question, a sentence) counts as Korean

_FIRST_SYLLABLE = 0xAC00
_VOWELS = 21
_FINALS = 28  # no final consonant, then the 27 finals
_SYLLABLE = re.compile(f"[{SYLLABLES}]")
_SYLLABLE_WORD = re.compile(f"[{SYLLABLES}]+")
_HANGUL = re.compile(f"[{JAMO}{SYLLABLES}]")
_ANY_HANGUL = re.compile(f"[{JAMO}{ARCHAIC_JAMO}{SYLLABLES}]")


def is_syllable(char: str) -> bool:
    """A precomposed Hangul syllable (가-힣)."""
    return "\uac00" <= char <= "\ud7a3"


def contains_syllable(text: str) -> bool:
    return _SYLLABLE.search(text) is not None


def is_syllable_word(word: str) -> bool:
    """Non-empty and nothing but precomposed syllables."""
    return _SYLLABLE_WORD.fullmatch(word) is not None


def contains_hangul(text: str) -> bool:
    """At least one Hangul syllable or jamo (archaic jamo excepted)."""
    return _HANGUL.search(text) is not None


def contains_any_hangul(text: str) -> bool:
    """At least one Hangul syllable or jamo, archaic jamo included."""
    return _ANY_HANGUL.search(text) is not None


def hangul_share(text: str) -> float:
    """Share of letters that are Hangul (syllables or jamo): how Korean a text is."""
    letters = [ch for ch in text if ch.isalpha()]
    if not letters:
        return 0.0
    return sum(1 for ch in letters if _HANGUL.match(ch)) / len(letters)


def is_korean(text: str) -> bool:
    """At least KOREAN_LETTER_SHARE of the letters are Hangul."""
    return hangul_share(text) >= KOREAN_LETTER_SHARE


def decompose(syllable: str) -> tuple[int, int, int]:
    """(initial, vowel, final) indices of a precomposed syllable; final 0 means none."""
    code = ord(syllable) - _FIRST_SYLLABLE
    return code // (_VOWELS * _FINALS), (code % (_VOWELS * _FINALS)) // _FINALS, code % _FINALS


def compose(initial: int, vowel: int, final: int) -> str:
    return chr(_FIRST_SYLLABLE + (initial * _VOWELS + vowel) * _FINALS + final)
