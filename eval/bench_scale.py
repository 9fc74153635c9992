"""`python -m eval bench-scale`: the embedded engines on synthetic collections of 10k, 100k and 1M chunks.

What a collection holds: real Korean chunks (text, keyword terms, title, date, source) from the shared news
corpora (Korean Wikinews and korea.kr press releases, chunked and analysed as `python -m ingest` does), resampled
whole article by whole article under new ids, with random unit vectors of the embedding model's dimension in
place of the model's (embedding a million chunks would take days on 2 cores; the engines do not care what the
vectors mean). Questions: KorQuAD questions' keyword terms and random unit vectors, searched as the app does
(dense + keyword side at weight 2, DBSF, 40 candidates a side), with and without a date filter.

Each engine and size runs in processes of its own, so that one store's memory does not pollute the next:
- write: the store's real write path (`replace_article`, article by article: chunks, stale chunks deleted,
  the article record last), then Edge's optimisation (HNSW and keyword index) as the serving app runs it (a child
  process optimises a copy that then takes over) and closing (flush); meanwhile a thread keeps asking
  questions, and how many were answered and the longest wait for one are recorded;
- open and query: a fresh process opens the store and makes it ready for the first question (`warm_up`: local
  mode loads every point and builds the in-process index), then asks the questions; memory is the peak resident
  set of that process (Linux /proc; mapped files included). Then it closes the store and opens it again: the
  first open reads from disk what the write phase left, the second finds the file cache warm.

A run that passes the time budget (`--max-write-minutes`) or memory cap (`--max-memory-gb`) is stopped, and
the table says how far it got; larger sizes of that engine are then not attempted.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import itertools
import json
import logging
import multiprocessing
import os
import queue
import random
import shutil
import tempfile
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from eval import metrics as m
from eval.datasets import load_squad, sample_questions
from eval.report import fmt, format_table
from eval.runner import file_digest, load_average
from ingest.chunking import CHUNKER_VERSION, ChunkingPlan, chunk_article, embedding_text
from ingest.loaders import iter_documents
from rag.config import QdrantSettings, Settings
from rag.embed.base import Embedder
from rag.search.sparse import SparseEncoder, SparseVector
from rag.search.store import CollectionSpec, QdrantStore
from rag.service import RagService
from rag.text.analyzer import ANALYZER_VERSION
from rag.types import Article, Chunk, SearchFilters, Span

logger = logging.getLogger(__name__)

SIZES = (10_000, 100_000, 1_000_000)
ENGINES = ("local", "edge")  # and "edge-int8": Edge with RAG_QDRANT_EDGE_QUANTIZATION=int8
POOL_SOURCES = ("ko_wikinews_boddari/wikinews.csv", "korea_kr_press_releases_2026_07/press_releases.jsonl")
KORQUAD = "korquad_v1_dev/KorQuAD_v1.0_dev.json"
COLLECTION = "scale"
SEED = 0
QUERIES = 200
WARMUP_QUERIES = 10
# as the app searches (RetrievalSettings defaults): 20 hits fused from 40 candidates a side, keyword side at 2
LIMIT, CANDIDATES, KEYWORD_WEIGHT = 20, 40, 2.0
DATE_SHARE = 0.1  # the date filter keeps about the newest tenth of the chunks
PROGRESS_EVERY_S = 2.0
POLL_S = 0.5


@dataclass(frozen=True)
class PoolArticle:
    """One real article as it would be stored: text, metadata, chunk spans and their keyword terms."""

    title: str | None
    text: str
    date: str | None
    source: str | None
    url: str | None
    chunks: list[dict[str, Any]]  # index, start, end, text, sentences, terms (indices), weights (values)


@dataclass
class RunLimits:
    max_write_s: float
    max_memory_bytes: int
    queries: int = QUERIES


@dataclass
class ScaleRow:
    engine: str
    size: int
    written: int = 0
    write_s: float | None = None
    optimize_s: float | None = None
    close_s: float | None = None
    longest_wait_while_optimizing_s: float | None = None
    answered_while_optimizing: int | None = None
    write_peak_rss_mb: float | None = None
    open_s: float | None = None
    reopen_s: float | None = None
    rss_mb: float | None = None
    peak_rss_mb: float | None = None
    hybrid_ms: dict[str, float] = field(default_factory=dict)
    date_filtered_ms: dict[str, float] = field(default_factory=dict)
    stopped: str | None = None
    # 1-minute load average of the machine when the run started and ended: other work inflates the timings
    load: list[float | None] = field(default_factory=list)

    @property
    def write_rate(self) -> float | None:
        return self.written / self.write_s if self.write_s else None


# --- the pool of real chunks -----------------------------------------------------------------------------


def load_pool(settings: Settings, data_dir: Path, cache_dir: Path, embedder: Embedder) -> list[PoolArticle]:
    """The real articles, chunked with the model's tokenizer and analysed by kiwi; cached by content and
    settings (a minute or two of kiwi on 2 cores)."""
    paths = [data_dir / source for source in POOL_SOURCES]
    chunking = settings.chunking
    key = hashlib.sha256(
        "|".join(
            [
                file_digest(paths),
                embedder.model_id,
                f"{chunking.max_tokens}/{chunking.overlap_sentences}",
                CHUNKER_VERSION,
                ANALYZER_VERSION,
            ]
        ).encode()
    ).hexdigest()[:16]
    cached = cache_dir / f"scale-pool-{key}.json"
    if cached.is_file():
        return [PoolArticle(**item) for item in json.loads(cached.read_text(encoding="utf-8"))]
    plan = ChunkingPlan(max_tokens=chunking.max_tokens, overlap_sentences=chunking.overlap_sentences)
    sparse = SparseEncoder()
    pool: list[PoolArticle] = []
    for item in iter_documents(paths):
        if not isinstance(item, Article):
            continue
        chunks = chunk_article(item, embedder.count_tokens, plan)
        if not chunks:
            continue
        vectors = sparse.encode_article([embedding_text(chunk) for chunk in chunks])
        pool.append(_pool_article(item, chunks, vectors))
    cache_dir.mkdir(parents=True, exist_ok=True)
    cached.write_text(json.dumps([asdict(a) for a in pool], ensure_ascii=False), encoding="utf-8")
    logger.info("chunk pool: %d articles, %d chunks", len(pool), sum(len(a.chunks) for a in pool))
    return pool


def _pool_article(article: Article, chunks: list[Chunk], vectors: list[SparseVector]) -> PoolArticle:
    return PoolArticle(
        title=article.title,
        text=article.text,
        date=article.date.isoformat() if article.date else None,
        source=article.source,
        url=article.url,
        chunks=[
            {
                "index": chunk.index,
                "start": chunk.start,
                "end": chunk.end,
                "text": chunk.text,
                "sentences": [[s.start, s.end] for s in chunk.sentences],
                "terms": list(vector.indices),
                "weights": list(vector.values),
            }
            for chunk, vector in zip(chunks, vectors, strict=True)
        ],
    )


def synthetic_articles(
    pool: Sequence[PoolArticle], size: int, dimension: int, seed: int = SEED
) -> Iterator[tuple[Article, list[Chunk], np.ndarray, list[SparseVector]]]:
    """`size` chunks: pool articles drawn at random (the last one cut to fit), each under a new id, with random
    unit vectors. The same arguments give the same collection."""
    rng = np.random.default_rng(seed)
    written = 0
    number = 0
    while written < size:
        source = pool[int(rng.integers(len(pool)))]
        pieces = source.chunks[: size - written]
        article_id = f"scale-{number}"
        day = dt.date.fromisoformat(source.date) if source.date else None
        article = Article(
            id=article_id, title=source.title, text=source.text, date=day, url=source.url, source=source.source
        )
        chunks = [
            Chunk(
                article_id=article_id,
                index=piece["index"],
                text=piece["text"],
                start=piece["start"],
                end=piece["end"],
                sentences=[Span(start=s, end=e) for s, e in piece["sentences"]],
                title=source.title,
                date=day,
                url=source.url,
                source=source.source,
            )
            for piece in pieces
        ]
        dense = _unit_vectors(rng, len(chunks), dimension)
        sparse = [SparseVector(indices=piece["terms"], values=piece["weights"]) for piece in pieces]
        yield article, chunks, dense, sparse
        written += len(chunks)
        number += 1


def _unit_vectors(rng: np.random.Generator, count: int, dimension: int) -> np.ndarray:
    vectors = rng.standard_normal((count, dimension)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def date_filter_from(pool: Sequence[PoolArticle]) -> tuple[SearchFilters, float]:
    """A date range holding about the newest DATE_SHARE of the pool's chunks, and the share it holds."""
    days = sorted(dt.date.fromisoformat(a.date) for a in pool for _ in a.chunks if a.date)
    total = sum(len(a.chunks) for a in pool)
    start = days[int(len(days) * (1 - DATE_SHARE))]
    held = sum(1 for day in days if day >= start)
    return SearchFilters(date_from=start), held / total


# --- the two phases, each in a process of its own ----------------------------------------------------------


@dataclass(frozen=True)
class PhaseJob:
    engine: str
    size: int
    folder: str
    pool_file: str
    dimension: int
    max_write_s: float
    queries: list[tuple[list[int], list[float]]] = field(default_factory=list)
    date_from: str | None = None


def _store_settings(engine: str, folder: str) -> QdrantSettings:
    """`edge-int8` is Edge with RAG_QDRANT_EDGE_QUANTIZATION=int8."""
    if engine == "edge-int8":
        return QdrantSettings(path=Path(folder), engine="edge", edge_quantization="int8")
    return QdrantSettings(path=Path(folder), engine=engine)


def _spec(dimension: int) -> CollectionSpec:
    return CollectionSpec(dimension=dimension, fingerprint=f"bench-scale|dim={dimension}")


def write_phase(job: PhaseJob, messages: Any) -> None:
    """Child process: write `job.size` chunks through the store, optimise, close; progress and result to
    `messages`."""
    pool = [PoolArticle(**item) for item in json.loads(Path(job.pool_file).read_text(encoding="utf-8"))]
    store = QdrantStore(_store_settings(job.engine, job.folder), COLLECTION)
    store.ensure_collection(_spec(job.dimension))
    store.optimize_while_writing(store.settings.edge_optimize_every_chunks)  # as `python -m ingest` does
    started = time.perf_counter()
    last_report = started
    written = 0
    stopped = None
    for article, chunks, dense, sparse in synthetic_articles(pool, job.size, job.dimension):
        store.replace_article(article, "bench", chunks, dense, sparse)
        written += len(chunks)
        now = time.perf_counter()
        if now - last_report >= PROGRESS_EVERY_S:
            messages.put(("progress", {"written": written, "seconds": now - started}))
            last_report = now
            if now - started > job.max_write_s:
                stopped = f"time budget: {written:,} of {job.size:,} chunks written in {now - started:.0f} s"
                break
    result: dict[str, Any] = {"written": written, "write_s": time.perf_counter() - started, "stopped": stopped}
    if stopped is None:
        result.update(_optimize_with_a_reader(store, job.dimension))
        closing = time.perf_counter()
        store.close()
        result["close_s"] = time.perf_counter() - closing
    result["write_peak_rss_mb"] = _memory_mb("VmHWM")
    messages.put(("done", result))


def _optimize_with_a_reader(store: QdrantStore, dimension: int) -> dict[str, Any]:
    """Optimise as the serving app does (beside the serving shard) while another thread asks questions: how
    many were answered meanwhile, and how long did one wait at most?"""
    rng = np.random.default_rng(SEED + 1)
    answered: list[float] = []
    running = threading.Event()
    running.set()

    def ask() -> None:
        while running.is_set():
            store.search_dense(_unit_vectors(rng, 1, dimension)[0], limit=LIMIT)
            answered.append(time.perf_counter())

    reader = threading.Thread(target=ask, daemon=True)
    started = time.perf_counter()
    reader.start()
    store.optimize(while_serving=True)
    ended = time.perf_counter()
    running.clear()
    reader.join(timeout=600)
    during = [t for t in answered if t <= ended]
    moments = [started, *during, ended]
    return {
        "optimize_s": ended - started,
        "answered_while_optimizing": len(during),
        "longest_wait_while_optimizing_s": max(b - a for a, b in itertools.pairwise(moments)),
    }


def query_phase(job: PhaseJob, messages: Any) -> None:
    """Child process: open the store until it can answer, then time the questions."""
    started = time.perf_counter()
    store = QdrantStore(_store_settings(job.engine, job.folder), COLLECTION)
    store.warm_up()
    rng = np.random.default_rng(SEED + 2)
    dense = _unit_vectors(rng, len(job.queries), job.dimension)
    sparse = [SparseVector(indices=terms, values=weights) for terms, weights in job.queries]
    store.search(dense[0], [(sparse[0], KEYWORD_WEIGHT)], limit=LIMIT, candidates=CANDIDATES)
    result: dict[str, Any] = {"open_s": time.perf_counter() - started, "chunks": store.count_chunks()}
    result["rss_open_mb"] = _memory_mb("VmRSS")
    date_filter = SearchFilters(date_from=dt.date.fromisoformat(job.date_from)) if job.date_from else None
    for name, filters in (("hybrid_ms", None), ("date_filtered_ms", date_filter)):
        timings = []
        for i in range(len(job.queries)):
            began = time.perf_counter()
            store.search(dense[i], [(sparse[i], KEYWORD_WEIGHT)], limit=LIMIT, candidates=CANDIDATES, filters=filters)
            timings.append((time.perf_counter() - began) * 1000)
        summary = m.latency_summary(timings[WARMUP_QUERIES:])
        result[name] = {"p50": summary["p50"], "p95": summary["p95"]}
    result["rss_mb"] = _memory_mb("VmRSS")
    result["peak_rss_mb"] = _memory_mb("VmHWM")
    store.close()
    # the first open read the store from disk (a restart after a reboot); opening again finds the operating
    # system's file cache warm (a restart of the app alone)
    started = time.perf_counter()
    store = QdrantStore(_store_settings(job.engine, job.folder), COLLECTION)
    store.warm_up()
    store.search(dense[0], [(sparse[0], KEYWORD_WEIGHT)], limit=LIMIT, candidates=CANDIDATES)
    result["reopen_s"] = time.perf_counter() - started
    store.close()
    messages.put(("done", result))


def _memory_mb(field_name: str, pid: int | None = None) -> float | None:
    """A field of /proc/PID/status in megabytes (VmRSS: resident now, VmHWM: peak); None off Linux."""
    try:
        text = Path(f"/proc/{pid or 'self'}/status").read_text(encoding="utf-8")
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith(field_name + ":"):
            return round(int(line.split()[1]) / 1024, 1)
    return None


# --- the parent: one process per phase, watched ------------------------------------------------------------


def _run_phase(target: Any, job: PhaseJob, limits: RunLimits, timeout_s: float) -> tuple[dict[str, Any], str | None]:
    """Run `target(job, queue)` in a fresh process; stop it past the memory cap or `timeout_s`. Returns its
    result (or its last progress) and why it was stopped, if it was."""
    context = multiprocessing.get_context("spawn")
    messages = context.Queue()
    process = context.Process(target=target, args=(job, messages), daemon=True)
    process.start()
    last: dict[str, Any] = {}
    peak = 0.0
    started = time.monotonic()
    stopped = None
    while True:
        try:
            kind, payload = messages.get(timeout=POLL_S)
            last = payload
            if kind == "done":
                break
        except queue.Empty:
            pass
        rss = _memory_mb("VmRSS", process.pid) or 0.0
        peak = max(peak, rss)
        if rss * 1024 * 1024 > limits.max_memory_bytes:
            stopped = f"memory cap: resident {rss / 1024:.1f} GB after {last.get('written', 0):,} chunks"
        elif time.monotonic() - started > timeout_s:
            stopped = f"time budget: no answer after {timeout_s:.0f} s ({last.get('written', 0):,} chunks written)"
        elif not process.is_alive() and messages.empty():
            stopped = f"the process ended unexpectedly (exit code {process.exitcode})"
        if stopped:
            process.kill()
            break
    process.join(timeout=60)
    return {**last, "watched_peak_rss_mb": round(peak, 1)}, stopped


def run_engine_size(
    engine: str, size: int, pool_file: Path, dimension: int, limits: RunLimits, query_job: dict[str, Any], work: Path
) -> ScaleRow:
    row = ScaleRow(engine=engine, size=size, load=[_load_now()])
    work.mkdir(parents=True, exist_ok=True)
    folder = Path(tempfile.mkdtemp(prefix=f"scale-{engine}-{size}-", dir=work))
    try:
        job = PhaseJob(engine, size, str(folder), str(pool_file), dimension, limits.max_write_s)
        # the write phase stops itself at the budget; the watch adds room for optimising and closing
        written, stopped = _run_phase(write_phase, job, limits, timeout_s=limits.max_write_s * 3 + 600)
        row.written = int(written.get("written", 0))
        row.write_s = written.get("write_s") or written.get("seconds")
        row.stopped = stopped or written.get("stopped")
        for name in (
            "optimize_s",
            "close_s",
            "longest_wait_while_optimizing_s",
            "answered_while_optimizing",
            "write_peak_rss_mb",
        ):
            setattr(row, name, written.get(name))
        if row.stopped:
            return row
        read_job = PhaseJob(engine, size, str(folder), str(pool_file), dimension, limits.max_write_s, **query_job)
        answers, stopped = _run_phase(query_phase, read_job, limits, timeout_s=limits.max_write_s + 600)
        row.stopped = stopped
        row.open_s = answers.get("open_s")
        row.reopen_s = answers.get("reopen_s")
        row.rss_mb = answers.get("rss_mb")
        row.peak_rss_mb = answers.get("peak_rss_mb") or answers.get("watched_peak_rss_mb")
        row.hybrid_ms = answers.get("hybrid_ms", {})
        row.date_filtered_ms = answers.get("date_filtered_ms", {})
        return row
    finally:
        row.load.append(_load_now())
        shutil.rmtree(folder, ignore_errors=True)


def _load_now() -> float | None:
    load = load_average()
    return load[0] if load else None


def bench_scale(
    settings: Settings,
    *,
    data_dir: Path,
    cache_dir: Path,
    sizes: Sequence[int] = SIZES,
    engines: Sequence[str] = ENGINES,
    limits: RunLimits,
    embedder: Embedder | None = None,
    progress: Any = None,
) -> dict[str, Any]:
    load_before = load_average()
    embedder = embedder or RagService(settings).embedder
    pool = load_pool(settings, data_dir, cache_dir, embedder)
    pool_file = cache_dir / "scale-pool-current.json"
    pool_file.write_text(json.dumps([asdict(a) for a in pool], ensure_ascii=False), encoding="utf-8")
    date_filter, date_share = date_filter_from(pool)
    query_job = {
        "queries": _question_terms(data_dir / KORQUAD, limits.queries),
        "date_from": date_filter.date_from.isoformat() if date_filter.date_from else None,
    }
    work = cache_dir / "scale-work"
    rows: list[ScaleRow] = []
    for engine in engines:
        for size in sorted(sizes):
            if rows and rows[-1].engine == engine and rows[-1].stopped:
                rows.append(ScaleRow(engine=engine, size=size, stopped="not attempted: a smaller size was stopped"))
                continue
            logger.info("bench-scale: %s, %d chunks", engine, size)
            rows.append(run_engine_size(engine, size, pool_file, embedder.dimension, limits, query_job, work))
            if progress is not None:
                progress(rows[-1])
    return {
        "rows": [asdict(row) | {"write_rate": row.write_rate} for row in rows],
        "dimension": embedder.dimension,
        "pool": {"articles": len(pool), "chunks": sum(len(a.chunks) for a in pool)},
        "date_filter": {"date_from": query_job["date_from"], "share": round(date_share, 3)},
        "queries": limits.queries,
        "cpu_cores": os.cpu_count(),
        "load_average": {"start": load_before, "end": load_average()},
        "date": dt.date.today().isoformat(),
    }


def _question_terms(korquad: Path, count: int) -> list[tuple[list[int], list[float]]]:
    _, questions = load_squad(korquad)
    sparse = SparseEncoder()
    chosen = sample_questions(questions, count + WARMUP_QUERIES, SEED)
    random.Random(SEED).shuffle(chosen)
    vectors = [sparse.encode_query(q.question) for q in chosen]
    return [(list(v.indices), list(v.values)) for v in vectors if not v.is_empty()]


def format_scale(result: dict[str, Any]) -> str:
    rows = []
    notes = []
    for row in result["rows"]:
        hybrid, dated = row["hybrid_ms"], row["date_filtered_ms"]
        rows.append(
            [
                row["engine"],
                f"{row['size']:,}",
                fmt(row["write_rate"], 0) if row["write_rate"] else "–",
                fmt(row["optimize_s"], 1),
                f"{fmt(row['open_s'], 2)} / {fmt(row.get('reopen_s'), 2)}",
                fmt(row["peak_rss_mb"], 0),
                f"{fmt(hybrid.get('p50'), 1)} / {fmt(hybrid.get('p95'), 1)}" if hybrid else "–",
                f"{fmt(dated.get('p50'), 1)} / {fmt(dated.get('p95'), 1)}" if dated else "–",
                " → ".join(fmt(value, 1) for value in row.get("load", [])) or "–",
            ]
        )
        if row["stopped"]:
            notes.append(f"- {row['engine']} at {row['size']:,}: stopped ({row['stopped']})")
        if row["longest_wait_while_optimizing_s"] is not None and row["engine"].startswith("edge"):
            answered = row.get("answered_while_optimizing")
            notes.append(
                f"- {row['engine']} at {row['size']:,}: optimising beside the serving shard took "
                f"{row['optimize_s']:.1f} s; {answered if answered is not None else '?'} questions were answered "
                f"meanwhile, the longest wait {row['longest_wait_while_optimizing_s']:.2f} s"
            )
    headers = [
        "engine",
        "chunks",
        "write chunks/s",
        "optimise s",
        "open s (first / again)",
        "memory MB",
        "hybrid p50 / p95 ms",
        "date-filtered p50 / p95 ms",
        "load (start → end)",
    ]
    load = result["load_average"]
    head = (
        f"{result['date']}: synthetic collections (real chunks from {result['pool']['articles']:,} articles / "
        f"{result['pool']['chunks']:,} chunks, resampled; random {result['dimension']}-dim vectors); "
        f"{result['queries']} questions; date filter keeps {result['date_filter']['share']:.0%} of the chunks; "
        f"{result['cpu_cores']} cores, 1-minute load average {load['start'][0] if load['start'] else '?'} at start, "
        f"{load['end'][0] if load['end'] else '?'} at the end"
    )
    return "\n\n".join([head, format_table(headers, rows), "\n".join(notes)]).rstrip() + "\n"
