"""Numbers, amounts and dates read as values, so a sentence and its evidence compare whatever their wording:
"265억" and "26.5 billion", "2조 6천억" and "2.6 trillion", "3만 5천" and "35,000", "2026년 7월 3일" and
"July 3, 2026".

A stated number also says how precise it is: "27억" stands for anything that rounds to it (26.5억–27.5억), so a
number matches a value within half a unit of its last stated digit, never the other way round ("26.8억" is not
supported by evidence that says "27억").

Pure functions, no project imports: the claim check (rag/answer/claims.py) and conflict detection
(rag/answer/conflicts.py) read them.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

KOREAN_LARGE_UNITS = {"만": 1e4, "억": 1e8, "조": 1e12}
KOREAN_SMALL_UNITS = {"십": 10.0, "백": 100.0, "천": 1000.0}
ENGLISH_SCALES = {
    "thousand": 1e3,
    "million": 1e6,
    "mn": 1e6,
    "billion": 1e9,
    "bn": 1e9,
    "trillion": 1e12,
    "tn": 1e12,
}
MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("january", "jan"),
            ("february", "feb"),
            ("march", "mar"),
            ("april", "apr"),
            ("may",),
            ("june", "jun"),
            ("july", "jul"),
            ("august", "aug"),
            ("september", "sep", "sept"),
            ("october", "oct"),
            ("november", "nov"),
            ("december", "dec"),
        ],
        start=1,
    )
    for name in names
}
_MONTH_NAMES = "|".join(sorted(MONTHS, key=len, reverse=True))
_ORDINAL = r"(?:st|nd|rd|th)?"
_YEAR = r"(1[89]\d\d|20\d\d|21\d\d)"
# a digit run not glued to a Latin letter or another number on its left (G20, A1, 3.5's "5")
_LEFT = r"(?<![A-Za-z\d.,])"
_MANTISSA = r"(\d{1,3}(?:,\d{3})+|\d+)(?:\.(\d+))?"

_DATE_PATTERNS = [
    # 2026년 7월 3일, 2026년 7월, 7월 3일 (and without spaces)
    re.compile(_LEFT + r"(?:(\d{4})\s*년\s*)?(\d{1,2})\s*월(?:\s*(\d{1,2})\s*일)?"),
    # 2026-07-03, 2026.7.3., 2026/7/3, 2026. 7. 3.
    re.compile(_LEFT + r"(\d{4})\s*[-./]\s*(\d{1,2})\s*[-./]\s*(\d{1,2})(?!\d)"),
    # July 3, 2026 / July 3rd / Jul. 3
    re.compile(r"\b(" + _MONTH_NAMES + r")\.?\s+(\d{1,2})" + _ORDINAL + r"(?:,?\s+(\d{4}))?(?![\d,])", re.I),
    # 3 July 2026 / 3rd of July
    re.compile(_LEFT + r"(\d{1,2})" + _ORDINAL + r"\s+(?:of\s+)?(" + _MONTH_NAMES + r")\b\.?(?:,?\s+(\d{4}))?", re.I),
    # July 2026 / in February
    re.compile(r"\b(" + _MONTH_NAMES + r")\b\.?(?:,?\s+(\d{4}))?", re.I),
    # 2019년 (a year on its own)
    re.compile(_LEFT + _YEAR + r"\s*년"),
]
# a number with what follows it: Korean units (2조 6천억), an English scale (26.5 billion), or neither
# units glued to the digits only: "3 조사" is a number and a noun, "3조" three trillion; 경 (10^16) is left out,
# "3경기" is three games far more often than an amount
_KOREAN_GROUP = re.compile(_MANTISSA + r"([십백천]?)([만억조]?)")
_ENGLISH_SCALE = re.compile(r"[\s-]?(" + "|".join(ENGLISH_SCALES) + r")\b", re.I)
_NUMBER_START = re.compile(_LEFT + r"\d")
_APOSTROPHE_YEAR = re.compile(r"[’'‘](\d{2})(?!\d)")
_PLAIN = re.compile(r"(\d+)")
_DIGITS = re.compile(r"[\d,.]+")
# a number glued to Latin letters on its right is part of a name (5G, 3D) unless they are an ordinal or a unit
_UNIT_WORDS = re.compile(r"(?:st|nd|rd|th)\b|(?:km|kg|cm|mm|m|g|t|p|pp|GW|MW|kW|GB|TB|MB|won|KRW|USD)\b")


@dataclass(frozen=True)
class Quantity:
    """A number as stated: its value, and half a unit of its last stated digit."""

    value: float
    tolerance: float
    text: str
    start: int
    end: int

    def supported_by(self, value: float) -> bool:
        """Whether `value` (from the evidence) rounds to this stated number."""
        return abs(self.value - value) <= self.tolerance + 1e-9 * max(abs(self.value), 1.0)


@dataclass(frozen=True)
class Date:
    """A calendar date as stated; each part may be missing ("7월 3일" has no year, "2019년" only one)."""

    year: int | None
    month: int | None
    day: int | None
    text: str
    start: int
    end: int


def find_dates(text: str) -> list[Date]:
    """Dates in `text`, in order, none overlapping another (the more specific pattern wins)."""
    found: list[Date] = []
    taken: list[tuple[int, int]] = []
    for index, pattern in enumerate(_DATE_PATTERNS):
        for match in pattern.finditer(text):
            if any(match.start() < end and start < match.end() for start, end in taken):
                continue
            date = _date_from(index, match)
            if date is not None:
                found.append(date)
                taken.append((match.start(), match.end()))
    return sorted(found, key=lambda d: d.start)


def _date_from(pattern_index: int, match: re.Match[str]) -> Date | None:
    groups = match.groups()
    if pattern_index == 0 or pattern_index == 1:
        year, month, day = _int(groups[0]), _int(groups[1]), _int(groups[2])
    elif pattern_index == 2:
        month, day, year = MONTHS[groups[0].lower()], _int(groups[1]), _int(groups[2])
    elif pattern_index == 3:
        day, month, year = _int(groups[0]), MONTHS[groups[1].lower()], _int(groups[2])
    elif pattern_index == 4:
        word = groups[0]
        if word[0].islower():
            return None  # a month named on its own is capitalised; "may" and "mar" are verbs
        month, year, day = MONTHS[word.lower()], _int(groups[1]), None
    else:
        year, month, day = _int(groups[0]), None, None
    if (month is not None and not 1 <= month <= 12) or (day is not None and not 1 <= day <= 31):
        return None
    return Date(year, month, day, match.group(), match.start(), match.end())


def _int(value: str | None) -> int | None:
    return int(value) if value else None


def find_quantities(text: str, skip: list[tuple[int, int]] | None = None) -> list[Quantity]:
    """Numbers in `text` with their Korean units or English scale, outside the `skip` spans (dates)."""
    skip = skip or []
    found: list[Quantity] = []
    position = 0
    while True:  # a chain of groups continues after a large unit, with one space at most: "2조 6천억"
        start_match = _NUMBER_START.search(text, position)
        if start_match is None:
            break
        start = start_match.start()
        quantity = _read_number(text, start)
        position = max(quantity.end if quantity else start + 1, start + 1)
        if quantity is None or any(start < end and s < quantity.end for s, end in skip):
            continue
        found.append(quantity)
    for match in _APOSTROPHE_YEAR.finditer(text):  # ’19 in "(’19~’21년)": a year, written short
        if not any(match.start() < end and s < match.end() for s, end in skip):
            found.append(Quantity(2000.0 + int(match.group(1)), 0.5, match.group(), match.start(), match.end()))
    return sorted(found, key=lambda q: q.start)


def _read_number(text: str, start: int) -> Quantity | None:
    """The number starting at `start`: a chain of Korean unit groups ("2조 6천억"), or one number with an optional
    English scale ("26.5 billion"). None when it is glued to letters (a name such as 5G)."""
    if start > 0 and text[start - 1] == "제":  # 제3조 is Article 3, not three trillion
        match = _PLAIN.match(text, start)
        assert match is not None
        return Quantity(float(match.group(1)), 0.5, match.group(), start, match.end())
    total, pending, unit, end, groups = 0.0, 0.0, 1.0, start, 0  # pending: the part below the next large unit
    while True:
        # a chain continues after a large unit, with one space at most: "2조 6천억" is one amount
        at = end + 1 if groups and text[end : end + 1] == " " else end
        match = _KOREAN_GROUP.match(text, at)
        if match is None:
            break
        whole, decimals, small, large = match.groups()
        step = 10.0 ** -len(decimals) if decimals else 1.0
        small_unit = KOREAN_SMALL_UNITS.get(small, 1.0)
        large_unit = KOREAN_LARGE_UNITS.get(large, 1.0)
        pending += float(whole.replace(",", "") + ("." + decimals if decimals else "")) * small_unit
        unit = step * small_unit * large_unit
        groups, end = groups + 1, match.end()
        if not large:
            break  # "3만 5천": a group without a large unit ends the chain
        total, pending = total + pending * large_unit, 0.0
    total += pending
    if groups == 1 and _DIGITS.fullmatch(text, start, end):
        scale = _ENGLISH_SCALE.match(text, end)
        if scale:
            factor = ENGLISH_SCALES[scale.group(1).lower()]
            total, unit, end = total * factor, unit * factor, scale.end()
        elif re.match(r"[A-Za-z]", text[end : end + 1]) and not _UNIT_WORDS.match(text, end):
            return None
    return Quantity(total, unit / 2, text[start:end], start, end)


def values_in(text: str) -> tuple[list[Quantity], list[Date]]:
    """The dates in `text` and the numbers outside them."""
    dates = find_dates(text)
    return find_quantities(text, [(d.start, d.end) for d in dates]), dates
