"""Sound keys: an English word and its Korean transliteration meet; translations and stray words do not."""

from __future__ import annotations

import pytest

from rag.search.sparse import SparseEncoder
from rag.text.analyzer import TermAnalyzer
from rag.text.transliteration import english_key, english_keys, hangul_key, looks_borrowed, usable


@pytest.mark.parametrize(
    ("english", "korean"),
    [
        ("alliance", "얼라이언스"),
        ("platform", "플랫폼"),
        ("robot", "로봇"),  # a final ㅅ is a t
        ("smart", "스마트"),  # r is silent after a vowel
        ("supercomputer", "수퍼컴퓨터"),
        ("Lawrence", "로렌스"),
        ("Livermore", "리버모아"),
        ("healthcare", "헬스케어"),
        ("sandbox", "샌드박스"),
        ("Washington", "워싱턴"),
        ("Busan", "부산"),
    ],
)
def test_an_english_word_and_its_transliteration_share_a_key(english: str, korean: str) -> None:
    assert english_key(english) == hangul_key(korean)
    assert usable(hangul_key(korean))


def test_translations_do_not_share_keys() -> None:
    assert english_key("audit") != hangul_key("감사")
    assert english_key("company") != hangul_key("기업")


def test_short_skeletons_are_not_used() -> None:
    assert not usable(english_key("Obama"))  # PM: too many words share it


def test_borrowed_words_are_told_from_sino_korean_ones() -> None:
    assert looks_borrowed("얼라이언스") and looks_borrowed("플랫폼") and looks_borrowed("컴퓨터")
    assert not looks_borrowed("공동감사") and not looks_borrowed("국토교통부") and not looks_borrowed("기업")


def test_english_keys_join_adjacent_content_words_and_drop_the_plural() -> None:
    keys = english_keys("When was the smart city launched? Robots", frozenset({"when", "was", "the"}))
    assert hangul_key("스마트시티") in keys  # Korean closes up the compound
    assert hangul_key("로봇") in keys
    pairs = english_keys("alliance of robots", frozenset({"of"}))
    assert english_key("allianceof") not in pairs and english_key("ofrobots") not in pairs  # stop words never pair


def test_korean_documents_key_their_borrowed_nouns_only() -> None:
    _, keys = TermAnalyzer().terms_and_sound_keys("스마트시티 융합 얼라이언스(이하 얼라이언스)가 공동감사를 선임했다.")
    assert keys["~" + hangul_key("얼라이언스")] == 2  # kiwi splits it (얼라이언 + 스); the eojeol is keyed whole
    assert "~" + hangul_key("스마트시티") in keys
    assert "~" + hangul_key("공동감사") not in keys and "~" + hangul_key("선임") not in keys


def test_a_particle_glued_to_an_unknown_loanword_still_gives_its_key() -> None:
    _, keys = TermAnalyzer().terms_and_sound_keys("얼라이언스가 출범했다.")
    assert "~" + hangul_key("얼라이언스") in keys


def test_sound_keys_leave_the_bm25_weights_of_the_other_terms_alone() -> None:
    encoder = SparseEncoder()
    text = "스마트시티 얼라이언스 플랫폼 로봇 출범"
    terms, keys = encoder.analyzer.terms_and_sound_keys(text)
    assert keys
    norm = encoder.k1 * (1 - encoder.b + encoder.b * sum(terms.values()) / encoder.average_length)
    vector = encoder.encode_document(text)
    from rag.search.sparse import term_id

    weights = dict(zip(vector.indices, vector.values, strict=True))
    tf = terms["출범"]
    assert weights[term_id("출범")] == pytest.approx(tf * (encoder.k1 + 1) / (tf + norm))


def test_the_sound_query_of_an_english_question_finds_the_transliterating_korean_article(fake_service) -> None:
    from ingest.pipeline import build_ingestor
    from rag.types import Article

    articles = [
        Article(
            id="alliance",
            title="얼라이언스 출범",
            text="스마트시티 융합 얼라이언스가 공식 출범했다. 공동의장사를 선임했다.",
        ),
        Article(id="pact", title="반도체 동맹", text="미국 주도의 반도체 동맹이 출범했다. 공동의장국을 선임했다."),
        Article(id="audit", title="회계 감사", text="감사원은 공공기관 회계 감사 결과를 발표했다."),
    ]
    build_ingestor(fake_service).ingest_articles(articles)
    query = fake_service.sparse.encode_sound_query("Who co-chairs the alliance?")
    hits = fake_service.store.search_sparse(query, limit=3)
    assert [hit.chunk.article_id for hit in hits] == ["alliance"]


def test_every_chunk_of_an_article_carries_the_articles_sound_keys_alike() -> None:
    from rag.search.sparse import term_id

    encoder = SparseEncoder()
    named, unnamed = encoder.encode_article(
        ["얼라이언스 얼라이언스 얼라이언스가 출범했다.", "공동의장사로 두 회사가 선임됐다."]
    )
    key = term_id("~" + hangul_key("얼라이언스"))
    # the chunk naming the alliance three times does not outrank, on sound, the one that answers the question
    assert dict(zip(named.indices, named.values, strict=True))[key] == pytest.approx(
        dict(zip(unnamed.indices, unnamed.values, strict=True))[key]
    )
