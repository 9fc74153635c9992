"""Sound keys that let an English word find its Korean transliteration: "alliance" ↔ 얼라이언스.

Korean news writes English loanwords and foreign names in Hangul (얼라이언스, 플랫폼, 로렌스 리버모어), so an
English question shares no keyword with the article that answers it, and a small multilingual embedding model
does not always bridge the gap (docs/architecture.md, trap 5). Both spellings keep most of the consonant
sounds, so each side is reduced to a coarse consonant skeleton that survives transliteration: vowels dropped
(English spelling and Korean epenthetic 으 disagree on them), voiced/unvoiced pairs merged (Korean ㄷ/ㅌ do not follow
English d/t reliably), r silent after a vowel (Korean follows non-rhotic English: smart → 스마트), a final
ㅅ read as t (로봇 = robot). "alliance" and 얼라이언스 both become LNS; "platform" and 플랫폼 PLTPM.

A skeleton is a weak clue: short ones collide with unrelated words. Two things keep the noise down: only
Hangul nouns that look borrowed get keys (at least one syllable that no Sino-Korean word uses: 스, 렌, 컴 …;
Sino-Korean nouns such as 감사 or 기업 are translations, not transliterations, and would only add collisions),
and keys shorter than MIN_KEY_LENGTH classes are dropped. Retrieval gives this side a low weight
(rag/search/retrieve.py).
"""

from __future__ import annotations

import re

from rag.text.hangul import decompose, is_syllable_word

MIN_KEY_LENGTH = 3  # two-class skeletons (Obama → PM) match too many unrelated words
MIN_ENGLISH_WORD = 4  # shorter English words are mostly function words or too ambiguous

# Hangul readings of the hanja (Sino-Korean syllables), from the `hanja` package's table (0.15.1): a noun
# made only of these is most likely Sino-Korean, one with any other syllable most likely a loanword.
SINO_KOREAN_SYLLABLES = frozenset(
    "가각간갈감갑갓강개객갯갱갹거걱건걸검겁것게격견결겸겹경계고곡곤골곱곳공과곽관괄광괘괴괵굉교구국군굴굿궁권궐궤귀규균귤극근"
    "글금급긍기긴길끗끽나낙난날남납낭내냑녀녁년녈념녑녕녘녜노녹논놀놈농놔놜뇌뇨누눈눌뉴뉵늑능늦니닉닐님닙다단달담답당대덕도독"
    "돈돌돗동두둑둔둘둣둥득등똥뜰라락란랄람랍랑래랭략량려력련렬렴렵령례로록론롱뢰료룡루류륙륜률륭륵를름릉리린림립마막만말맘망"
    "매맥맹먀며멱면멸명몌모목몰몸몽묘묠무묵문물미민밀박반발밤방배백뱀번벌범법벽변별병보복본볼봉부북분불붓붕비빈빙뿐사삭산살삼"
    "삽상새색생서석선설섬섭성세소속손솔솟송솨솰쇄쇠수숙순술숭쉬슬습승시식신실심십쌀쌍씨씻아악안알암압앙애액앳앵야약양어억언얼"
    "엄업엇엉에엔여역연열염엽엿영예오옥온올옹와왁완왈왕왜외욋요욕용우욱운울웅원월위유육윤율융은을음읍응의이익인일임입잇잉자작"
    "잔잘잠잡잣장재쟁저적전절점접정제조족존졸종좌죄주죽준줄줏중즉즐즘즙증지직진질짐집짓징차착찬찰참창채책처척천철첨첩청체초촉"
    "촌총촬쵀최추축춘출충췌취측츤층치칙친칠침칩칭카쾌타탁탄탈탐탑탕태택탱터토톤톨통퇴투퉁특틈파판팔팟패팽퍅편폄평폐포폭폿퐁표"
    "푸품풍피픽필핍하학한할함합항해핵행향허헌헐험혁현혈혐협형혜호혹혼홀홍화확환활황홰회획횡효후훈훌훙훤훨훼휘휭휴휵휼흉흑흔흘"
    "흠흡흥희히힐"
)

_INITIAL_CLASS = "KKNTTLMPPSSxSSSKTPH"  # ㄱㄲㄴㄷㄸㄹㅁㅂㅃㅅㅆㅇㅈㅉㅊㅋㅌㅍㅎ (x: silent ㅇ)
# final consonants (받침): ㅅ/ㅈ/ㅊ/ㅌ read as t, ㅇ as ng (G); clusters by their first consonant
_FINAL_CLASS = "xKKKNNNTLLLLLLLLMPPTTGTTKTPx"  # none ㄱㄲㄳㄴㄵㄶㄷㄹㄺㄻㄼㄽㄾㄿㅀㅁㅂㅄㅅㅆㅇㅈㅊㅋㅌㅍㅎ
_ENGLISH_DIGRAPHS = (
    ("tion", "SN"),
    ("sion", "SN"),
    ("sch", "S"),
    ("tch", "S"),
    ("ph", "P"),
    ("ck", "K"),
    ("ch", "S"),
    ("sh", "S"),
    ("th", "S"),
    ("gh", ""),
    ("qu", "KW"),
    ("ng", "G"),
    ("nk", "GK"),
    ("x", "KS"),
)
_ENGLISH_LETTER_CLASS = {
    **dict.fromkeys("bpfv", "P"),
    **dict.fromkeys("td", "T"),
    **dict.fromkeys("kq", "K"),
    **dict.fromkeys("sjz", "S"),
    "l": "L",
    "m": "M",
    "n": "N",
}
_VOWELS = frozenset("aeiouy")
_ENGLISH_WORD = re.compile(r"[A-Za-z]+")


def hangul_key(word: str) -> str:
    """Consonant skeleton of a Hangul word ("" when it holds anything but complete syllables)."""
    if not is_syllable_word(word):
        return ""
    classes: list[str] = []
    for syllable in word:
        initial, _, final = decompose(syllable)
        classes.append(_INITIAL_CLASS[initial] + _FINAL_CLASS[final])
    return _collapse("".join(classes).replace("x", ""))


def english_key(word: str) -> str:
    """Consonant skeleton of an English word as Korean would transliterate it ("" for non-letters)."""
    w = word.lower()
    if not _ENGLISH_WORD.fullmatch(w):
        return ""
    classes: list[str] = []
    i = 0
    while i < len(w):
        digraph = next(((src, dst) for src, dst in _ENGLISH_DIGRAPHS if w.startswith(src, i)), None)
        if digraph:
            classes.append(digraph[1])
            i += len(digraph[0])
            continue
        classes.append(_english_letter(w, i))
        i += 1
    return _collapse("".join(classes))


def _english_letter(w: str, i: int) -> str:
    letter = w[i]
    before = w[i - 1] if i > 0 else ""
    after = w[i + 1] if i + 1 < len(w) else ""
    if letter == "h":  # heard at a word start or between vowels (hotel → 호텔), silent after a consonant
        return "H" if (i == 0 or before in _VOWELS) and after in _VOWELS and after else ""
    if letter in _VOWELS or letter == "w":
        return ""
    if letter == "c":  # soft before e/i/y (city → 시티), hard otherwise (computer → 컴퓨터)
        return "S" if after and after in "eiy" else "K"
    if letter == "g":  # soft inside a word before e/i/y and at the start before e (george → 조지)
        return "S" if after and ((after in "eiy" and i > 0) or after == "e") else "K"
    if letter == "r":  # non-rhotic: silent after a vowel unless a vowel follows (smart → 스마트, more → 모어)
        silent = before in _VOWELS and before and (not after or after not in _VOWELS or w[i + 1 :] == "e")
        return "" if silent else "L"
    return _ENGLISH_LETTER_CLASS.get(letter, "")


def _collapse(classes: str) -> str:
    """Doubled classes are one sound (ll, 얼라 = ㄹㄹ)."""
    return re.sub(r"(.)\1+", r"\1", classes)


def looks_borrowed(word: str) -> bool:
    """True when a Hangul word has a syllable no Sino-Korean word uses (스, 렌, 컴 …): a likely loanword."""
    return any(syllable not in SINO_KOREAN_SYLLABLES for syllable in word)


def usable(key: str) -> bool:
    return len(key) >= MIN_KEY_LENGTH


def english_keys(text: str, stopwords: frozenset[str]) -> set[str]:
    """Keys of an English text's content words, and of each pair of adjacent content words written as one
    word: Korean often closes up a compound that English spaces ("smart city" → 스마트시티)."""
    words = list(_ENGLISH_WORD.finditer(text))
    keys: set[str] = set()
    for position, match in enumerate(words):
        word = match.group()
        if word.lower() in stopwords:
            continue
        if len(word) >= MIN_ENGLISH_WORD:
            keys.add(english_key(word))
            if len(word) > MIN_ENGLISH_WORD and word.endswith("s") and not word.endswith("ss"):
                keys.add(english_key(word[:-1]))  # Korean does not mark the plural: robots → 로봇
        following = words[position + 1] if position + 1 < len(words) else None
        if following and following.group().lower() not in stopwords and _joins(text[match.end() : following.start()]):
            keys.add(english_key(word + following.group()))
    return {key for key in keys if usable(key)}


def _joins(between: str) -> bool:
    """Two words form a compound only when nothing but spaces or a hyphen stands between them."""
    return between.strip(" -") == ""
