"""Ingest → Qdrant (real local mode) → retrieve, with the fake embedder: idempotency, changes, filters."""

from __future__ import annotations

import datetime as dt
from typing import Any

import numpy as np
import pytest

from ingest.pipeline import build_ingestor
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.errors import CollectionMismatchError, CollectionNotFoundError, StoreLockedError
from rag.search.store import STALE_WINDOW, QdrantStore
from rag.service import RagService
from rag.types import Article, SearchFilters, chunk_point_id


def _articles() -> list[Article]:
    return [
        Article(
            id="alliance",
            title="스마트시티 융합 얼라이언스 출범",
            text="이날 총회에서 초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다. 공동감사는 한국기업데이터가 맡는다.",
            date=dt.date(2024, 4, 20),
            source="icn",
        ),
        Article(
            id="fed",
            title="Federal Reserve statement",
            text="The Committee decided to raise the target range for the federal funds rate. Inflation is high.",
            date=dt.date(2023, 7, 26),
            source="fomc",
        ),
        Article(
            id="rail",
            title="철도 안전 대책 발표",
            text="국토교통부는 철도 안전 강화 대책을 발표했다. 노후 차량을 교체한다.",
            date=dt.date(2026, 7, 2),
            source="korea.kr",
        ),
    ]


def test_ingest_then_search_finds_the_right_article(fake_service: RagService) -> None:
    report = build_ingestor(fake_service).ingest_articles(_articles())
    assert (report.added, report.updated, report.unchanged, report.failed) == (3, 0, 0, [])
    assert report.chunks == fake_service.store.count_chunks() > 0
    hits = fake_service.search("federal funds rate target range")
    assert hits[0].chunk.article_id == "fed"
    hits = fake_service.search("공동의장사 이큐브랩")
    assert hits[0].chunk.article_id == "alliance"


def test_reingesting_unchanged_articles_writes_nothing(fake_service: RagService) -> None:
    ingestor = build_ingestor(fake_service)
    ingestor.ingest_articles(_articles())
    points = fake_service.store.count_chunks()
    report = ingestor.ingest_articles(_articles())
    assert (report.added, report.updated, report.unchanged, report.chunks) == (0, 0, 3, 0)
    assert fake_service.store.count_chunks() == points


def test_a_changed_article_replaces_all_its_old_chunks(fake_service: RagService) -> None:
    ingestor = build_ingestor(fake_service)
    long_text = " ".join(f"Old sentence number {i} about budgets." for i in range(60))
    ingestor.ingest_articles([Article(id="x", text=long_text)])
    old_count = fake_service.store.count_chunks()
    assert old_count > 2
    report = ingestor.ingest_articles([Article(id="x", text="A single new sentence about trains.")])
    assert report.updated == 1
    assert fake_service.store.count_chunks() == 1
    hit = fake_service.search("budgets", top_k=5)[0]
    # the new version took the other set of point ids, beside the old one, which was then deleted
    assert "trains" in hit.chunk.text and hit.chunk.id == chunk_point_id("x", 0, generation=1)


@pytest.mark.parametrize("engine", ["local", "edge"])
def test_a_much_shorter_version_drops_every_stale_chunk(settings: Settings, engine: str) -> None:
    """Stale chunks are found by id a window at a time (store.STALE_WINDOW): more of them than several windows."""
    settings.qdrant = settings.qdrant.model_copy(update={"engine": engine})
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        ingestor = build_ingestor(service)
        long_text = " ".join(f"Sentence {i} of a very long report on rail budgets and port fees." for i in range(2000))
        ingestor.ingest_articles([Article(id="long", text=long_text), Article(id="other", text="Port news.")])
        stored = service.store.get_article("long")
        assert stored is not None and stored.chunk_count > 2 * STALE_WINDOW
        ingestor.ingest_articles([Article(id="long", text="Now one sentence."), Article(id="other", text="Port news.")])
        assert service.store.count_chunks() == 2
        assert [h.chunk.id for h in service.search("rail budgets", top_k=5) if h.chunk.article_id == "long"] == [
            chunk_point_id("long", 0, generation=1)
        ]
    finally:
        service.close()


@pytest.mark.parametrize("engine", ["local", "edge"])
def test_chunks_left_by_an_interrupted_longer_version_are_dropped(
    settings: Settings, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A version whose chunks were written but whose record was not (a kill, a failure) leaves chunks in the
    generation the next version writes into; those past the next version's length are dropped with the rest."""
    settings.qdrant = settings.qdrant.model_copy(update={"engine": engine})
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        ingestor = build_ingestor(service)
        ingestor.ingest_articles([Article(id="a", text="Rail budgets rose.")])
        client = service.store._client
        upsert = client.upsert

        def no_record(collection_name: str, **kwargs: Any) -> Any:
            if collection_name == service.store.articles_collection:
                raise RuntimeError("killed before the record")
            return upsert(collection_name, **kwargs)

        monkeypatch.setattr(client, "upsert", no_record)
        long_text = " ".join(f"Sentence {i} of a long report on rail budgets and port fees." for i in range(2000))
        report = ingestor.ingest_articles([Article(id="a", text=long_text)])
        assert len(report.failed) == 1 and service.store.count_chunks() > 2 * STALE_WINDOW
        monkeypatch.setattr(client, "upsert", upsert)
        ingestor.ingest_articles([Article(id="a", text="Rail budgets fell. Port fees rose.")])
        stored = service.store.get_article("a")
        assert stored is not None and service.store.count_chunks() == stored.chunk_count
    finally:
        service.close()


def test_stored_article_text_is_what_offsets_refer_to(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles(_articles())
    stored = fake_service.store.get_article("alliance")
    assert stored is not None
    for hit in fake_service.search("공동감사", top_k=3):
        if hit.chunk.article_id == "alliance":
            assert stored.article.text[hit.chunk.start : hit.chunk.end] == hit.chunk.text


def test_date_and_source_filters(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles(_articles())
    recent = fake_service.search("발표", filters=SearchFilters(date_from=dt.date(2026, 1, 1)))
    assert {h.chunk.article_id for h in recent} == {"rail"}
    fomc = fake_service.search("공동의장사", filters=SearchFilters(source="fomc"))
    assert {h.chunk.article_id for h in fomc} == {"fed"}
    window = fake_service.search(
        "statement", filters=SearchFilters(date_from=dt.date(2023, 7, 26), date_to=dt.date(2023, 7, 26))
    )
    assert {h.chunk.article_id for h in window} == {"fed"}


def test_per_article_cap_limits_hits_from_one_article(fake_service: RagService) -> None:
    long_text = " ".join(f"Budget line {i} covers rail safety spending." for i in range(80))
    build_ingestor(fake_service).ingest_articles([Article(id="long", text=long_text), *_articles()])
    hits = fake_service.search("rail safety budget", top_k=10)
    cap = fake_service.settings.retrieval.max_chunks_per_article
    others = [h for h in hits if h.chunk.article_id != "long"]
    assert others, "other articles must not be crowded out"
    first_others = hits.index(others[0])
    assert first_others <= cap  # at most `cap` chunks of the long article before another article


def test_reading_a_missing_collection_says_to_ingest(fake_service: RagService) -> None:
    with pytest.raises(CollectionNotFoundError, match="ingest"):
        fake_service.search("anything")


def test_collection_built_with_another_model_is_not_mixed(settings: Settings) -> None:
    first = RagService(settings, embedder=FakeEmbedder(dimension=64))
    build_ingestor(first).ingest_articles(_articles())
    first.close()
    second = RagService(settings, embedder=FakeEmbedder(dimension=32))
    with pytest.raises(CollectionMismatchError, match="another collection name"):
        build_ingestor(second)
    second.close()


def test_second_process_on_the_embedded_store_gets_a_clear_message(
    fake_service: RagService, settings: Settings
) -> None:
    _ = fake_service.store  # holds the folder lock
    with pytest.raises(StoreLockedError, match="POST /v1/ingest"):
        QdrantStore(settings.qdrant, settings.collection)


class _BrittleEmbedder(FakeEmbedder):
    """Fails on one text, as a tokenizer bug on one odd document would."""

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if any("EXPLODE" in text for text in texts):
            raise RuntimeError("tokenizer blew up")
        return super().embed_documents(texts)


def test_one_article_that_breaks_embedding_fails_alone(settings: Settings) -> None:
    service = RagService(settings, embedder=_BrittleEmbedder())
    articles = [
        Article(id="before", text="Port news before.", origin="a.txt"),
        Article(id="bad", text="This one will EXPLODE in the embedder.", origin="bad.txt"),
        Article(id="after", text="Rail news after.", origin="c.txt"),
    ]
    report = build_ingestor(service).ingest_articles(articles)
    assert (report.added, [f.path.rsplit("/", 1)[-1] for f in report.failed]) == (2, ["bad.txt"])
    assert "RuntimeError" in report.failed[0].reason
    assert service.store.count_articles() == 2
    service.close()


def test_text_without_letters_or_digits_is_a_failure_not_an_article(fake_service: RagService) -> None:
    articles = [Article(id="punct", text="!?.,;: —— !!! 🙂🙂", origin="punct.txt"), Article(id="ok", text="Rail news.")]
    report = build_ingestor(fake_service).ingest_articles(articles)
    assert report.added == 1 and [f.path for f in report.failed] == ["punct.txt"]
    assert "no letters or digits" in report.failed[0].reason
