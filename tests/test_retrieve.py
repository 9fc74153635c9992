"""Which keyword sides take part: a Korean question's own terms; for a question without Hangul its own terms
at the Korean weight when one chunk holds most of its words (else at the `other` weight), plus the sound keys
and the Korean translations of its words at lower weights."""

from __future__ import annotations

from ingest.pipeline import build_ingestor
from rag.config import RetrievalSettings
from rag.service import RagService
from rag.text.lexicon import Lexicon
from rag.types import Article

KOREAN = Article(
    id="ko", title="철도 안전 대책", text="국토교통부는 2024년 철도 안전 강화 대책을 발표했다. 노후 차량을 교체한다."
)
ENGLISH = Article(
    id="en",
    title="Federal Reserve statement",
    text="The Committee decided to raise the target range for the federal funds rate. Inflation remains elevated.",
)


def _weights(service: RagService) -> RetrievalSettings:
    # translations at 0: these tests are about the other sides (the lexicon's own tests come below)
    return service.settings.retrieval.model_copy(
        update={
            "sparse_weight_korean": 2.0,
            "sparse_weight_other": 0.0,
            "sparse_weight_sound": 0.5,
            "sparse_weight_translation": 0.0,
        }
    )


def _sides(service: RagService, question: str) -> list[tuple[str, float]]:
    """Which keyword queries the retriever builds for `question` ("terms", "sound" or "translation"), with
    their weights, in order."""
    named = []
    for vector, weight in service.retriever.keyword_sides_for(question):
        if vector == service.sparse.encode_query(question):
            named.append(("terms", weight))
        elif vector == service.sparse.encode_sound_query(question):
            named.append(("sound", weight))
        else:
            named.append(("translation", weight))
    return named


def _side(service: RagService, question: str) -> tuple[str, float]:
    """The one keyword query built for `question` (see _sides)."""
    [side] = _sides(service, question)
    return side


def test_english_question_over_korean_articles_is_also_searched_by_translation(fake_service: RagService) -> None:
    audit = Article(id="audit", title="감사 결과", text="감사원은 철도공사 감사 결과를 발표했다.")
    build_ingestor(fake_service).ingest_articles([KOREAN, audit])
    retriever = fake_service.retriever
    retriever.settings = _weights(fake_service).model_copy(update={"sparse_weight_translation": 0.5})
    retriever.lexicon = Lexicon({"audit": ("감사", "청강"), "railway": ("철도",)})
    sides = retriever.keyword_sides_for("Who audits the railway?")
    translated = fake_service.sparse.encode_translations(retriever.lexicon.translate("Who audits the railway?"))
    assert (translated, 0.5) in sides
    assert fake_service.store.search_sparse(translated, limit=5)[0].chunk.article_id == "audit"
    # a Korean question, or a question no word of which the lexicon knows, gets no translated side
    assert _side(fake_service, "철도 감사는?") == ("terms", 2.0)
    assert all(weight != 0.5 or vector != translated for vector, weight in retriever.keyword_sides_for("Xyzzy?"))


def test_hangul_questions_always_get_the_keyword_side(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([ENGLISH])
    retriever = fake_service.retriever
    retriever.settings = _weights(fake_service)
    assert _side(fake_service, "철도 안전 대책은?") == ("terms", 2.0)


def test_english_question_over_korean_articles_is_searched_by_sound(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([KOREAN])
    retriever = fake_service.retriever
    retriever.settings = _weights(fake_service)
    assert _side(fake_service, "What did the ministry announce about railway safety?") == ("sound", 0.5)
    # a year is script-neutral: it occurs in the Korean article but does not make the question Korean
    assert _side(fake_service, "What happened in 2024?") == ("sound", 0.5)


def test_english_question_over_english_articles_gets_the_keyword_side(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([KOREAN, ENGLISH])
    retriever = fake_service.retriever
    retriever.settings = _weights(fake_service)
    # its own words at the Korean weight; sound keys (and translations) still take part, since a collection
    # can hold English items beside Korean ones and the Korean article may be the answer
    assert _sides(fake_service, "Did the Committee raise the federal funds rate?")[0] == ("terms", 2.0)
    assert _side(fake_service, "Who co-chairs the alliance?") == ("sound", 0.5)
    hits = retriever.retrieve("Did the Committee raise the federal funds rate?").hits
    assert hits[0].chunk.article_id == "en"


def test_english_words_scattered_over_korean_articles_do_not_engage_the_keyword_side(
    fake_service: RagService,
) -> None:
    # each word of the question occurs somewhere, as Korean news quotes English terms, but no chunk is about it
    expo = Article(id="expo", title="스마트시티 박람회", text="정부는 스마트 시티(smart city) 박람회를 열었다.")
    bloc = Article(id="bloc", title="반도체 동맹", text="미국 주도의 반도체 동맹(alliance)이 출범(launched)했다.")
    build_ingestor(fake_service).ingest_articles([expo, bloc])
    retriever = fake_service.retriever
    retriever.settings = _weights(fake_service)
    question = "When was the smart city alliance launched?"
    assert fake_service.store.keyword_coverage(fake_service.sparse.word_term_ids(question)) == 0.5
    assert _side(fake_service, question) == ("sound", 0.5)
    # one chunk holds both words: they are searched at the Korean weight, and by sound as before
    assert _sides(fake_service, "alliance launched") == [("terms", 2.0), ("sound", 0.5)]


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
    retriever = fake_service.retriever
    retriever.settings = _weights(fake_service).model_copy(update={"sparse_weight_translation": 0.5})
    retriever.lexicon = Lexicon({"audits": ("감사",), "railway": ("철도",)})
    sides = _sides(fake_service, "railway audits")
    assert sides[0] == ("terms", 2.0) and ("translation", 0.5) in sides  # (and sound keys, "railway" has one)
