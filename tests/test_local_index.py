"""The embedded store's in-process scoring must rank exactly as Qdrant's own query API does.

Real Korean and English news (a slice of ../shared/data), the fake embedder, real Qdrant local mode: the
same queries go once through rag/search/in_process_index.py and once through qdrant-client's query API on the same
collection, and the rankings and scores are compared.
"""

from __future__ import annotations

import datetime as dt
import itertools
from pathlib import Path

import numpy as np
import pytest

from ingest.loaders import iter_documents
from ingest.pipeline import build_ingestor
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.search.in_process_index import IndexedPoint, InProcessIndex
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Article, SearchFilters
from tests.conftest import shared_data_dir
from tests.store_battery import Ranking, search_battery

QUERIES = [
    "국토교통부 철도 안전 대책",
    "대통령 선거 후보",
    "federal funds rate inflation",
    "위키뉴스 기자 인터뷰",
    "economic activity labor market",
    "코로나19 확진자 방역",
    "smart city internet platform computer",  # sound keys meet Korean loanwords
]


def _news_slice() -> list[Article]:
    root = shared_data_dir()
    paths = [root / "ko_wikinews_boddari" / "wikinews.csv", root / "fomc_statements_en" / "fomc_statements.jsonl"]
    if not all(p.exists() for p in paths):
        pytest.skip("../shared/data is not available")
    korean = [a for a in itertools.islice(iter_documents(paths[:1]), 60) if isinstance(a, Article)]
    english = [a for a in itertools.islice(iter_documents(paths[1:]), 20) if isinstance(a, Article)]
    return korean + english


@pytest.fixture(scope="module")
def ingested(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[Article]]:
    from tests.conftest import make_settings

    settings = make_settings(tmp_path_factory.mktemp("parity"))
    articles = _news_slice()
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_articles(articles)
    service.close()
    return settings, articles


def _rankings(settings: Settings, in_process: bool, filters: SearchFilters | None = None) -> list[Ranking]:
    service = RagService(settings, embedder=FakeEmbedder())
    store = QdrantStore(settings.qdrant, settings.collection, in_process_scoring=in_process)
    try:
        return search_battery(service, store, QUERIES, filters)
    finally:
        store.close()


def _assert_same(ours: list[list[tuple[str, float]]], qdrant: list[list[tuple[str, float]]]) -> None:
    assert any(ranking for ranking in qdrant), "the queries found nothing at all: the comparison would be empty"
    for mine, theirs in zip(ours, qdrant, strict=True):
        assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], abs=2e-3)
        # points with (nearly) equal scores may come in either order, and one of them may fall off the end
        if mine:
            cut = mine[-1][1] + 2e-3
            assert {pid for pid, s in mine if s > cut} == {pid for pid, s in theirs if s > cut}


def test_in_process_scoring_ranks_as_qdrant_does(ingested: tuple[Settings, list[Article]]) -> None:
    settings, _ = ingested
    _assert_same(_rankings(settings, in_process=True), _rankings(settings, in_process=False))


def test_in_process_filters_match_qdrant_filters(ingested: tuple[Settings, list[Article]]) -> None:
    settings, articles = ingested
    dated = sorted(a.date for a in articles if a.date)
    middle = dated[len(dated) // 2]
    source = next(a.source for a in articles if a.source)
    for filters in (
        SearchFilters(date_from=middle),
        SearchFilters(date_to=middle),
        SearchFilters(source=source),
        SearchFilters(source=source, date_from=dated[0], date_to=middle),
    ):
        ours = _rankings(settings, in_process=True, filters=filters)
        _assert_same(ours, _rankings(settings, in_process=False, filters=filters))


def test_index_sees_articles_written_after_it_was_built(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        ingestor = build_ingestor(service)
        ingestor.ingest_articles([Article(id="a", title="철도", text="국토교통부는 철도 안전 대책을 발표했다.")])
        assert service.search("철도 안전")[0].chunk.article_id == "a"  # builds the index
        ingestor.ingest_articles([Article(id="b", title="항만", text="해양수산부는 항만 물류 대책을 내놓았다.")])
        assert service.search("항만 물류")[0].chunk.article_id == "b"
        service.store.delete_article("b")
        assert all(hit.chunk.article_id != "b" for hit in service.search("항만 물류"))
    finally:
        service.close()


def _point(pid: str, terms: dict[int, float], day: dt.date | None = None, source: str | None = None) -> IndexedPoint:
    return IndexedPoint(
        id=pid,
        dense=np.ones(4, dtype=np.float32),
        sparse_indices=list(terms),
        sparse_values=list(terms.values()),
        source=source,
        date=day,
    )


def test_bm25_idf_and_matching_by_hand() -> None:
    index = InProcessIndex(
        [_point("a", {1: 1.0, 2: 2.0}), _point("b", {1: 1.0}), _point("c", {3: 1.0}), _point("d", {})], 4
    )
    idf_1 = np.log((4 - 2 + 0.5) / (2 + 0.5) + 1)  # term 1 is in two of four points
    idf_2 = np.log((4 - 1 + 0.5) / (1 + 0.5) + 1)
    ranked = dict(index.sparse_top([1, 2], [1.0, 1.0], limit=10))
    assert set(ranked) == {"a", "b"}  # c and d share no term with the query: not matches
    assert ranked["a"] == pytest.approx(idf_1 + 2 * idf_2, rel=1e-5)
    assert ranked["b"] == pytest.approx(idf_1, rel=1e-5)
    assert index.sparse_top([99], [1.0], limit=10) == []
    assert index.term_coverage([1, 2, 99, 98]) == 0.5  # a holds both known terms
    assert index.term_coverage([2, 3]) == 0.5  # each known, but no point holds both
    assert index.term_coverage([99]) == 0.0


def test_mask_excludes_undated_points_from_date_ranges() -> None:
    index = InProcessIndex(
        [
            _point("old", {1: 1.0}, dt.date(2020, 1, 1), "x"),
            _point("new", {1: 1.0}, dt.date(2024, 1, 1), "y"),
            _point("undated", {1: 1.0}),
        ],
        4,
    )
    after = index.mask(SearchFilters(date_from=dt.date(2021, 1, 1)))
    assert after is not None and [index.ids[i] for i in np.flatnonzero(after)] == ["new"]
    by_source = index.mask(SearchFilters(source="x"))
    assert by_source is not None and [index.ids[i] for i in np.flatnonzero(by_source)] == ["old"]
    assert index.mask(SearchFilters()) is None
    assert [pid for pid, _ in index.sparse_top([1], [1.0], 10, after)] == ["new"]


def test_empty_index_answers_nothing(tmp_path: Path) -> None:
    index = InProcessIndex([], 4)
    assert index.dense_top(np.ones(4, dtype=np.float32), 5) == []
    assert index.sparse_top([1], [1.0], 5) == []


@pytest.mark.parametrize(
    ("weights", "listings"),
    [((1, 2), [1, 2]), ((1, 0.5), [2, 1]), ((1, 0.75), [4, 3]), ((1, 0.5, 0.5), [2, 1, 1]), ((1, 0.1), [8, 1])],
)
def test_dbsf_weights_become_listings_in_proportion(weights: tuple[float, ...], listings: list[int]) -> None:
    from rag.search.store import _repeats

    assert [_repeats("dbsf", w, weights) for w in weights] == listings
    assert [_repeats("rrf", w, weights) for w in weights] == [1] * len(weights)  # RRF takes real weights
