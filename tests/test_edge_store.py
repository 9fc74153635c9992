"""Qdrant Edge behind the store front (RAG_QDRANT_ENGINE=edge) against the server-semantics oracle.

The oracle is qdrant-client's local mode answering through Qdrant's query API (the same one tests/test_local_index.py
pins the in-process scorer to). Real Korean and English news, the fake embedder, the same articles written into a
local-mode store and an Edge store: dense, keyword (IDF) and fused (DBSF, weighted RRF) rankings must agree, with
and without date and source filters, before and after Edge optimises, and after articles change.
Then what an embedded store must also do: survive `kill -9` after an acknowledged write, keep answering while a
big write runs in another thread and while its index is rebuilt, and refuse a second process with the usual
message.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import pytest
import qdrant_edge

from api.uploads import ingest_uploads
from ingest.loaders import iter_documents
from ingest.pipeline import build_ingestor
from rag.config import QdrantSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.errors import CollectionNotFoundError, StoreLockedError
from rag.search.edge import EdgeOptimizeError, shard_folder
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Article, SearchFilters

from .conftest import PROJECT_ROOT, make_settings, shared_data_dir
from .store_battery import Ranking, search_battery

QUERIES = [
    "국토교통부 철도 안전 대책",
    "대통령 선거 후보",
    "federal funds rate inflation",
    "위키뉴스 기자 인터뷰",
    "economic activity labor market",
    "코로나19 확진자 방역",
    "smart city internet platform computer",
]


def _news_slice() -> list[Article]:
    root = shared_data_dir()
    paths = [root / "ko_wikinews_boddari" / "wikinews.csv", root / "fomc_statements_en" / "fomc_statements.jsonl"]
    if not all(p.exists() for p in paths):
        pytest.skip("../shared/data is not available")
    korean = [a for a in itertools.islice(iter_documents(paths[:1]), 60) if isinstance(a, Article)]
    english = [a for a in itertools.islice(iter_documents(paths[1:]), 20) if isinstance(a, Article)]
    return korean + english


def _engine_settings(folder: Path, engine: str) -> Settings:
    settings = make_settings(folder)
    # a tiny indexing threshold: optimising turns the written segment into indexed ones (HNSW, the immutable
    # keyword index), so rankings are compared on both of Edge's segment kinds
    settings.qdrant = QdrantSettings(path=folder / "qdrant", engine=engine, edge_indexing_threshold_kb=1)  # type: ignore[arg-type]
    return settings


def _ingest(settings: Settings, articles: list[Article]) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        build_ingestor(service).ingest_articles(articles)
    finally:
        service.close()


def _changed(articles: list[Article]) -> list[Article]:
    """Every fourth article rewritten shorter (old chunks deleted), every seventh dropped by the caller."""
    return [
        a.model_copy(update={"text": a.text[: max(len(a.text) // 3, 40)]}) if i % 4 == 0 else a
        for i, a in enumerate(articles)
    ]


@pytest.fixture(scope="module")
def stores(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Settings]:
    articles = _news_slice()
    out = {}
    for engine in ("local", "edge"):
        settings = _engine_settings(tmp_path_factory.mktemp(engine), engine)
        _ingest(settings, articles)
        out[engine] = settings
    return out


def test_edge_with_int8_vectors_ranks_as_the_oracle(stores: dict[str, Settings], tmp_path: Path) -> None:
    """Quantised copies find the candidates, the originals rescore them: the same rankings and exact scores,
    once optimising has built the quantised segments."""
    settings = _engine_settings(tmp_path, "edge")
    settings.qdrant = settings.qdrant.model_copy(update={"edge_quantization": "int8"})
    _ingest(settings, _news_slice())
    store = QdrantStore(settings.qdrant, settings.collection)
    try:
        store.optimize()
    finally:
        store.close()
    assert _indexed_share(settings) == 1.0
    _assert_same(_rankings(settings), _rankings(stores["local"]))


def _rankings(settings: Settings, filters: SearchFilters | None = None) -> list[Ranking]:
    service = RagService(settings, embedder=FakeEmbedder())
    # local mode through Qdrant's own query API: the oracle; Edge answers every query in its engine anyway
    store = QdrantStore(settings.qdrant, settings.collection, in_process_scoring=False)
    try:
        return search_battery(service, store, QUERIES, filters)
    finally:
        store.close()


def _assert_same(edge: list[Ranking], oracle: list[Ranking]) -> None:
    assert sum(len(ranking) for ranking in oracle) > len(oracle), "the queries found almost nothing"
    for mine, theirs in zip(edge, oracle, strict=True):
        assert [s for _, s in mine] == pytest.approx([s for _, s in theirs], abs=2e-3)
        # points with (nearly) equal scores may come in either order, and one of them may fall off the end
        if mine:
            cut = mine[-1][1] + 2e-3
            assert {pid for pid, s in mine if s > cut} == {pid for pid, s in theirs if s > cut}


def _filters(articles: list[Article]) -> list[SearchFilters]:
    dated = sorted(a.date for a in articles if a.date)
    middle = dated[len(dated) // 2]
    source = next(a.source for a in articles if a.source)
    return [
        SearchFilters(date_from=middle),
        SearchFilters(date_to=middle),
        SearchFilters(source=source),
        SearchFilters(source=source, date_from=dated[0], date_to=middle),
    ]


def test_edge_ranks_as_the_qdrant_oracle(stores: dict[str, Settings]) -> None:
    _assert_same(_rankings(stores["edge"]), _rankings(stores["local"]))


def test_keyword_coverage_of_edge_matches_the_exact_count(stores: dict[str, Settings]) -> None:
    """The share of a question's words that one chunk holds: counted exactly by local mode's in-process index,
    found among the best keyword matches by Edge (and a server)."""
    coverage = {}
    for engine, settings in stores.items():
        service = RagService(settings, embedder=FakeEmbedder())
        try:
            coverage[engine] = [
                service.store.keyword_coverage(service.sparse.word_term_ids(query))
                for query in [*QUERIES, "the Committee decided", "rate of inflation and employment", "철도 안전"]
            ]
        finally:
            service.close()
    assert coverage["edge"] == coverage["local"]
    assert any(0 < value < 1 for value in coverage["local"] if value is not None)


def test_edge_lists_the_same_sources(stores: dict[str, Settings]) -> None:
    """The chat page's source filter: local mode reads them from its index, Edge answers a facet count."""
    listed = {}
    for engine, settings in stores.items():
        store = QdrantStore(settings.qdrant, settings.collection)
        try:
            listed[engine] = store.sources()
        finally:
            store.close()
    assert listed["edge"] == listed["local"] != []


def test_edge_filters_match_the_oracle(stores: dict[str, Settings]) -> None:
    for filters in _filters(_news_slice()):
        _assert_same(_rankings(stores["edge"], filters), _rankings(stores["local"], filters))


def test_edge_ranks_as_the_oracle_after_changes_and_optimisation(stores: dict[str, Settings]) -> None:
    """Rewritten articles leave deleted points behind in Edge's segments until it optimises: keyword IDF must
    count live points only, before and after."""
    articles = _news_slice()
    changed = [a for i, a in enumerate(_changed(articles)) if i % 7 != 3]
    for settings in stores.values():
        service = RagService(settings, embedder=FakeEmbedder())
        try:
            ingestor = build_ingestor(service)
            ingestor.ingest_articles(changed)
            for dropped in articles[3::7]:
                service.store.delete_article(dropped.id)
        finally:
            service.close()
    _assert_same(_rankings(stores["edge"]), _rankings(stores["local"]))
    store = QdrantStore(stores["edge"].qdrant, stores["edge"].collection)
    try:
        store.optimize()
        assert store.count_articles() == len(changed)
    finally:
        store.close()
    # both vector names of every point indexed: the comparison below runs on indexed segments
    assert _indexed_share(stores["edge"]) == 1.0
    _assert_same(_rankings(stores["edge"]), _rankings(stores["local"]))
    _assert_same(_rankings(stores["edge"], _filters(articles)[3]), _rankings(stores["local"], _filters(articles)[3]))


def _indexed_share(settings: Settings) -> float:
    """Share of the chunk points whose dense and sparse vectors sit in indexed segments (read from the shard)."""
    shard = qdrant_edge.EdgeShard.load(str(shard_folder(settings.qdrant.path / "edge", settings.collection)))
    try:
        info = shard.info()
        return info.indexed_vectors_count / (2 * info.points_count) if info.points_count else 0.0
    finally:
        shard.close()


def test_a_second_opener_of_an_edge_store_gets_the_usual_message(tmp_path: Path) -> None:
    qdrant = QdrantSettings(path=tmp_path / "qdrant", engine="edge")
    first = QdrantStore(qdrant, "news")
    try:
        with pytest.raises(StoreLockedError, match="POST /v1/ingest"):
            QdrantStore(qdrant, "news")
        other_process = subprocess.run(
            [sys.executable, "-c", LOCK_PROBE, str(qdrant.path)],
            cwd=PROJECT_ROOT,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert other_process.stdout.strip() == "StoreLockedError", other_process.stderr
    finally:
        first.close()
    QdrantStore(qdrant, "news").close()  # released on close


LOCK_PROBE = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from rag.config import QdrantSettings
    from rag.errors import CollectionNotFoundError, StoreLockedError
    from rag.search.store import QdrantStore
    try:
        QdrantStore(QdrantSettings(path=Path(sys.argv[1]), engine="edge"), "news")
        print("opened")
    except StoreLockedError:
        print("StoreLockedError")
    """
)


# --- durability: what was acknowledged survives kill -9 ------------------------------------------------------

ACKNOWLEDGING_WRITER = textwrap.dedent(
    """
    import sys
    from pathlib import Path
    from ingest.pipeline import build_ingestor
    from rag.config import QdrantSettings, Settings
    from rag.embed.fake import FakeEmbedder
    from rag.service import RagService
    from rag.types import Article

    qdrant = QdrantSettings(path=Path(sys.argv[1]), engine="edge")
    settings = Settings(_env_file=None, collection="durable", qdrant=qdrant)
    service = RagService(settings, embedder=FakeEmbedder())
    ingestor = build_ingestor(service)
    n = 0
    while True:
        text = " ".join(f"Sentence {j} of article {n} about rail budgets and ports." for j in range(40))
        report = ingestor.ingest_articles([Article(id=f"doc{n}", title=f"Doc {n}", text=text)])
        print(n, report.chunks, flush=True)  # the acknowledgement: replace_article has returned
        n += 1
    """
)


def test_edge_keeps_every_acknowledged_article_after_kill_9(tmp_path: Path) -> None:
    store_path = tmp_path / "qdrant"
    child = subprocess.Popen(
        [sys.executable, "-c", ACKNOWLEDGING_WRITER, str(store_path)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    acknowledged: dict[str, int] = {}
    for line in child.stdout:
        number, chunks = line.split()
        acknowledged[f"doc{number}"] = int(chunks)
        if len(acknowledged) >= 60:
            os.kill(child.pid, signal.SIGKILL)  # no flush, no close: only the write-ahead log has it
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    store = QdrantStore(QdrantSettings(path=store_path, engine="edge"), "durable")
    try:
        stored = {s.article.id: s for s in store.iter_articles(with_text=True)}
        assert set(acknowledged) <= set(stored)
        # at most the one article being written when the kill came is beyond the acknowledged ones
        assert len(stored) - len(acknowledged) <= 1
        for article_id, chunks in acknowledged.items():
            assert stored[article_id].chunk_count == chunks
            assert "rail budgets" in stored[article_id].article.text
        assert store.count_chunks() >= sum(acknowledged.values())
        service = RagService(
            Settings(_env_file=None, collection="durable", qdrant=QdrantSettings(path=store_path, engine="edge")),  # type: ignore[call-arg]
            embedder=FakeEmbedder(),
            store=store,
        )
        assert service.search("Sentence 3 of article 41 about rail budgets", top_k=3)
    finally:
        store.close()


# --- reads keep being answered while a big write runs -------------------------------------------------------


def test_questions_are_answered_while_a_big_upload_is_ingested(tmp_path: Path) -> None:
    """The running app's write path: 240 files uploaded while another thread asks questions, no lock around
    either (the store's calls take turns inside it). Every question gets hits, none raises, the uploaded
    articles become findable, and nothing was optimised on the way (Edge would stall every thread meanwhile).
    Timeouts only detect a hang."""
    settings = _engine_settings(tmp_path, "edge")
    settings.api = settings.api.model_copy(update={"max_upload_files": 240})
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_articles(
        [Article(id="seed", title="항만", text="해양수산부는 항만 물류 대책을 내놓았다.")]
    )
    answers: list[int] = []
    errors: list[BaseException] = []
    writing = threading.Event()
    writing.set()

    def ask() -> None:
        while writing.is_set():
            try:
                answers.append(len(service.search("항만 물류 대책", top_k=3)))
            except BaseException as exc:  # the assertion below reports it
                errors.append(exc)
                return

    uploads = [
        (
            f"rail{i}.txt",
            io.BytesIO((f"철도 {i}\n\n" + 8 * f"국토교통부는 철도 노선 {i}호선의 안전 대책을 발표했다. ").encode()),
        )
        for i in range(240)
    ]
    reader = threading.Thread(target=ask, daemon=True)
    reader.start()
    try:
        report = ingest_uploads(service, uploads)
    finally:
        writing.clear()
        reader.join(timeout=120)
    try:
        assert not reader.is_alive(), "the reader hung"
        assert not errors, errors
        assert report.added == 240 and not report.failed
        assert len(answers) >= 5 and all(count > 0 for count in answers)
        assert "239호선" in service.search("철도 노선 239호선", top_k=1)[0].chunk.text
    finally:
        service.close()
    assert _indexed_share(settings) < 1.0  # the serving path never optimises


def test_app_start_up_indexes_what_uploads_left_unindexed(tmp_path: Path) -> None:
    """Writes never optimise (Edge would stall every thread meanwhile); warm-up at start-up does, and answers
    stay the same."""
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        build_ingestor(service).ingest_articles(
            [
                # distinct term counts and lengths: no exact score ties, whose order no Qdrant engine fixes
                Article(
                    id=f"a{i}",
                    title=f"기사 {i}",
                    text=f"{i}번째 정책 기사. " + "예산 " * (1 + i % 5) + "철도 " * (i % 7),
                )
                for i in range(50)
            ]
        )
        before = [(h.chunk.id, round(h.score, 4)) for h in service.search("정책 예산 철도", top_k=5)]
        service.store.close()  # a look at the shard from outside: nothing indexed by the writes
        assert _indexed_share(settings) < 1.0
        service.close()
        service = RagService(settings, embedder=FakeEmbedder())
        started = time.perf_counter()
        service.warm_up()
        assert time.perf_counter() - started < 600  # hang detection only
        after = [(h.chunk.id, round(h.score, 4)) for h in service.search("정책 예산 철도", top_k=5)]
        _assert_same([after], [before])
    finally:
        service.close()
    assert _indexed_share(settings) == 1.0


# --- questions are answered while the index is rebuilt beside the serving shard -------------------------------

# The optimiser's child process, held until the test says go: the test can then ask questions and write while
# the optimisation is certainly under way, without guessing how long it takes.
HELD_OPTIMIZER = textwrap.dedent(
    """
    import pathlib, runpy, sys, time
    started, go, shard = (pathlib.Path(arg) for arg in sys.argv[1:])
    started.touch()
    while not go.exists():
        time.sleep(0.02)
    sys.argv = [sys.argv[0], str(shard)]
    runpy.run_module("rag.search.edge_optimize", run_name="__main__")
    """
)


def _policy_articles(count: int, start: int = 0) -> list[Article]:
    # distinct term counts and lengths: no exact score ties, whose order no Qdrant engine fixes
    return [
        Article(id=f"a{i}", title=f"기사 {i}", text=f"{i}번째 정책 기사. " + "예산 " * (1 + i % 5) + "철도 " * (i % 7))
        for i in range(start, start + count)
    ]


def _start_held_optimisation(store: QdrantStore, tmp_path: Path) -> tuple[threading.Thread, list[BaseException], Path]:
    """An optimisation beside the serving shard on a thread of its own, its child held until the returned path
    exists; returns once the child runs (the copy is made). Errors the optimisation raises are collected."""
    started, go = tmp_path / "started", tmp_path / "go"
    held = [sys.executable, "-c", HELD_OPTIMIZER, str(started), str(go)]
    errors: list[BaseException] = []

    def optimise() -> None:
        try:
            store.optimize(while_serving=True, optimizer=held)
        except BaseException as exc:  # the test's assertions report it
            errors.append(exc)

    optimiser = threading.Thread(target=optimise, daemon=True)
    optimiser.start()
    deadline = time.monotonic() + 300  # hang detection only
    while not started.exists():
        assert optimiser.is_alive(), "the optimisation ended before its child started"
        assert time.monotonic() < deadline, "the optimiser child never started"
        time.sleep(0.02)
    return optimiser, errors, go


def _copies_left(edge_folder: Path) -> list[str]:
    return [p.name for p in edge_folder.iterdir() if "@" in p.name]


def test_questions_and_writes_go_on_while_edge_optimises_beside(tmp_path: Path) -> None:
    """While a child process optimises a copy of the shard, this process answers every question (the old code
    optimised in process, GIL held, and answered none) and takes writes; the copy then takes over with those
    writes replayed, fully indexed, ranking as before, and the old shard folder is gone."""
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        build_ingestor(service).ingest_articles(_policy_articles(50))
        serving_folder = shard_folder(settings.qdrant.path / "edge", settings.collection)
        optimiser, errors, go = _start_held_optimisation(service.store, tmp_path)
        answered = [len(service.search("정책 예산 철도", top_k=5)) for _ in range(20)]
        build_ingestor(service).ingest_articles(
            [Article(id="late", title="항만", text="해양수산부는 항만 물류 대책을 내놓았다.")]
        )
        # answered by the serving shard, the late article's terms counted (keyword IDF, DBSF)
        before = [(h.chunk.id, round(h.score, 4)) for h in service.search("정책 예산 철도", top_k=5)]
        assert optimiser.is_alive()  # all of the above happened during the optimisation
        assert answered == [5] * 20
        go.touch()
        optimiser.join(timeout=300)
        assert not optimiser.is_alive() and not errors, errors
        after = [(h.chunk.id, round(h.score, 4)) for h in service.search("정책 예산 철도", top_k=5)]
        _assert_same([after], [before])
        assert service.search("항만 물류", top_k=1)[0].chunk.article_id == "late"  # the replayed write
        assert service.store.count_articles() == 51
        assert service.store.unindexed_chunks() == 1  # only the late write, replayed, waits for the next round
    finally:
        service.close()
    assert not serving_folder.exists()
    assert shard_folder(settings.qdrant.path / "edge", settings.collection) != serving_folder
    reopened = RagService(settings, embedder=FakeEmbedder())  # the swap holds after a restart
    try:
        assert reopened.store.count_articles() == 51
        assert reopened.search("항만 물류", top_k=1)[0].chunk.article_id == "late"
    finally:
        reopened.close()


def test_a_failed_optimisation_beside_leaves_the_serving_shard_as_it_was(tmp_path: Path) -> None:
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        build_ingestor(service).ingest_articles(_policy_articles(20))
        edge_folder = settings.qdrant.path / "edge"
        failing = [sys.executable, "-c", "import sys; sys.exit('out of memory, say')"]
        with pytest.raises(EdgeOptimizeError, match="out of memory, say"):
            service.store.optimize(while_serving=True, optimizer=failing)
        assert shard_folder(edge_folder, settings.collection) == edge_folder / settings.collection
        assert _copies_left(edge_folder) == []
        assert service.store.count_articles() == 20
        build_ingestor(service).ingest_articles(_policy_articles(1, start=20))  # writes work as before
        assert service.store.count_articles() == 21
    finally:
        service.close()


def test_closing_the_store_stops_an_optimisation_beside_it(tmp_path: Path) -> None:
    """The app shutting down does not wait minutes for an index nobody will use: the child is stopped, its copy
    removed, and the shard is as it was."""
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_articles(_policy_articles(20))
    optimiser, errors, _ = _start_held_optimisation(service.store, tmp_path)  # never let go
    service.close()
    optimiser.join(timeout=300)
    assert not optimiser.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], EdgeOptimizeError)
    assert _copies_left(settings.qdrant.path / "edge") == []
    with QdrantStore(settings.qdrant, settings.collection) as store:
        assert store.count_articles() == 20


def test_a_collection_dropped_during_an_optimisation_beside_stays_dropped(tmp_path: Path) -> None:
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    store = service.store
    try:
        build_ingestor(service).ingest_articles(_policy_articles(20))
        optimiser, errors, go = _start_held_optimisation(store, tmp_path)
        store.drop()
        go.touch()
        optimiser.join(timeout=300)
        assert not optimiser.is_alive()
        assert len(errors) == 1 and isinstance(errors[0], EdgeOptimizeError), errors
        assert not store.exists()
        assert _copies_left(settings.qdrant.path / "edge") == []
    finally:
        service.close()


def test_what_an_interrupted_swap_left_is_removed_at_open(tmp_path: Path) -> None:
    """Killed mid-optimisation: the copy is left (the pointer still names the old shard); killed after the
    pointer was written: the old folder is left. Either is removed when the store opens, and nothing is lost."""
    settings = _engine_settings(tmp_path, "edge")
    _ingest(settings, _policy_articles(20))
    edge_folder = settings.qdrant.path / "edge"
    shutil.copytree(edge_folder / settings.collection, edge_folder / f"{settings.collection}@cut-short")
    with QdrantStore(settings.qdrant, settings.collection) as store:
        assert store.count_articles() == 20
        store.optimize(while_serving=True)
    assert sorted(p.name for p in edge_folder.iterdir() if p.is_dir() and p.name.startswith(settings.collection + "@"))
    current = shard_folder(edge_folder, settings.collection)
    shutil.copytree(current, edge_folder / settings.collection)  # the old folder, as if its removal never came
    with QdrantStore(settings.qdrant, settings.collection) as store:
        assert store.count_articles() == 20
        articles_folder = shard_folder(edge_folder, store.articles_collection)
    left = sorted(p.name for p in edge_folder.iterdir() if p.is_dir())
    assert left == sorted([current.name, articles_folder.name])


def test_uploads_to_the_running_app_are_indexed_in_the_background(tmp_path: Path) -> None:
    """`index_soon` after an upload: once enough chunks wait, a child process indexes them; questions are
    answered throughout, and answers stay the same."""
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        build_ingestor(service).ingest_articles(_policy_articles(40))
        before = [(h.chunk.id, round(h.score, 4)) for h in service.search("정책 예산 철도", top_k=5)]
        waiting = service.store.unindexed_chunks()
        assert waiting > 0
        service.store.indexer.threshold = lambda: waiting + 1
        service.store.index_soon()  # too few wait: nothing runs
        assert service.store.indexer.wait(timeout=300) and service.store.indexer.rounds == 0
        service.store.indexer.threshold = lambda: waiting
        service.store.index_soon()
        assert service.store.indexer.wait(timeout=300), "the background indexing hung"
        assert service.store.indexer.rounds == 1
        assert service.store.unindexed_chunks() == 0
        after = [(h.chunk.id, round(h.score, 4)) for h in service.search("정책 예산 철도", top_k=5)]
        _assert_same([after], [before])
    finally:
        service.close()
    assert _indexed_share(settings) == 1.0


def test_background_indexing_waits_for_enough_chunks_to_pass_the_indexing_threshold(tmp_path: Path) -> None:
    """Edge leaves a segment under its indexing threshold brute-force whatever optimising does, so the app does
    not copy the shard for fewer chunks than the threshold holds: 10,000 KB of float32 vectors by default."""
    for threshold_kb, expected in ((None, math.ceil(10_000 * 1024 / (4 * FakeEmbedder().dimension))), (1, 4)):
        settings = make_settings(tmp_path / f"t{threshold_kb}")
        settings.qdrant = QdrantSettings(
            path=tmp_path / f"t{threshold_kb}" / "qdrant", engine="edge", edge_indexing_threshold_kb=threshold_kb
        )
        _ingest(settings, _policy_articles(3))
        with QdrantStore(settings.qdrant, settings.collection) as store:
            assert store.indexer.threshold() == expected


def test_a_long_write_indexes_along_the_way(tmp_path: Path) -> None:
    """Edge keeps unindexed points in memory: a batch writer optimises every N chunks, so at most N wait."""
    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        service.store.optimize_while_writing(10)
        build_ingestor(service).ingest_articles(_policy_articles(35))  # one chunk each
        assert service.store.count_chunks() == 35
        assert service.store.unindexed_chunks() == 5  # indexed at 10, 20 and 30
        service.store.optimize_while_writing(None)
        build_ingestor(service).ingest_articles(_policy_articles(12, start=35))
        assert service.store.unindexed_chunks() == 17
    finally:
        service.close()


def test_python_m_ingest_indexes_every_so_many_chunks(tmp_path: Path) -> None:
    folder = tmp_path / "articles"
    folder.mkdir()
    for article in _policy_articles(35):
        (folder / f"{article.id}.txt").write_text(f"{article.title}\n\n{article.text}", encoding="utf-8")
    env = os.environ | {
        "RAG_QDRANT_PATH": str(tmp_path / "qdrant"),
        "RAG_QDRANT_ENGINE": "edge",
        "RAG_QDRANT_EDGE_INDEXING_THRESHOLD_KB": "1",
        "RAG_QDRANT_EDGE_OPTIMIZE_EVERY_CHUNKS": "10",
        "RAG_MODELS_EMBEDDING": "fake",
        "RAG_LOG_LEVEL": "INFO",
    }
    done = subprocess.run(
        [sys.executable, "-m", "ingest", str(folder)],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr
    assert done.stderr.count("indexed collection") == 4, done.stderr  # at 10, 20, 30 chunks, and at the end


def test_an_upload_to_the_app_gets_indexed_beside_it(tmp_path: Path) -> None:
    """POST /v1/ingest on an Edge store: the report comes back at once, and the chunks it wrote are indexed
    in the background once they pass the collection's indexing threshold (1 KB here)."""
    from fastapi.testclient import TestClient

    from api.factory import create_app

    settings = _engine_settings(tmp_path, "edge")
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        build_ingestor(service).ingest_articles(_policy_articles(10))
        service.store.optimize()
        assert service.store.unindexed_chunks() == 0
        with TestClient(create_app(service, with_ui=False)) as client:
            # enough chunks to pass Edge's indexing threshold (below it, a segment stays brute-force)
            files = [
                (
                    "files",
                    (f"rail{i}.txt", f"철도 {i}\n\n국토교통부는 철도 {i}호선 안전 강화 대책을 발표했다.".encode()),
                )
                for i in range(12)
            ]
            response = client.post("/v1/ingest", files=files)
            assert response.status_code == 200, response.text
            assert service.store.indexer.wait(timeout=300), "the background indexing hung"
            assert service.store.indexer.rounds == 1
            assert service.store.unindexed_chunks() == 0
            hits = client.post("/v1/search", json={"query": "철도 안전 강화 대책"}).json()["hits"]
            assert any("안전 강화" in hit["text"] for hit in hits)
    finally:
        service.close()


def test_reading_a_missing_collection_fails_alike_in_both_engines(tmp_path: Path) -> None:
    """The store's callers rely on local mode's ValueError for a collection that is not there; Edge's own
    error ("Service runtime error: cannot load edge shard") was another type."""
    for engine in ("local", "edge"):
        with QdrantStore(QdrantSettings(path=tmp_path / engine, engine=engine), "nothing") as store:  # type: ignore[arg-type]
            for read in (store.count_chunks, lambda: store.get_article("x"), lambda: list(store.iter_articles())):
                with pytest.raises(ValueError, match="not found"):
                    read()


def test_dates_filter_the_same_in_both_engines(tmp_path: Path) -> None:
    articles = [
        Article(id=f"d{i}", title="철도", text=f"철도 안전 대책 {i}", date=dt.date(2024, 1, 1) + dt.timedelta(days=i))
        for i in range(10)
    ] + [Article(id="undated", title="철도", text="철도 안전 대책 날짜 없음")]
    found = {}
    for engine in ("local", "edge"):
        settings = _engine_settings(tmp_path / engine, engine)
        service = RagService(settings, embedder=FakeEmbedder())
        try:
            build_ingestor(service).ingest_articles(articles)
            window = SearchFilters(date_from=dt.date(2024, 1, 3), date_to=dt.date(2024, 1, 5))
            found[engine] = {h.chunk.article_id for h in service.search("철도 안전", top_k=20, filters=window)}
        finally:
            service.close()
    assert found["edge"] == found["local"] == {"d2", "d3", "d4"}


def test_a_collection_of_the_other_engine_is_named_when_this_one_has_none(tmp_path: Path) -> None:
    local = _engine_settings(tmp_path, "local")
    _ingest(local, [Article(id="a", title="철도", text="국토교통부는 철도 안전 대책을 발표했다.")])
    edge = _engine_settings(tmp_path, "edge")
    service = RagService(edge, embedder=FakeEmbedder())
    try:
        with pytest.raises(CollectionNotFoundError, match="RAG_QDRANT_ENGINE=local"):
            service.search("철도")
    finally:
        service.close()


def test_a_local_collection_copied_into_edge_ranks_the_same(stores: dict[str, Settings], tmp_path: Path) -> None:
    """`python -m rag copy-collection --to-engine edge`: vectors and payloads as stored, no embedding again."""
    local = stores["local"]
    source = QdrantSettings(path=tmp_path / "qdrant")
    shutil.copytree(local.qdrant.path, source.path)  # the module's store stays as it is
    copied = local.model_copy(update={"qdrant": source})
    result = subprocess.run(
        [sys.executable, "-m", "rag", "copy-collection", "--to-engine", "edge", "--json"],
        cwd=PROJECT_ROOT,
        env={
            **{k: v for k, v in os.environ.items() if not k.startswith("RAG_")},
            "RAG_QDRANT_PATH": str(source.path),
            "RAG_COLLECTION": local.collection,
        },
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    edge = copied.model_copy(update={"qdrant": source.model_copy(update={"engine": "edge"})})
    with QdrantStore(edge.qdrant, edge.collection) as store:
        assert (store.count_chunks(), store.count_articles()) == (summary["chunks"], summary["articles"])
        assert store.stored_fingerprint() is not None
    _assert_same(_rankings(edge), _rankings(copied))
    again = subprocess.run(
        [sys.executable, "-m", "rag", "copy-collection", "--to-engine", "local"],
        cwd=PROJECT_ROOT,
        env={**os.environ, "RAG_QDRANT_PATH": str(source.path), "RAG_COLLECTION": local.collection},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert again.returncode == 2 and "configured store itself" in again.stderr
