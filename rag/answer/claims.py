"""The claim check: a generated sentence may state only what the evidence it cites says.

Citation validation (rag/answer/citations.py) makes every `[n]` point at evidence that was given; it cannot
tell whether the sentence around the marker says what that evidence says ("launched in Seoul" citing the
sentence that says Busan). This module checks the parts of a sentence that a small model gets wrong and a
reader takes as fact:

- numbers and amounts, read as values (rag/text/quantities.py): "26.5 billion" is supported by "265억", "27억" by
  "26.8억" (rounding to the stated precision), "30억" by nothing that says 26.5억;
- dates: "February 13" by "2월 13일";
- Latin-script names (capitalised words, acronyms): found in the evidence as written (any case), or as the
  Hangul word they romanise, compared by sound keys (rag/text/transliteration.py: "E-Cube Lab" and "IcubeLab"
  both key KPLP, as 이큐브랩 does; "Busan" PSN as 부산), a romanised Korean person's name (surname table and the
  given name's key), or through the English→Korean lexicon ("Committee" 위원회);
- Hangul proper nouns (kiwi's NNP): found in the evidence text;
- links and domains: found in the evidence.

What is not a claim: function words, common nouns and verbs, and anything the question itself says (its words
are the topic). A sentence whose claims are all found is `supported`; one with a missing claim is `repaired`
(replaced by the quote of the evidence it cites, with its marker) or, when there is nothing left to quote or it
states a link its evidence lacks, `dropped`. `review_answer` applies that to every sentence of a reply, in one
place, and builds the shown answer with renumbered citations.
"""

from __future__ import annotations

import itertools
import re
from collections import OrderedDict
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal, Protocol

import snowballstemmer

from rag.text.analyzer import TermAnalyzer, eojeols
from rag.text.hangul import contains_hangul
from rag.text.quantities import MONTHS, Date, Quantity, values_in
from rag.text.stopwords import ENGLISH_STOPWORDS
from rag.text.transliteration import english_key, hangul_key
from rag.types import Citation, SentenceCheck

if TYPE_CHECKING:
    from rag.text.lexicon import Lexicon

ClaimKind = Literal["number", "date", "name", "link"]

MIN_SOUND_KEY = 3  # a shorter skeleton (Seoul → SL) matches only a Hangul proper noun, never a common one (시설)
MIN_TRANSLATION = 2  # one-syllable translations (성, 부) are found in almost any Korean sentence
MAX_REPAIR_QUOTES = 2  # a repaired sentence becomes at most this many quoted evidence sentences

# capitalised for grammar, not because they name something
_NOT_NAMES = frozenset(
    {
        "according",
        "additionally",
        "also",
        "based",
        "both",
        "currently",
        "finally",
        "first",
        "furthermore",
        "however",
        "meanwhile",
        "moreover",
        "no",
        "overall",
        "second",
        "third",
        "yes",
        # titles and company forms around a name: the name is the claim ("CEO Kim Young-sub", "Naver Corp")
        "ceo",
        "chair",
        "chairman",
        "chairwoman",
        "chief",
        "co",
        "corp",
        "corporation",
        "deputy",
        "director",
        "dr",
        "governor",
        "group",
        "inc",
        "llc",
        "ltd",
        "mayor",
        "minister",
        "mr",
        "mrs",
        "ms",
        "president",
        "prof",
        "vice",
        # units and currencies stated with a number, checked as part of it
        "won",
        "krw",
        "usd",
        "dollars",
        "percent",
        # the country this news is from: world knowledge an English answer adds ("Busan, South Korea"), not a claim
        "korea",
        "korean",
        "south",
        # weekdays: the date check reads the date itself
        "monday",
        "tuesday",
        "wednesday",
        "thursday",
        "friday",
        "saturday",
        "sunday",
    }
)
# Romanisations of common Korean surnames. A surname is one syllable, often with a silent or soft initial that a
# sound key cannot carry (이 → Lee, 오 → Oh), so a romanised person's name is matched as surname + given name:
# "Song Byung-sun" is 송 + the key of 병선.
_SURNAME_ROMANISATIONS = {
    "안": "ahn an",
    "배": "bae",
    "백": "baek paik",
    "방": "bang",
    "변": "byun byeon",
    "차": "cha",
    "채": "chae",
    "장": "chang jang",
    "천": "cheon chun",
    "조": "cho jo",
    "최": "choe choi",
    "전": "chun jeon jun",
    "정": "chung jeong jung",
    "엄": "eom um",
    "고": "go ko",
    "하": "ha",
    "함": "ham",
    "한": "han",
    "허": "heo hur",
    "홍": "hong",
    "황": "hwang",
    "현": "hyun hyeon",
    "임": "im lim",
    "진": "jin",
    "주": "joo ju",
    "강": "kang",
    "김": "kim",
    "공": "kong",
    "곽": "kwak",
    "권": "kwon",
    "이": "lee rhee yi",
    "리": "lee",
    "림": "lim",
    "류": "lyu ryu",
    "민": "min",
    "문": "moon mun",
    "나": "na",
    "남": "nam",
    "노": "noh roh",
    "오": "oh",
    "박": "pak park",
    "서": "seo suh",
    "성": "seong sung",
    "신": "shin sin",
    "손": "sohn son",
    "송": "song",
    "우": "woo",
    "양": "yang",
    "여": "yeo",
    "염": "yeom",
    "유": "yoo yu",
    "윤": "yoon yun",
}
KOREAN_SURNAMES: dict[str, str] = {
    roman: "".join(h for h, romans in _SURNAME_ROMANISATIONS.items() if roman in romans.split())
    for roman in {r for romans in _SURNAME_ROMANISATIONS.values() for r in romans.split()}
}  # romanisation → its surname syllables (lee → 이리)
_LATIN_TOKEN = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9&'’.\-]*[A-Za-z0-9])?")
# a web address, an e-mail address or a bare domain ("evil.example"): ASCII labels and a letter-only last label
_LINK = re.compile(
    r"(?:https?://|www\.)[^\s<>\"')\]]+|[\w.+-]+@[a-z0-9-]+(?:\.[a-z0-9-]+)+|\b(?:[a-z0-9-]+\.)+[a-z]{2,}\b",
    re.IGNORECASE,
)
_SPACES = re.compile(r"\s+")
_PROPER_NOUN = "NNP"


@dataclass(frozen=True)
class Claim:
    kind: ClaimKind
    text: str


@dataclass
class Facts:
    """What one text states, read once: its numbers, dates, the sound keys of its words."""

    lower: str
    compact: str  # lower-cased, without spaces: Korean spacing varies
    quantities: list[Quantity]
    dates: list[Date]
    sound_keys: set[str] = field(default_factory=set)  # of its Hangul nouns and stems, and of its Latin words
    hangul_words: set[str] = field(default_factory=set)  # its Hangul nouns and word stems
    proper_keys: set[str] = field(default_factory=set)  # of its Hangul proper nouns, however short

    def numbers(self) -> list[float]:
        """Every value it states, the days and years of its dates included ("13" is in "2월 13일")."""
        values = [q.value for q in self.quantities]
        values += [float(part) for d in self.dates for part in (d.day, d.year) if part is not None]
        return values

    def years(self) -> set[int]:
        stated = {d.year for d in self.dates if d.year is not None}
        return stated | {int(v) for v in self.numbers() if v.is_integer() and 1800 <= v <= 2199}

    @staticmethod
    def merge(parts: Sequence[Facts]) -> Facts:
        merged = Facts(
            lower="\n".join(p.lower for p in parts),
            compact="\n".join(p.compact for p in parts),
            quantities=[q for p in parts for q in p.quantities],
            dates=[d for p in parts for d in p.dates],
        )
        for part in parts:
            merged.sound_keys |= part.sound_keys
            merged.hangul_words |= part.hangul_words
            merged.proper_keys |= part.proper_keys
        return merged


class ClaimChecker:
    """Finds a sentence's claims and the ones its evidence does not hold. Evidence facts are cached per text."""

    CACHE_SIZE = 5_000

    def __init__(self, analyzer: TermAnalyzer, lexicon: Lexicon | None = None) -> None:
        self.analyzer, self.lexicon = analyzer, lexicon
        self._stem = snowballstemmer.stemmer("english").stemWord
        self._facts: OrderedDict[str, Facts] = OrderedDict()

    # ---- what a sentence claims ----------------------------------------------------------------------

    def claims(self, sentence: str, question: str = "") -> list[Claim]:
        """The checkable claims of `sentence`, minus what `question` itself states."""
        return [claim for claim, _ in self._claims_with_values(sentence, question)]

    def unsupported(self, sentence: str, evidence: Sequence[str], question: str = "") -> list[Claim]:
        """The claims of `sentence` that `evidence` (the texts it cites) does not hold."""
        facts = Facts.merge([self.facts(text) for text in evidence])
        return [claim for claim, value in self._claims_with_values(sentence, question) if not _holds(facts, value)]

    def _claims_with_values(self, sentence: str, question: str) -> list[tuple[Claim, _Value]]:
        asked = self.facts(question) if question else None
        found: list[tuple[Claim, _Value]] = []
        for link in _links(sentence):
            found.append((Claim("link", link), _Link(link)))
        without_links = _LINK.sub(" ", sentence)
        quantities, dates = values_in(without_links)
        for date in dates:
            if asked is None or not _holds(asked, date):
                found.append((Claim("date", date.text), date))
        for quantity in quantities:
            if asked is None or not _holds(asked, quantity):
                found.append((Claim("number", quantity.text), quantity))
        for phrase in self._latin_names(without_links):
            if asked is None or not _holds(asked, _Name(phrase, self)):
                found.append((Claim("name", " ".join(phrase)), _Name(phrase, self)))
        for noun in self._hangul_proper_nouns(without_links):
            value = _HangulName(noun)
            if asked is None or not _holds(asked, value):
                found.append((Claim("name", noun), value))
        return found

    def _latin_names(self, sentence: str) -> list[tuple[str, ...]]:
        """Runs of name-like Latin tokens (a capital letter or a digit in them), split where anything but a space
        or a hyphen stands between two tokens: "LG CNS", "E-Cube Lab", "Busan"."""
        phrases: list[list[str]] = []
        previous_end = -1
        for match in _LATIN_TOKEN.finditer(sentence):
            token = match.group().strip(".")
            if not _name_like(token):
                previous_end = -1
                continue
            if previous_end >= 0 and sentence[previous_end : match.start()].strip(" -") == "":
                phrases[-1].append(token)
            else:
                phrases.append([token])
            previous_end = match.end()
        first_letter = next((i for i, ch in enumerate(sentence) if ch.isalnum()), 0)
        opening = phrases[0][0] if phrases and len(phrases[0]) == 1 else ""
        if opening and sentence.startswith(opening, first_letter) and self._capitalised_by_grammar(opening):
            phrases.pop(0)
        return [tuple(phrase) for phrase in phrases]

    def _capitalised_by_grammar(self, word: str) -> bool:
        """A sentence's first word is capitalised anyway ("Residents will…"): it names something only if it is not
        an inflected word (its stem differs) or a dictionary word."""
        lower = word.lower()
        if not word[1:].islower():
            return False  # LG, IcubeLab: capitals inside a word are a name's
        return self._stem(lower) != lower or bool(self.lexicon and self.lexicon.translate(lower))

    def _hangul_proper_nouns(self, sentence: str) -> list[str]:
        """kiwi's proper nouns, adjacent ones joined (김 + 영섭 → 김영섭)."""
        if not contains_hangul(sentence):
            return []
        nouns: list[str] = []
        run_start, run_end = -1, -1
        for token in self.analyzer.tokens(sentence):
            if token.tag == _PROPER_NOUN and contains_hangul(token.form):
                if token.start == run_end:
                    run_end = token.end
                else:
                    if run_start >= 0:
                        nouns.append(sentence[run_start:run_end])
                    run_start, run_end = token.start, token.end
        if run_start >= 0:
            nouns.append(sentence[run_start:run_end])
        return nouns

    # ---- what a text states --------------------------------------------------------------------------

    def facts(self, text: str) -> Facts:
        cached = self._facts.get(text)
        if cached is not None:
            self._facts.move_to_end(text)
            return cached
        lower = _SPACES.sub(" ", text.lower())
        quantities, dates = values_in(text)
        facts = Facts(lower=lower, compact=lower.replace(" ", ""), quantities=quantities, dates=dates)
        self._add_sound_keys(text, facts)
        self._facts[text] = facts
        while len(self._facts) > self.CACHE_SIZE:
            self._facts.popitem(last=False)
        return facts

    def _add_sound_keys(self, text: str, facts: Facts) -> None:
        """Keys of the Hangul nouns and word stems (and of adjacent stems written apart: 로렌스 리버모어), and of
        the Latin words and word pairs, so a name in either script finds its romanisation in the other."""
        words = [w.replace("-", "") for w in re.findall(r"[A-Za-z][A-Za-z\-]*", text)]
        for i, word in enumerate(words):
            facts.sound_keys.add(english_key(word))
            if i + 1 < len(words):
                facts.sound_keys.add(english_key(word + words[i + 1]))
        if not contains_hangul(text):
            return
        stems: list[str] = []
        for eojeol in eojeols(self.analyzer.tokens(text)):
            nouns = [t for t in eojeol if t.tag in ("NNG", "NNP")]
            for noun in nouns:
                facts.hangul_words.add(noun.form)
                key = hangul_key(noun.form)
                facts.sound_keys.add(key)
                if noun.tag == _PROPER_NOUN:
                    facts.proper_keys.add(key)
            stem_end = next((i for i, t in enumerate(eojeol) if t.tag.startswith(("J", "E", "XS", "VCP", "S"))), None)
            stem = (
                text[eojeol[0].start : eojeol[stem_end - 1].end] if stem_end else text[eojeol[0].start : eojeol[-1].end]
            )
            stems.append(stem)
            facts.hangul_words.add(stem)
            facts.sound_keys.add(hangul_key(stem))
        for first, second in itertools.pairwise(stems):
            facts.sound_keys.add(hangul_key(first + second))
        facts.sound_keys.discard("")


# ---- claim values and whether a text holds them ------------------------------------------------------


@dataclass(frozen=True)
class _Link:
    text: str


@dataclass(frozen=True)
class _HangulName:
    text: str


@dataclass(frozen=True)
class _Name:
    tokens: tuple[str, ...]
    checker: ClaimChecker


_Value = Quantity | Date | _Link | _HangulName | _Name


def _holds(facts: Facts, value: _Value) -> bool:
    if isinstance(value, Quantity):
        return any(value.supported_by(number) for number in facts.numbers())
    if isinstance(value, Date):
        return _date_holds(facts, value)
    if isinstance(value, _Link):
        return _host(value.text) in facts.lower
    if isinstance(value, _HangulName):
        compact = value.text.replace(" ", "").lower()
        return compact in facts.compact or (
            len(hangul_key(compact)) >= MIN_SOUND_KEY and (hangul_key(compact) in facts.sound_keys)
        )
    return _name_holds(facts, value.tokens, value.checker)


def _date_holds(facts: Facts, date: Date) -> bool:
    """Month and day as stated by one of the evidence's dates; the year by that date or, when it names none,
    anywhere in the evidence ("7월 3일" in a sentence whose year is stated earlier in it)."""
    if date.month is None and date.day is None:
        return date.year in facts.years()
    for stated in facts.dates:
        if date.month is not None and stated.month != date.month:
            continue
        if date.day is not None and stated.day != date.day:
            continue
        if date.year is None or stated.year == date.year or (stated.year is None and date.year in facts.years()):
            return True
    return False


def _name_holds(facts: Facts, tokens: tuple[str, ...], checker: ClaimChecker) -> bool:
    """The whole name as written, or every part of it (longest parts first) by writing, sound or translation."""
    phrase = " ".join(tokens).lower()
    if phrase in facts.lower or phrase.replace(" ", "") in facts.compact:
        return True
    start = 0
    while start < len(tokens):
        for end in range(len(tokens), start, -1):
            if _part_holds(facts, tokens[start:end], checker):
                start = end
                break
        else:
            return False
    return True


def _part_holds(facts: Facts, part: tuple[str, ...], checker: ClaimChecker) -> bool:
    text = " ".join(part).lower()
    if re.search(r"(?<![a-z0-9])" + re.escape(text) + r"(?![a-z0-9])", facts.lower):
        return True
    key = english_key("".join(ch for ch in text if ch.isascii() and ch.isalpha()))
    if (len(key) >= MIN_SOUND_KEY and key in facts.sound_keys) or (len(key) >= 2 and key in facts.proper_keys):
        return True
    if len(part) > 1:
        return _person_holds(facts, part)
    translations = []
    if checker.lexicon is not None:
        translations = [korean for t in checker.lexicon.translate(part[0]) for korean in t.korean]
    return any(len(korean) >= MIN_TRANSLATION and korean in facts.compact for korean in translations)


def _person_holds(facts: Facts, part: tuple[str, ...]) -> bool:
    """A romanised Korean person's name, surname first or last ("Song Byung-sun", "Byung-sun Song"): a Hangul word
    of the evidence that starts with that surname and whose rest has the given name's sound key."""
    for surname, given in ((part[0], part[1:]), (part[-1], part[:-1])):
        syllables = KOREAN_SURNAMES.get(surname.lower(), "")
        key = english_key("".join(ch for ch in "".join(given) if ch.isascii() and ch.isalpha()))
        if syllables and len(key) >= 2:
            for word in facts.hangul_words:
                if 2 <= len(word) <= 4 and word[0] in syllables and hangul_key(word[1:]) == key:
                    return True
    return False


def _links(sentence: str) -> list[str]:
    return [match.group().rstrip(".,;:") for match in _LINK.finditer(sentence)]


def _host(link: str) -> str:
    """ "https://www.example.com/a" → "example.com": the evidence may write the address another way."""
    host = re.sub(r"^(?:https?://)?(?:www\.)?", "", link.lower())
    return host.split("/", 1)[0]


def _name_like(token: str) -> bool:
    if not any(ch.isalpha() for ch in token) or token.islower():
        return False
    lower = token.lower()
    return not (lower in ENGLISH_STOPWORDS or lower in _NOT_NAMES or _is_month(lower))


def _is_month(word: str) -> bool:
    return word.rstrip(".") in MONTHS


# ---- a whole reply ---------------------------------------------------------------------------------------


class Quotable(Protocol):
    """Evidence as the review needs it: its text, its article, and its citation under a number."""

    @property
    def text(self) -> str: ...

    @property
    def article_id(self) -> str: ...

    def citation(self, n: int) -> Citation: ...


@dataclass(frozen=True)
class DraftSentence:
    """A sentence of the model's reply, markers removed, with the evidence numbers (1-based) tied to it; none
    when it cited nothing and repeats no evidence."""

    text: str
    cited: tuple[int, ...]


@dataclass
class ReviewedAnswer:
    text: str  # empty when every sentence was dropped
    citations: list[Citation]
    checks: list[SentenceCheck]


@dataclass
class _Shown:
    evidence: tuple[int, ...]
    sentence: str | None  # the model's sentence; None: the evidence is quoted instead


def review_answer(
    checker: ClaimChecker,
    question: str,
    drafts: Sequence[DraftSentence],
    evidence: Sequence[Quotable],
    *,
    must_cite: Sequence[int] = (),
    lead_in: str = "",
) -> ReviewedAnswer:
    """Check every drafted sentence against the evidence it cites and build the answer that is shown.

    `must_cite`: evidence numbers the answer has to cite (the sides of a disagreement); those it does not are
    quoted at the end after `lead_in`."""
    shown: list[_Shown] = []
    verdicts: list[tuple[DraftSentence, str, list[Claim], int | None]] = []
    cited_so_far: set[int] = set()
    for draft in drafts:
        verdict, missing, part = _review_one(checker, question, draft, evidence, cited_so_far)
        if part is not None:
            shown.append(part)
            cited_so_far.update(part.evidence)
        verdicts.append((draft, verdict, missing, len(shown) - 1 if part is not None else None))
    cited = {n for part in shown for n in part.evidence}
    tail = [n for n in dict.fromkeys(must_cite) if n not in cited]
    if shown and tail:
        shown.append(_Shown(tuple(tail), None))
    numbering: dict[int, int] = {}
    for part in shown:
        for n in part.evidence:
            numbering.setdefault(n, len(numbering) + 1)
    pieces = [_render(part, evidence, numbering) for part in shown]
    if shown and tail and lead_in:
        pieces.insert(len(pieces) - 1, lead_in)
    checks = [
        SentenceCheck(
            sentence=draft.text,
            verdict=verdict,
            unsupported=[claim.text for claim in missing],
            citations=[numbering[n] for n in shown[index].evidence] if index is not None else [],
        )
        for draft, verdict, missing, index in verdicts
    ]
    citations = [evidence[n - 1].citation(new) for n, new in sorted(numbering.items(), key=lambda kv: kv[1])]
    return ReviewedAnswer(" ".join(pieces), citations, checks)


def _review_one(
    checker: ClaimChecker, question: str, draft: DraftSentence, evidence: Sequence[Quotable], cited_so_far: set[int]
) -> tuple[str, list[Claim], _Shown | None]:
    if not draft.cited:
        return "dropped", [], None
    missing = checker.unsupported(draft.text, [evidence[n - 1].text for n in draft.cited], question)
    if not missing:
        return "supported", [], _Shown(draft.cited, draft.text)
    widened = _cite_neighbours(checker, question, draft, evidence)
    if widened is not None:
        return "supported", [], _Shown(widened, draft.text)
    if any(claim.kind == "link" for claim in missing):
        return "dropped", missing, None  # an address its evidence lacks is never shown, not even repaired
    quotes = tuple(n for n in draft.cited if n not in cited_so_far)[:MAX_REPAIR_QUOTES]
    if not quotes:
        return "dropped", missing, None  # the answer already shows what its evidence says, with its marker
    return "repaired", missing, _Shown(quotes, None)


def _cite_neighbours(
    checker: ClaimChecker, question: str, draft: DraftSentence, evidence: Sequence[Quotable]
) -> tuple[int, ...] | None:
    """The cited evidence plus the other given sentences of the same articles, when together they hold every
    claim: the model often cites the sentence next to the one that says it. Other articles are not searched,
    where a matching word would more likely be a coincidence than support."""
    articles = {evidence[n - 1].article_id for n in draft.cited}
    neighbours = [
        n for n in range(1, len(evidence) + 1) if n not in draft.cited and evidence[n - 1].article_id in articles
    ]
    if not neighbours:
        return None
    added: list[int] = []
    for claim_text in checker.unsupported(draft.text, [evidence[n - 1].text for n in draft.cited], question):
        helper = next(
            (n for n in neighbours if not checker.unsupported(claim_text.text, [evidence[n - 1].text], question)),
            None,
        )
        if helper is None:
            return None
        added.append(helper)
    widened = (*draft.cited, *dict.fromkeys(added))
    if checker.unsupported(draft.text, [evidence[n - 1].text for n in widened], question):
        return None
    return widened


def _render(part: _Shown, evidence: Sequence[Quotable], numbering: dict[int, int]) -> str:
    if part.sentence is None:
        return " ".join(f"{evidence[n - 1].text.strip()} [{numbering[n]}]" for n in part.evidence)
    markers = "".join(f"[{numbering[n]}]" for n in part.evidence)
    return attach_markers(part.sentence, markers)


def attach_markers(sentence: str, markers: str) -> str:
    """Put markers before the final punctuation: "… IcubeLab [1]." reads better than "… IcubeLab. [1]"."""
    if sentence and sentence[-1] in ".!?。":
        return f"{sentence[:-1].rstrip()} {markers}{sentence[-1]}"
    return f"{sentence} {markers}"
