from __future__ import annotations

from rag.search.sparse import SparseEncoder, term_id
from rag.text.analyzer import TermAnalyzer
from rag.text.hangul import hangul_share


def test_korean_terms_keep_content_morphemes_and_drop_particles() -> None:
    terms = TermAnalyzer().terms("국토교통부가 시범도시 사업을 발표했다")
    assert "국토교통부" in terms or "국토" in terms
    assert "발표" in terms
    assert "가" not in terms and "을" not in terms


def test_unknown_name_with_particle_still_shares_terms_with_the_bare_name() -> None:
    # docs/architecture.md, trap 4: kiwi splits an unknown name differently with a particle attached
    analyzer = TermAnalyzer()
    question = set(analyzer.terms("이큐브랩의 대표는 누구인가"))
    article = set(analyzer.terms("LG CNS와 이큐브랩(대표 권순범)이 선임됐다"))
    shared_bigrams = {t for t in question & article if t.startswith("#")}
    assert {"#이큐", "#큐브", "#브랩"} <= shared_bigrams


def test_english_terms_are_stemmed_without_stopwords() -> None:
    terms = TermAnalyzer().terms("Who co-chairs the alliances? Rates rose 0.25 percent in 2024")
    assert {"chair", "allianc", "rate", "rose", "0.25", "2024"} <= set(terms)
    assert "the" not in terms and "who" not in terms


def test_query_vector_has_unit_weights_and_document_vector_saturates() -> None:
    encoder = SparseEncoder()
    query = encoder.encode_query("rates rates rates")
    assert query.indices == [term_id("rate")] and query.values == [1.0]
    once = encoder.encode_document("rates")
    many = encoder.encode_document("rates " * 50)
    assert 0 < once.values[0] < many.values[0] < encoder.k1 + 1


def test_hangul_share() -> None:
    assert hangul_share("Who co-chairs the alliance?") == 0.0
    assert hangul_share("얼라이언스 공동의장사는?") == 1.0
    assert 0 < hangul_share("LG CNS 대표") < 1
