"""The English→Korean lexicon: how it is read and used (rag/text/lexicon.py) and how it is built from a
JMdict/KANJIDIC2 database (rag/provision/lexicon_build.py), on a miniature database with the real schema's tables."""

from __future__ import annotations

import hashlib
import io
import lzma
import sqlite3
import tarfile
from pathlib import Path

import pytest

from rag.errors import ModelProvisioningError
from rag.provision import lexicon_build
from rag.search.sparse import SparseEncoder, term_id
from rag.text.lexicon import LEXICON_VERSION, Lexicon, NoLexicon, load_lexicon
from rag.text.stopwords import ENGLISH_STOPWORDS

ROWS = """\
audit\t감사\t2
audit\t청강\t2
audit\t시청\t0
chair\t의장\t2
allianc\t연합\t2
allianc\t동맹\t2
interest rate\t금리\t2
rate\t비율\t2
interest\t관심\t2
"""


@pytest.fixture
def lexicon(tmp_path: Path) -> Lexicon:
    path = tmp_path / "lexicon.tsv"
    path.write_text(ROWS + "broken line without tabs\n", encoding="utf-8")
    return Lexicon.load(path, ENGLISH_STOPWORDS)


def _translated(lexicon: Lexicon, text: str) -> list[tuple[str, tuple[str, ...]]]:
    return [(t.english, t.korean) for t in lexicon.translate(text)]


def test_a_word_keeps_only_its_commonest_tier_of_translations(lexicon: Lexicon) -> None:
    assert _translated(lexicon, "Who audits the alliance?") == [
        ("audits", ("감사", "청강")),  # 시청 (rank 0) is left out while rank-2 senses exist
        ("alliance", ("연합", "동맹")),
    ]


def test_two_words_the_dictionary_has_as_one_are_translated_together(lexicon: Lexicon) -> None:
    assert _translated(lexicon, "Did interest rates rise?") == [("interest rates", ("금리",))]
    assert _translated(lexicon, "the interest of the rate") == [("interest", ("관심",)), ("rate", ("비율",))]


def test_a_hyphenated_word_is_translated_part_by_part_with_productive_prefixes(lexicon: Lexicon) -> None:
    assert _translated(lexicon, "Who co-chairs it?") == [("co", ("공동",)), ("chairs", ("의장",))]
    assert _translated(lexicon, "the chair's office") == [("chair's", ("의장",))]


def test_a_missing_lexicon_translates_nothing_and_says_how_to_get_it(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    missing = load_lexicon(tmp_path / "absent.tsv")
    assert isinstance(missing, NoLexicon)
    assert missing.translate("Who audits the alliance?") == []
    assert "python -m rag models" in caplog.text


def test_an_unreadable_lexicon_is_a_warning_not_a_failure(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    broken = tmp_path / "lexicon.tsv"
    broken.write_bytes(b"audit\t\xff\xfe\x00garbage\t2\n")
    assert isinstance(load_lexicon(broken), NoLexicon)
    assert "cannot be read" in caplog.text and "python -m rag models" in caplog.text


def test_translations_share_one_unit_of_weight_per_english_word(lexicon: Lexicon) -> None:
    vector = SparseEncoder().encode_translations(lexicon.translate("Who co-chairs the audit?"))
    weights = dict(zip(vector.indices, vector.values, strict=True))
    assert weights[term_id("공동")] == 1.0
    assert weights[term_id("의장")] == 1.0
    assert weights[term_id("감사")] == weights[term_id("청강")] == 0.5
    assert not any(term_id(f"#{pair}") in weights for pair in ("감사", "공동"))  # no bigram terms
    assert SparseEncoder().encode_translations([]).is_empty()


def test_a_compound_translation_is_searched_as_the_analyser_indexes_it() -> None:
    vector = SparseEncoder().encode_translations(Lexicon({"chairman": ("공동의장",)}).translate("the chairman"))
    assert {term_id("공동"), term_id("의장")} <= set(vector.indices)


# --- building ------------------------------------------------------------------------------------------


def test_glosses_become_stemmed_keys() -> None:
    stem = lexicon_build.snowballstemmer.stemmer("english").stemWord
    assert lexicon_build.gloss_key("to audit", stem) == "audit"
    assert lexicon_build.gloss_key("interest rate (bank)", stem) == "interest rate"
    assert lexicon_build.gloss_key("alliances", stem) == "allianc"
    assert lexicon_build.gloss_key("CO", stem) is None  # acronym: commanding officer, not "co-"
    assert lexicon_build.gloss_key("one who reads a great many books", stem) is None
    assert lexicon_build.gloss_key("a.m.", stem) is None


def test_readings_follow_korean_initial_sound_rules() -> None:
    readings = {"連": ["련"], "合": ["합"], "比": ["비"], "率": ["률", "솔"], "女": ["녀"], "性": ["성"]}
    assert set(lexicon_build.korean_readings("連合", readings)) == {"련합", "연합"}
    assert "비율" in set(lexicon_build.korean_readings("比率", readings))
    assert "여성" in set(lexicon_build.korean_readings("女性", readings))


def _mini_jmdict(path: Path) -> None:
    """The tables and columns lexicon_build reads, with a handful of real JMdict/KANJIDIC2 facts."""
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE Kanji (ID INTEGER PRIMARY KEY, idseq INTEGER, text TEXT);
        CREATE TABLE KJP (kid INTEGER, text TEXT);
        CREATE TABLE Sense (ID INTEGER PRIMARY KEY, idseq INTEGER);
        CREATE TABLE SenseGloss (sid INTEGER, lang TEXT, gend TEXT, text TEXT);
        CREATE TABLE character (ID INTEGER PRIMARY KEY, literal TEXT);
        CREATE TABLE rm_group (ID INTEGER PRIMARY KEY, cid INTEGER);
        CREATE TABLE reading (gid INTEGER, r_type TEXT, value TEXT, on_type TEXT, r_status TEXT);
        CREATE TABLE codepoint (cid INTEGER, cp_type TEXT, value TEXT);
        CREATE TABLE variant (cid INTEGER, var_type TEXT, value TEXT);
        """
    )
    characters = {"監": ["감"], "査": ["사"], "予": ["여"], "豫": ["예"], "算": ["산"], "連": ["련"], "合": ["합"]}
    for cid, (literal, values) in enumerate(characters.items(), start=1):
        db.execute("INSERT INTO character VALUES (?, ?)", (cid, literal))
        db.execute("INSERT INTO rm_group VALUES (?, ?)", (cid, cid))
        db.execute("INSERT INTO codepoint VALUES (?, 'ucs', ?)", (cid, f"{ord(literal):x}"))
        for value in values:
            db.execute("INSERT INTO reading VALUES (?, 'korean_h', ?, NULL, NULL)", (cid, value))
    db.execute("INSERT INTO variant VALUES (3, 'ucs', ?)", (f"{ord('豫'):x}",))  # 予 is the simplified 豫
    words = [
        (1, "監査", "audit", "news1"),
        (2, "予算", "budget", "ichi1"),
        (3, "連合", "alliance", None),
        (4, "監査", "CO", None),
        (5, "算合", "budget", None),  # reads 산합: no such Korean noun
    ]
    for idseq, word, gloss, priority in words:
        db.execute("INSERT INTO Kanji VALUES (?, ?, ?)", (idseq, idseq, word))
        db.execute("INSERT INTO Sense VALUES (?, ?)", (idseq, idseq))
        db.execute("INSERT INTO SenseGloss VALUES (?, 'eng', NULL, ?)", (idseq, gloss))
        if priority:
            db.execute("INSERT INTO KJP VALUES (?, ?)", (idseq, priority))
    db.commit()
    db.close()


NOUNS = frozenset({"감사", "예산", "연합"})


def test_build_reads_kanji_words_in_korean_and_keeps_known_nouns(tmp_path: Path) -> None:
    _mini_jmdict(tmp_path / "jamdict.db")
    rows = lexicon_build.build_lexicon(tmp_path / "jamdict.db", tmp_path / "out.tsv", noun_check=NOUNS.__contains__)
    lines = (tmp_path / "out.tsv").read_text(encoding="utf-8").splitlines()
    assert rows == len(lines)
    assert sorted(lines) == ["allianc\t연합\t0", "audit\t감사\t2", "budget\t예산\t2"]


@pytest.mark.slow
def test_kiwi_tells_dictionary_nouns_from_unknown_strings() -> None:
    check = lexicon_build.KiwiNounCheck()
    assert check("연합") and check("예산") and check("공동의장")
    assert not check("련합") and not check("여산") and not check("김리")


def _fake_release(tmp_path: Path) -> bytes:
    _mini_jmdict(tmp_path / "release.db")
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for member, payload in (
            (lexicon_build.DATABASE_MEMBER, lzma.compress((tmp_path / "release.db").read_bytes())),
            (lexicon_build.LICENCE_MEMBER, b"EDRDG licence"),
        ):
            info = tarfile.TarInfo(member)
            info.size = len(payload)
            tar.addfile(info, io.BytesIO(payload))
    return buffer.getvalue()


def test_ensure_downloads_verifies_builds_once_and_cleans_up(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    release = _fake_release(tmp_path)
    monkeypatch.setattr(lexicon_build, "ARCHIVE_SHA256", hashlib.sha256(release).hexdigest())
    requested: list[list[str]] = []

    def download(requirements: list[str], downloads: Path) -> None:
        requested.append(requirements)
        (downloads / lexicon_build.ARCHIVE).write_bytes(release)

    target = tmp_path / "models" / "lexicon" / "en-ko.tsv"
    assert lexicon_build.ensure_lexicon(target, download=download, noun_check=NOUNS.__contains__) == target
    assert requested == [["jamdict-data==1.5"]]
    assert "audit\t감사\t2" in target.read_text(encoding="utf-8")
    assert (target.parent / "LICENSE-EDRDG.md").read_text(encoding="utf-8") == "EDRDG licence"
    assert target.with_name("en-ko.tsv.version").read_text(encoding="utf-8").strip() == LEXICON_VERSION
    assert not (target.parent / ".downloads").exists()  # the 54 MB archive is not kept
    assert sorted(p.name for p in target.parent.iterdir()) == ["LICENSE-EDRDG.md", "en-ko.tsv", "en-ko.tsv.version"]

    lexicon_build.ensure_lexicon(target, download=download, noun_check=NOUNS.__contains__)
    assert len(requested) == 1  # built already: nothing downloaded again


def test_an_archive_without_the_database_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz"):
        pass
    monkeypatch.setattr(lexicon_build, "ARCHIVE_SHA256", hashlib.sha256(buffer.getvalue()).hexdigest())

    def download(requirements: list[str], downloads: Path) -> None:
        (downloads / lexicon_build.ARCHIVE).write_bytes(buffer.getvalue())

    target = tmp_path / "lexicon" / "en-ko.tsv"
    with pytest.raises(ModelProvisioningError, match=r"has no .*jamdict\.db\.xz"):
        lexicon_build.ensure_lexicon(target, download=download, noun_check=NOUNS.__contains__)
    assert not target.exists()


def test_an_archive_with_the_wrong_checksum_is_refused_and_deleted(tmp_path: Path) -> None:
    def download(requirements: list[str], downloads: Path) -> None:
        (downloads / lexicon_build.ARCHIVE).write_bytes(b"not the release")

    target = tmp_path / "lexicon" / "en-ko.tsv"
    with pytest.raises(ModelProvisioningError, match="sha256"):
        lexicon_build.ensure_lexicon(target, download=download, noun_check=NOUNS.__contains__)
    assert not (target.parent / ".downloads" / lexicon_build.ARCHIVE).exists()
    assert not target.exists()


@pytest.mark.slow
def test_the_provisioned_lexicon_translates_common_policy_words() -> None:
    """The real lexicon, as `python -m rag models` builds it (`make test` runs that first; here a cheap check)."""
    from .conftest import models_dir

    path = lexicon_build.ensure_lexicon(models_dir() / "lexicon" / "en-ko-sino.tsv")
    lexicon = Lexicon.load(path, ENGLISH_STOPWORDS)
    expected = {
        "audit": "감사",
        "chair": "의장",
        "budget": "예산",  # 予算: the simplified 予 read as 豫
        "alliance": "연합",  # 連合 련합: the initial-sound rule
        "unemployment": "실업",
        "election": "선거",
        "tariffs": "관세",
        "exports": "수출",
        "government": "정부",
    }
    for english, korean in expected.items():
        [translation] = lexicon.translate(english)
        assert korean in translation.korean, (english, translation.korean)
