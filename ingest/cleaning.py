"""Pure text functions: Unicode/whitespace normalisation, removal of the page chrome a scraper leaves
around a news article, and date parsing (Markdown → text is ingest/markdown_text.py).

Everything here is a pure function of its input (no I/O, no settings), so the text an article is stored
with — the text citation offsets point into — depends only on the file's content.

How `clean_scraped_text` decides what is boilerplate, most to least aggressive:
1. Tail cut: the first *short* marker line ("Related articles", "관련기사", "저작권자 ©", "홍길동 기자
   hong@x.kr", ...) that sits after at least 20 % of the text and after 200 characters of content ends the
   article; everything from it on is dropped. A marker near the top (a navigation bar) never cuts.
2. Lines that are never article content, wherever they are: bylines ("홍길동 기자", "By Jane Doe"), lone
   e-mail addresses or URLs, copyright notices, the korea.kr republication notice.
3. A line repeated right after itself (photo captions are often saved twice), including a caption followed
   by the same caption plus a credit ("... (사진=...)"): the longer one is kept.
4. Outside the prose — before the first paragraph or after the last one — short bullet-menu items
   ("• embedded world"; typographic bullets only, never Markdown's "-" or the Korean "·"); after the last
   paragraph also short ALL-CAPS words and, in a Korean text, short Latin-only words ("FASTECH", "IIoT").
   Bullet lists *between* paragraphs are kept: they may be content.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import functools
import html
import re
import unicodedata

# --- normalisation -----------------------------------------------------------------------------------

_LINE_BREAKS = re.compile(r"\r\n|[\r\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029]")
_INVISIBLE_FORMAT = (
    "\u00ad\u180e\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"  # soft hyphen, zero-width, bidi
    "\u2060\u2061\u2062\u2063\u2064\u2066\u2067\u2068\u2069\ufeff"  # word joiner, invisible operators, BOM
)
_CONTROL_CHARS = [*range(0x00, 0x09), *range(0x0E, 0x20), 0x7F, *range(0x80, 0xA0)]  # \t \n stay
_DROP_CHARS: dict[int, None] = dict.fromkeys([*_CONTROL_CHARS, *map(ord, _INVISIBLE_FORMAT)])
_HORIZONTAL_SPACE_RUN = re.compile(r"[^\S\n]+")
_BLANK_LINE_RUN = re.compile(r"\n{3,}")


def normalize_text(text: str) -> str:
    """NFC, `\\n` newlines, no control or zero-width characters (tabs and newlines stay), one space
    between words, no spaces at line ends, at most one blank line in a row, stripped.

    Runs of spaces and other horizontal whitespace become one space (one tab if the run held a tab).
    Indentation is removed too: the stored text is prose, not layout.
    """
    text = unicodedata.normalize("NFC", text)
    text = _LINE_BREAKS.sub("\n", text).translate(_DROP_CHARS)
    text = _HORIZONTAL_SPACE_RUN.sub(_one_space, text)
    text = "\n".join(line.strip(" \t") for line in text.split("\n"))
    return _BLANK_LINE_RUN.sub("\n\n", text).strip()


def _one_space(match: re.Match[str]) -> str:
    return "\t" if "\t" in match.group() else " "


def normalize_inline(text: str) -> str:
    """Normalise a one-line field (a title, a source name): all whitespace, newlines too, becomes one space."""
    return " ".join(normalize_text(text).split())


_HTML_ENTITY = re.compile(r"&(?:#\d{1,7}|#[xX][0-9a-fA-F]{1,6}|[a-zA-Z][a-zA-Z0-9]{1,31});")


def unescape_entities(text: str) -> str:
    """Decode HTML entities such as `&#039;` or `&amp;` that dumps of web pages leave in their fields.

    Only complete entities (with the `;`) are decoded, so "R&D" or "&para without semicolon" stay as written.
    """
    return _HTML_ENTITY.sub(lambda m: html.unescape(m.group()), text)


# --- boilerplate patterns -----------------------------------------------------------------------------

_EMAIL = r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"
_URL = r"(?:https?://|www\.)\S+"
_KO_NAME = r"[가-힣]{2,4}"

_SECTION_MARKER = re.compile(
    r"^[\W_]*(?:"
    r"related\s+(?:articles?|news|stories|posts|content|reading|coverage)"
    r"|more\s+(?:stories|news|articles)(?:\s+from\b.{0,30})?"
    r"|read\s+(?:more|next|also)|recommended(?:\s+(?:articles?|stories|for\s+you|reading))?"
    r"|you\s+(?:may|might)\s+also\s+like|most\s+(?:read|popular|viewed|shared)"
    r"|(?:join|subscribe\s+to|sign\s+up\s+for)\s+our\s+newsletter"
    r"|share\s+this\s+(?:article|story)|leave\s+a\s+(?:comment|reply)|about\s+the\s+author"
    r"|관련\s*(?:기사|뉴스)|(?:이\s*)?기자의\s*(?:추가|다른|최신)\s*기사|추천\s*(?:기사|뉴스)"
    r"|(?:가장\s*)?많이\s*(?:본|읽은)\s*(?:기사|뉴스)|(?:실시간\s*)?인기\s*(?:기사|뉴스)"
    r"|이\s*기사를\s*공유합니다|댓글(?:\s*쓰기)?|뉴스레터\s*구독(?:하기)?"
    r")(?:\s*(?:더\s*보기|more))?[\W\d_]*$",
    re.IGNORECASE,
)
_LEGAL_NOTICE = re.compile(
    r"저작권자\s*[©ⓒ(]|ⓒ.{0,40}(?:무단|all\s+rights)|무단\s*(?:전재|복제|배포)|재배포\s*금지"
    r"|copyright\s*(?:©|ⓒ|\(c\)|\d{4})|all\s+rights\s+reserved|^[©ⓒ]\s*\d{4}",
    re.IGNORECASE,
)
# A line ending like a Korean declarative sentence is content ("... 무단 전재를 금지했다."), not a notice.
_KO_SENTENCE_END = re.compile(r"(?:다|요|죠)[.!?”\"')]*$")
# Starts with a literal (an optional quote, then 이): a leading `\s*` would rescan a long run of spaces from
# each of its positions. Between 자료는 and the ministry one optional space, then at most 80 characters.
_REPUBLICATION_NOTICE = re.compile(
    r"(?:[“\"][^\S\n]*)?이\s*자료는\s?[^“”\"\n]{1,80}?보도자료를\s*전재하여\s*제공함을\s*알려드립니다\.?[^\S\n]*[”\"]?"
)
_BYLINE_KO = re.compile(
    rf"^(?:[\[(【<][^\])】>]{{1,30}}[\])】>]\s*)?{_KO_NAME}(?:\s*[·,/]\s*{_KO_NAME}){{0,3}}\s*"
    rf"(?:선임|수석|객원|인턴|전문|취재|사진|영상)?\s*(?:기자|특파원|통신원|에디터|리포터)"
    rf"\s*[=:|]?\s*(?P<contact>{_EMAIL}|{_URL})?\s*$"
)
_BYLINE_EN = re.compile(rf"^By\s+[A-Z][\w.'’-]*(?:[ ,]+(?:and\s+)?[A-Z][\w.'’-]*){{0,5}}\s*(?P<contact>{_EMAIL})?$")
_CREDIT_LINE = re.compile(r"^\(?(?:Reporting|Writing|Editing|Additional\s+reporting)\s+by\s", re.IGNORECASE)
_CONTACT_LINE = re.compile(
    rf"^(?:(?:e-?mail|이메일|메일|contact|기사\s*제보|제보)\s*[:：]?\s*)?<?(?:{_EMAIL}|{_URL})>?$",
    re.IGNORECASE,
)
# Typographic bullets only: "-", "*", "·" and "□" start real lists in Markdown and Korean government text.
_BULLET_ITEM = re.compile(r"^[•◦‣∙▪▸►▶➤]\s*(?P<item>.+)$")
_SENTENCE_END = re.compile(r"(?:[.!?。…:;]|다)[”\"')\]]*$")
_LATIN_LETTER = re.compile(r"[A-Za-z]")

_TAIL_MIN_FRACTION = 0.2  # a marker must come after this share of the text to cut the tail
_TAIL_MIN_CONTENT = 200  # ... and after this many characters of non-blank text
_MARKER_MAX_LEN = 40
_NOTICE_MAX_LEN = 160
_BYLINE_MAX_LEN = 80
_MENU_ITEM_MAX_LEN = 30
_NAV_WORD_MAX_LEN = 30
_CAPTION_CREDIT_MAX_LEN = 50


def clean_scraped_text(text: str) -> str:
    """Remove the page chrome a scraper leaves in a saved news page; see the module docstring for the rules."""
    lines = normalize_text(_REPUBLICATION_NOTICE.sub("", text)).split("\n")
    hangul_text = _is_mostly_hangul(text)
    lines = _cut_tail(lines)
    lines = [line for line in lines if not _is_chrome_line(line)]
    lines = _drop_repeated_lines(lines)
    lines = _drop_menus_outside_prose(lines, hangul_text)
    return normalize_text("\n".join(lines))


def _is_section_marker(line: str) -> bool:
    return len(line) <= _MARKER_MAX_LEN and bool(_SECTION_MARKER.match(line))


def _is_legal_notice(line: str) -> bool:
    return len(line) <= _NOTICE_MAX_LEN and bool(_LEGAL_NOTICE.search(line)) and not _KO_SENTENCE_END.search(line)


def _byline_match(line: str) -> re.Match[str] | None:
    if len(line) > _BYLINE_MAX_LEN:
        return None
    return _BYLINE_KO.match(line) or _BYLINE_EN.match(line)


def _is_tail_marker(line: str) -> bool:
    """A short line after which a news page holds no more article text."""
    if _is_section_marker(line) or _is_legal_notice(line):
        return True
    byline = _byline_match(line)
    return bool(byline and byline.group("contact"))


def _cut_tail(lines: list[str]) -> list[str]:
    total = sum(len(line) + 1 for line in lines)
    offset = content = 0
    for index, line in enumerate(lines):
        if offset >= _TAIL_MIN_FRACTION * total and content >= _TAIL_MIN_CONTENT and _is_tail_marker(line):
            return lines[:index]
        offset += len(line) + 1
        content += len(line)
    return lines


def _is_chrome_line(line: str) -> bool:
    """Lines that are never article text, wherever they appear."""
    return bool(
        _byline_match(line)
        or _CONTACT_LINE.match(line)
        or _is_legal_notice(line)
        or (len(line) <= 200 and _CREDIT_LINE.match(line))
    )


def _drop_repeated_lines(lines: list[str]) -> list[str]:
    """Drop a line equal to the previous non-blank line, and a caption followed by itself plus a credit."""
    kept: list[str] = []
    previous: str | None = None  # the last non-blank line kept (blank lines left by dropped chrome can pile up)
    for line in lines:
        if line and previous is not None and _same_line(line, previous):
            continue
        if line and kept and kept[-1] and _is_caption_with_credit(kept[-1], line):
            kept[-1] = previous = line
            continue
        kept.append(line)
        previous = line or previous
    return kept


def _same_line(a: str, b: str) -> bool:
    return a.casefold() == b.casefold()


def _is_caption_with_credit(short: str, long: str) -> bool:
    if not long.startswith(short) or len(long) == len(short):
        return False
    rest = long[len(short) :].strip()
    return len(rest) <= _CAPTION_CREDIT_MAX_LEN and not rest[:1].isalnum()


def _drop_menus_outside_prose(lines: list[str], hangul_text: bool) -> list[str]:
    prose = [i for i, line in enumerate(lines) if _is_prose(line)]
    if not prose:
        return lines
    first, last = prose[0], prose[-1]
    head = [line for line in lines[:first] if not _is_menu_item(line)]
    tail = [line for line in lines[last + 1 :] if not (_is_menu_item(line) or _is_nav_word(line, hangul_text))]
    return head + lines[first : last + 1] + tail


def has_prose(text: str) -> bool:
    """Whether any line reads like running text (a sentence, or a long line) rather than menu words."""
    return any(_is_prose(line.strip()) for line in text.split("\n"))


def _is_prose(line: str) -> bool:
    return len(line) >= 60 or (len(line) >= 15 and bool(_SENTENCE_END.search(line)))


def _is_menu_item(line: str) -> bool:
    match = _BULLET_ITEM.match(line)
    if not match:
        return False
    item = match.group("item")
    return len(item) <= _MENU_ITEM_MAX_LEN and not _SENTENCE_END.search(item) and ":" not in item


def _is_nav_word(line: str, hangul_text: bool) -> bool:
    if not line or len(line) > _NAV_WORD_MAX_LEN or _SENTENCE_END.search(line):
        return False
    letters = [ch for ch in line if ch.isalpha()]
    if len(letters) >= 2 and all(_LATIN_LETTER.match(ch) and ch.isupper() for ch in letters):
        return True
    return hangul_text and bool(letters) and all(_LATIN_LETTER.match(ch) for ch in letters)


def _is_mostly_hangul(text: str) -> bool:
    letters = [ch for ch in text if ch.isalpha()]
    hangul = sum(1 for ch in letters if "가" <= ch <= "힣")
    return bool(letters) and hangul >= 0.3 * len(letters)


def strip_republication_notice(text: str) -> str:
    """Remove the korea.kr notice "이 자료는 ○○부의 보도자료를 전재하여 제공함을 알려드립니다."."""
    return normalize_text(_REPUBLICATION_NOTICE.sub("", text))


# --- dates ------------------------------------------------------------------------------------------------

_MONTHS = {
    name: number
    for number, names in enumerate(
        [
            ("jan", "january"),
            ("feb", "february"),
            ("mar", "march"),
            ("apr", "april"),
            ("may",),
            ("jun", "june"),
            ("jul", "july"),
            ("aug", "august"),
            ("sep", "sept", "september"),
            ("oct", "october"),
            ("nov", "november"),
            ("dec", "december"),
        ],
        start=1,
    )
    for name in names
}
_MONTH_NAME = r"(?P<month_name>" + "|".join(sorted(_MONTHS, key=len, reverse=True)) + r")\.?"
_DATE_PATTERNS = [
    re.compile(r"(?<!\d)(?P<year>\d{4})\s*년\s*(?P<month>\d{1,2})\s*월\s*(?P<day>\d{1,2})\s*일"),
    re.compile(r"(?<!\d)(?P<year>\d{4})\s*[-./]\s*(?P<month>\d{1,2})\s*[-./]\s*(?P<day>\d{1,2})(?!\d)\.?"),
    re.compile(rf"\b{_MONTH_NAME}\s+(?P<day>\d{{1,2}})(?:st|nd|rd|th)?,?\s+(?P<year>\d{{4}})\b", re.I),
    re.compile(rf"\b(?P<day>\d{{1,2}})(?:st|nd|rd|th)?\s+{_MONTH_NAME},?\s+(?P<year>\d{{4}})\b", re.I),
    re.compile(r"^(?P<year>\d{4})(?P<month>\d{2})(?P<day>\d{2})(?:[T ]?\d{4,6})?$"),
]
_MIN_YEAR, _MAX_YEAR = 1800, 2200
# What may surround a date on a line that is only a date: labels, weekdays, times, zones.
_DATE_LINE_NOISE = re.compile(
    r"기사\s*입력|최종\s*수정|입력|등록|수정|작성|발행|게시|송고|승인|업데이트|일시|날짜|보도\s*일자?"
    r"|[월화수목금토일]요일|\([월화수목금토일]\)|오전|오후"
    r"|\b(?:published|posted|updated|last|modified|date|on|at|am|pm|kst|gmt|utc"
    r"|monday|tuesday|wednesday|thursday|friday|saturday|sunday|mon|tue|tues|wed|thu|thurs|fri|sat|sun)\b\.?"
    r"|T?\d{1,2}:\d{2}(?::\d{2}(?:\.\d+)?)?Z?|[+-]\d{2}:?\d{2}",
    re.IGNORECASE,
)


def find_date(text: str) -> tuple[dt.date, tuple[int, int]] | None:
    """The first date written in `text` in a known format, with its span; the date as written (no zone shift)."""
    for pattern in _DATE_PATTERNS:
        for match in pattern.finditer(text):
            date = _date_from_match(match)
            if date:
                return date, match.span()
    return None


def _date_from_match(match: re.Match[str]) -> dt.date | None:
    parts = match.groupdict()
    month = _MONTHS[parts["month_name"].lower()] if parts.get("month_name") else int(parts["month"])
    year = int(parts["year"])
    if not _MIN_YEAR <= year <= _MAX_YEAR:
        return None
    try:
        return dt.date(year, month, int(parts["day"]))
    except ValueError:
        return None


def parse_date(value: str | None) -> dt.date | None:
    """Parse a date field: "2024-04-20", "2024-04-20T09:00:00+09:00", "2024년 4월 20일", "2024. 4. 20.",
    "20240420", "April 20, 2024", RFC 2822... Returns None for anything it cannot read: a bad date never
    fails a record. A datetime keeps the calendar day it was written with, whatever its zone.
    A value longer than any date is written is not one (and is neither parsed nor cached).
    """
    if not value or not value.strip() or len(value) > _MAX_DATE_FIELD_CHARS:
        return None
    return _parse_date_field(value)


_MAX_DATE_FIELD_CHARS = 200


@functools.lru_cache(maxsize=4096)
def _parse_date_field(value: str) -> dt.date | None:
    found = find_date(value.strip())
    if found:
        return found[0]
    return _parse_rfc2822(value) or _parse_with_dateparser(value)


def _parse_rfc2822(value: str) -> dt.date | None:
    try:
        return email.utils.parsedate_to_datetime(value).date()
    except (TypeError, ValueError, IndexError):
        return None


def _parse_with_dateparser(value: str) -> dt.date | None:
    """Last resort for other absolute formats; relative ones ("3 days ago") are refused so ids and dates
    do not depend on the day of the run."""
    try:
        import dateparser
    except ImportError:  # optional: the regexes above cover the formats we know of
        return None
    settings = {
        "STRICT_PARSING": True,
        "REQUIRE_PARTS": ["day", "month", "year"],
        "PARSERS": ["custom-formats", "absolute-time"],
    }
    try:
        parsed = dateparser.parse(value, languages=["ko", "en"], settings=settings)
    except Exception:  # dateparser raises assorted errors on odd input; an unreadable date is just None
        return None
    if parsed is None or not _MIN_YEAR <= parsed.year <= _MAX_YEAR:
        return None
    return parsed.date()


def date_only_line(line: str) -> dt.date | None:
    """The date of a line that holds nothing but a date (with an optional label, weekday or time)."""
    if len(line) > 60:
        return None
    found = find_date(line)
    if not found:
        return None
    date, (start, end) = found
    rest = _DATE_LINE_NOISE.sub(" ", line[:start] + " " + line[end:])
    return None if re.search(r"\w", rest) else date


def split_leading_date(text: str, max_lines: int = 3) -> tuple[dt.date | None, str]:
    """Find a date-only line among the first `max_lines` non-blank lines; return its date and the text
    without that line (it is metadata, kept as `Article.date`)."""
    lines = text.split("\n")
    seen = 0
    for index, line in enumerate(lines):
        if not line.strip():
            continue
        date = date_only_line(line.strip())
        if date:
            return date, normalize_text("\n".join(lines[:index] + lines[index + 1 :]))
        seen += 1
        if seen >= max_lines:
            break
    return None, text


def first_meaningful_line(text: str, max_len: int = 200) -> str | None:
    """The first non-blank line, as a title, if it is short enough to be one and holds a letter."""
    for line in text.split("\n"):
        line = line.strip()
        if not line:
            continue
        if len(line) <= max_len and any(ch.isalpha() for ch in line):
            return normalize_inline(line)
        return None
    return None
