"""Which keyword sides take part, and how the sides are fused.

Sides: a Korean question's own terms; for a question without Hangul its own terms at the Korean weight when one
chunk holds most of its words (else at the `other` weight), plus the sound keys and the Korean translations of its
words at their own weights. Every expected query vector below is written out term by term (the analyser's rules:
Korean morphemes at 1 and Hangul bigrams at 0.5, English stems at 1, sound keys at 1, each English word's
translations sharing 1), and each side has a weight of its own, so a side built wrongly, dropped, or weighted with
another side's weight fails.

Fusion: a hand-built store whose dense similarities and keyword order are known, so the fused scores can be
worked out on paper (DBSF and weighted RRF as qdrant-client defines them).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import build_ingestor
from rag.config import RetrievalSettings
from rag.search.sparse import SparseVector, term_id
from rag.search.store import FusionMethod
from rag.service import RagService
from rag.text.lexicon import Lexicon, NoLexicon
from rag.types import Article

from .conftest import make_settings
from .doubles import TopicEmbedder

KOREAN = Article(
    id="ko", title="철도 안전 대책", text="국토교통부는 2024년 철도 안전 강화 대책을 발표했다. 노후 차량을 교체한다."
)
ENGLISH = Article(
    id="en",
    title="Federal Reserve statement",
    text="The Committee decided to raise the target range for the federal funds rate. Inflation remains elevated.",
)
# one weight per side, none of them a default: a side given another side's weight shows
KOREAN_WEIGHT, OTHER_WEIGHT, SOUND_WEIGHT, TRANSLATION_WEIGHT = 1.5, 0.3, 0.25, 0.75


def _weights(service: RagService) -> RetrievalSettings:
    return service.settings.retrieval.model_copy(
        update={
            "sparse_weight_korean": KOREAN_WEIGHT,
            "sparse_weight_other": OTHER_WEIGHT,
            "sparse_weight_sound": SOUND_WEIGHT,
            "sparse_weight_translation": TRANSLATION_WEIGHT,
        }
    )


def _use(service: RagService, lexicon: Lexicon | None = None) -> None:
    service.retriever.settings = _weights(service)
    service.retriever.lexicon = lexicon or NoLexicon()


def _vector(weights: dict[str, float]) -> SparseVector:
    """A query vector written out by hand: term ids ascending, as Qdrant wants them."""
    ordered = sorted((term_id(term), weight) for term, weight in weights.items())
    return SparseVector(indices=[i for i, _ in ordered], values=[w for _, w in ordered])


def _terms(*terms: str, bigrams: tuple[str, ...] = ()) -> SparseVector:
    return _vector({**dict.fromkeys(terms, 1.0), **{"#" + bigram: 0.5 for bigram in bigrams}})


def _sound(*keys: str) -> SparseVector:
    return _vector({"~" + key: 1.0 for key in keys})


def test_english_question_over_korean_articles_is_also_searched_by_translation(fake_service: RagService) -> None:
    audit = Article(id="audit", title="감사 결과", text="감사원은 철도공사 감사 결과를 발표했다.")
    build_ingestor(fake_service).ingest_articles([KOREAN, audit])
    _use(fake_service, Lexicon({"audit": ("감사", "청강"), "railway": ("철도",)}))
    retriever = fake_service.retriever
    # "audits" has two translations sharing a weight of 1; "railway" one; no sound key fits these words
    translated = _vector({"감사": 0.5, "청강": 0.5, "철도": 1.0})
    assert retriever.keyword_sides_for("Who audits the railway?") == [
        (_terms("audit", "railway"), OTHER_WEIGHT),  # no chunk holds its words
        (translated, TRANSLATION_WEIGHT),
    ]
    assert fake_service.store.search_sparse(translated, limit=5)[0].chunk.article_id == "audit"
    # a Korean question gets its own terms alone; a question no word of which the lexicon knows, no translation
    assert retriever.keyword_sides_for("철도 감사는?") == [
        (_terms("철도", "감사", bigrams=("철도", "감사", "사는")), KOREAN_WEIGHT)
    ]
    assert retriever.keyword_sides_for("Xyzzy?") == [(_terms("xyzzi"), OTHER_WEIGHT)]


def test_hangul_questions_always_get_the_keyword_side(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([ENGLISH])
    _use(fake_service)
    assert fake_service.retriever.keyword_sides_for("철도 안전 대책은?") == [
        (_terms("철도", "안전", "대책", bigrams=("철도", "안전", "대책", "책은")), KOREAN_WEIGHT)
    ]


def test_english_question_over_korean_articles_is_searched_by_sound(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([KOREAN])
    _use(fake_service)
    retriever = fake_service.retriever
    # alliance → ~LNS, the key of 얼라이언스 (tests/test_transliteration.py)
    assert retriever.keyword_sides_for("Who co-chairs the alliance?") == [
        (_terms("co", "chair", "allianc"), OTHER_WEIGHT),
        (_sound("LNS"), SOUND_WEIGHT),
        (_vector({"공동": 1.0}), TRANSLATION_WEIGHT),  # co- is 공동, lexicon or not
    ]
    # a year is script-neutral: it occurs in the Korean article but does not make the question's words found
    assert retriever.keyword_sides_for("What happened in 2024?") == [
        (_terms("happen", "2024"), OTHER_WEIGHT),
        (_sound("HPNT"), SOUND_WEIGHT),
    ]
    fake_service.retriever.settings = _weights(fake_service).model_copy(update={"sparse_weight_other": 0.0})
    assert retriever.keyword_sides_for("What happened in 2024?") == [(_sound("HPNT"), SOUND_WEIGHT)]  # 0: left out


def test_english_question_over_english_articles_gets_the_keyword_side(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([KOREAN, ENGLISH])
    _use(fake_service)
    retriever = fake_service.retriever
    # its own words at the Korean weight; sound keys still take part, since a collection can hold English items
    # beside Korean ones and the Korean article may be the answer
    question = "Did the Committee raise the federal funds rate?"
    sides = retriever.keyword_sides_for(question)
    assert sides[0] == (_terms("committe", "rais", "feder", "fund", "rate"), KOREAN_WEIGHT)
    assert [weight for _, weight in sides] == [KOREAN_WEIGHT, SOUND_WEIGHT]
    assert retriever.keyword_sides_for("Who co-chairs the alliance?")[0] == (
        _terms("co", "chair", "allianc"),
        OTHER_WEIGHT,
    )
    assert retriever.retrieve(question).hits[0].chunk.article_id == "en"


def test_english_words_scattered_over_korean_articles_do_not_engage_the_keyword_side(
    fake_service: RagService,
) -> None:
    # each word of the question occurs somewhere, as Korean news quotes English terms, but no chunk is about it
    expo = Article(id="expo", title="스마트시티 박람회", text="정부는 스마트 시티(smart city) 박람회를 열었다.")
    bloc = Article(id="bloc", title="반도체 동맹", text="미국 주도의 반도체 동맹(alliance)이 출범(launched)했다.")
    build_ingestor(fake_service).ingest_articles([expo, bloc])
    _use(fake_service)
    retriever = fake_service.retriever
    question = "When was the smart city alliance launched?"
    assert fake_service.store.keyword_coverage([term_id(t) for t in ("smart", "citi", "allianc", "launch")]) == 0.5
    assert retriever.keyword_sides_for(question) == [
        (_terms("smart", "citi", "allianc", "launch"), OTHER_WEIGHT),  # 2 of 4 words in one chunk: below 0.6
        (_sound("LNS", "LNST", "LNSLNST", "SMT", "SMTST", "STLNS"), SOUND_WEIGHT),  # words and joined pairs
    ]
    # one chunk holds both words: they are searched at the Korean weight, and by sound as before
    assert retriever.keyword_sides_for("alliance launched") == [
        (_terms("allianc", "launch"), KOREAN_WEIGHT),
        (_sound("LNS", "LNST", "LNSLNST"), SOUND_WEIGHT),
    ]


def test_warm_up_builds_what_the_first_question_needs(fake_service: RagService) -> None:
    from rag.text.analyzer import get_kiwi

    build_ingestor(fake_service).ingest_articles([KOREAN])
    fake_service.store._index = None  # as after a restart
    fake_service.warm_up()
    assert fake_service.store._index is not None and len(fake_service.store._index) > 0
    assert get_kiwi.cache_info().currsize == 1
    assert fake_service.search("철도 안전")[0].chunk.article_id == "ko"


def test_copies_of_one_text_show_once_and_remember_where_else_they_live(fake_service: RagService) -> None:
    from eval.runner import RagRanking

    shared = "국토교통부는 철도 안전 강화 대책을 발표했다."
    copies = [
        Article(id="outlet-a", title="철도 대책", text=shared),
        Article(id="outlet-b", title="철도 대책", text=shared),
        Article(id="other", title="항만 소식", text="해양수산부는 항만 확장 계획을 발표했다."),
    ]
    build_ingestor(fake_service).ingest_articles(copies)
    hits = fake_service.retriever.retrieve("철도 안전 강화 대책", top_k=5).hits
    texts = [hit.chunk.text for hit in hits]
    assert texts.count(shared) == 1  # a syndicated copy is not shown twice
    kept = next(hit for hit in hits if hit.chunk.text == shared)
    assert {kept.chunk.article_id, *kept.copies_in} == {"outlet-a", "outlet-b"}
    ranked, _ = RagRanking(fake_service, "hybrid").rank("철도 안전 강화 대책")
    assert set(ranked[:2]) == {"outlet-a", "outlet-b"}  # either copy counts as found, at the same depth


def test_english_words_in_a_bilingual_item_keep_the_translated_side(fake_service: RagService) -> None:
    # Korean news carries English headlines beside Korean ones: one such item holds the question's words, but
    # the Korean article that answers it is reached only through the translations
    bilingual = Article(id="headline", title="Railway audits begin", text="Railway audits begin 철도 감사 시작")
    audit = Article(id="audit", title="감사 결과", text="감사원은 철도공사 감사 결과를 발표했다.")
    build_ingestor(fake_service).ingest_articles([bilingual, audit])
    _use(fake_service, Lexicon({"audit": ("감사",), "railway": ("철도",)}))
    assert fake_service.retriever.keyword_sides_for("railway audits") == [
        (_terms("railway", "audit"), KOREAN_WEIGHT),
        (_sound("LTS"), SOUND_WEIGHT),  # "railway audits" written as one word
        (_vector({"철도": 1.0, "감사": 1.0}), TRANSLATION_WEIGHT),
    ]


# --- fusion on a hand-built store --------------------------------------------------------------------------
#
# Three articles without titles. The markers ◆ and ● steer the dense side only (TopicEmbedder; the keyword
# analyser ignores symbols): a = ◆, b = ◆●, c = ●, so the question "◆ 감사" has similarity 1, 1/√2 and 0 to
# them. On the keyword side 감사 occurs in b (inside 감사원이) and twice in c: c, then b; a is not a match.
#
# DBSF (qdrant-client): each list's scores become (s - μ + 3σ) / 6σ (σ the sample deviation), then summed.
# Dense, 1, 1/√2, 0: μ = 0.5690, σ = 0.5141: a 0.6397, b 0.5448, c 0.3155. Keyword, two scores: whatever
# their values, 1/2 ± √2/12: c 0.6179, b 0.3821. Weights are listings: dense 1 and keywords 2 list the
# keyword side twice.

FUSION_ARTICLES = [
    Article(id="a", text="◆ 항만 물류 대책을 발표했다."),
    Article(id="b", text="◆● 감사원이 철도 대책을 발표했다."),
    Article(id="c", text="● 감사원은 감사 결과를 발표했다."),
]
DENSE_A, DENSE_B, DENSE_C = 0.6397, 0.5448, 0.3155
KEYWORD_B, KEYWORD_C = 0.5 - math.sqrt(2) / 12, 0.5 + math.sqrt(2) / 12


@pytest.fixture
def fusion_service(tmp_path: Path) -> Iterator[RagService]:
    service = RagService(make_settings(tmp_path), embedder=TopicEmbedder("◆", "●"))
    build_ingestor(service).ingest_articles(FUSION_ARTICLES)
    yield service
    service.close()


def _fused(
    service: RagService, dense_weight: float, keyword_weight: float, fusion: FusionMethod, rrf_k: int = 60
) -> list[tuple[str, float]]:
    question = "◆ 감사"
    hits = service.store.search(
        service.embedder.embed_query(question),
        [(_terms("감사", bigrams=("감사",)), keyword_weight)],  # the question's keyword side, written out
        limit=10,
        candidates=10,
        fusion=fusion,
        rrf_k=rrf_k,
        dense_weight=dense_weight,
    )
    return [(hit.chunk.article_id, round(hit.score, 4)) for hit in hits]


def test_dbsf_fuses_normalised_scores_as_worked_out_by_hand(fusion_service: RagService) -> None:
    assert _fused(fusion_service, 1.0, 1.0, "dbsf") == [
        ("c", round(DENSE_C + KEYWORD_C, 4)),  # 0.9334
        ("b", round(DENSE_B + KEYWORD_B, 4)),  # 0.9269
        ("a", DENSE_A),
    ]
    assert _fused(fusion_service, 1.0, 2.0, "dbsf") == [
        ("c", round(DENSE_C + 2 * KEYWORD_C, 4)),  # 1.5512
        ("b", round(DENSE_B + 2 * KEYWORD_B, 4)),  # 1.3091
        ("a", DENSE_A),
    ]
    # keywords at half the dense weight: the dense side listed twice, and the order turns round
    assert _fused(fusion_service, 1.0, 0.5, "dbsf") == [
        ("b", round(2 * DENSE_B + KEYWORD_B, 4)),  # 1.4717
        ("a", round(2 * DENSE_A, 4)),  # 1.2794
        ("c", round(2 * DENSE_C + KEYWORD_C, 4)),  # 1.2489
    ]
    # the dense side weighted 0 is left out: the keyword side alone, where a is no match
    assert _fused(fusion_service, 0.0, 1.0, "dbsf") == [("c", round(KEYWORD_C, 4)), ("b", round(KEYWORD_B, 4))]


def test_weighted_rrf_as_worked_out_by_hand(fusion_service: RagService) -> None:
    # qdrant-client's weighted RRF: Σ 1 / ((rank + 1) / weight + k - 1), rank from 0. Dense ranks a 0, b 1, c 2;
    # keyword ranks c 0, b 1. With k = 1 the sums are small fractions.
    assert _fused(fusion_service, 2.0, 1.0, "rrf", rrf_k=1) == [
        ("a", 2.0),  # 1 / (1/2)
        ("c", round(1 / 1.5 + 1, 4)),  # 1 / (3/2) + 1 / 1
        ("b", 1.5),  # 1 / (2/2) + 1 / 2
    ]
    assert _fused(fusion_service, 1.0, 2.0, "rrf", rrf_k=1) == [
        ("c", round(1 / 3 + 2, 4)),  # 1 / 3 + 1 / (1/2)
        ("b", 1.5),  # 1 / 2 + 1 / (2/2)
        ("a", 1.0),
    ]


@pytest.mark.parametrize(
    ("dense_weight", "keyword_weight", "order"),
    [(1.0, 0.5, ["b", "a", "c"]), (2.0, 1.0, ["b", "a", "c"]), (1.0, 2.0, ["c", "b", "a"])],
)
def test_the_weight_settings_decide_the_order(
    fusion_service: RagService, dense_weight: float, keyword_weight: float, order: list[str]
) -> None:
    """The same question through the retriever: the weights in the settings must reach the fusion (dense twice
    the keyword weight: b leads; keywords twice the dense weight: c leads; see above)."""
    fusion_service.retriever.settings = fusion_service.settings.retrieval.model_copy(
        update={"sparse_weight_korean": keyword_weight, "dense_weight": dense_weight, "fusion": "dbsf"}
    )
    hits = fusion_service.retriever.retrieve("◆ 감사").hits
    assert [hit.chunk.article_id for hit in hits] == order
    similarity = {"a": 1.0, "b": math.sqrt(0.5), "c": 0.0}
    assert [hit.dense_score for hit in hits] == pytest.approx([similarity[article] for article in order], abs=1e-6)
