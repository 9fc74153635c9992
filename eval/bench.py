"""Benchmarks on the shared data (`../shared/data`, or RAG_SHARED_DATA): `python -m eval bench-*`.

- bench-korquad   KorQuAD 1.0 dev, all 964 paragraphs, 500 sampled questions, with baselines → reports/korquad
- bench-ingest    Wikinews CSV into a throwaway collection: end-to-end rate vs the model's raw embedding rate
- bench-retrieval KorQuAD recall per mode (all 5,774 dev questions), English→Korean cross-lingual recall,
                  the sample article's questions over every Korean article, and warm query latency

Collections are kept under `storage/bench/` (beside the app's store folder) so that re-runs skip embedding.
"""

from __future__ import annotations

import csv
import itertools
import logging
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from eval import metrics as m
from eval.datasets import (
    CorpusDocument,
    Question,
    group_into_stories,
    load_parallel,
    load_squad,
    sample_questions,
)
from eval.report import fmt, format_table
from eval.runner import (
    DEPTH_DOCS,
    RagRanking,
    RunConfig,
    RunOutcome,
    SearchMode,
    file_digest,
    ingest_corpus,
    load_average,
    local_store,
    open_eval_collection,
    progress_bar,
    retrieval_metrics,
    run_evaluation,
    to_article,
)
from ingest.chunking import ChunkingPlan, chunk_article, embedding_text
from ingest.loaders import LoadFailure, iter_documents, load_file
from ingest.pipeline import IngestReport, build_ingestor
from rag.config import Settings
from rag.embed.base import Embedder
from rag.embed.cpu import CpuSignature, cpu_signature
from rag.errors import InputError
from rag.service import RagService
from rag.types import Article

logger = logging.getLogger(__name__)

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ARTICLE = PROJECT_ROOT / "data" / "smartcity_alliance_launch.txt"
KORQUAD = "korquad_v1_dev/KorQuAD_v1.0_dev.json"
WIKINEWS = "ko_wikinews_boddari/wikinews.csv"
PRESS_RELEASES = "korea_kr_press_releases_2026_07/press_releases.jsonl"
PARALLEL_KO = "ko_en_news_parallel/korean-english-park.dev.ko"
PARALLEL_EN = "ko_en_news_parallel/korean-english-park.dev.en"
# held out from every choice made on the dev split: 2,000 sentence pairs, 10 Korean lines to a "story"
PARALLEL_TEST_KO = "ko_en_news_parallel/korean-english-park.test.ko"
PARALLEL_TEST_EN = "ko_en_news_parallel/korean-english-park.test.en"
STORY_SENTENCES = 10
SEED = 0
# questions drawn (seed 0) where a part does not use them all: the stories' test questions, the latency mix
SAMPLED_QUESTIONS = 500

SAMPLE_QUESTIONS = (
    "Who co-chairs the alliance?",
    "얼라이언스 공동의장사는 어디인가?",
    "Who audits the alliance?",
    "공동감사는 누가 맡나?",
    "How many companies founded the alliance?",
    "스마트시티 융합 얼라이언스는 언제 출범했나?",
)
LATENCY_QUERIES = 200
LATENCY_WARMUP = 10


def shared_data_dir() -> Path:
    return Path(os.environ.get("RAG_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def shared_file(relative: str) -> Path:
    path = shared_data_dir() / relative
    if not path.is_file():
        raise InputError(f"{path}: not found; set RAG_SHARED_DATA to the folder holding the shared data")
    return path


def bench_cache_dir(settings: Settings) -> Path:
    return settings.qdrant.path.parent / "bench"


def _load_embedder(settings: Settings, embedder: Embedder | None) -> Embedder:
    # the benchmarks' collections are their own: `auto` is resolved on this machine, not by the app's collection
    return embedder or RagService(settings, consult_collection=False).embedder


# --- bench-korquad ---------------------------------------------------------------------------------


def bench_korquad(
    settings: Settings, *, out_dir: Path, limit: int = 500, fresh: bool = False, embedder: Embedder | None = None
) -> RunOutcome:
    config = RunConfig(
        corpus=shared_file(KORQUAD),
        questions=None,
        out_dir=out_dir,
        limit=limit,
        seed=SEED,
        baselines=True,
        mode="extractive",
        cache_dir=bench_cache_dir(settings),
        fresh=fresh,
    )
    return run_evaluation(config, settings, embedder=embedder)


# --- bench-ingest ----------------------------------------------------------------------------------


def bench_ingest(
    settings: Settings,
    *,
    embedder: Embedder | None = None,
    workers: Sequence[int] = (1,),
    limit: int | None = None,
) -> dict[str, Any]:
    """End-to-end ingest (load, clean, chunk, embed, upsert) into a throwaway collection, once per worker count
    (`python -m ingest --workers K`), then the raw model on the very same chunk texts in one call:
    overhead = end-to-end / raw − 1 (of the first worker count). `limit`: only the CSV's first N articles."""
    with tempfile.TemporaryDirectory(prefix="bench-ingest-input-") as folder:
        result = _bench_ingest(settings, embedder, workers, _first_rows(shared_file(WIKINEWS), limit, Path(folder)))
    return result | {"file": str(shared_file(WIKINEWS)), "first_articles": limit}


def _first_rows(csv_path: Path, limit: int | None, folder: Path) -> Path:
    """The CSV itself, or a copy of its header and first `limit` records (records may span lines)."""
    if limit is None:
        return csv_path
    with csv_path.open(encoding="utf-8", newline="") as source:
        rows = list(itertools.islice(csv.reader(source), limit + 1))
    subset = folder / csv_path.name
    with subset.open("w", encoding="utf-8", newline="") as target:
        csv.writer(target).writerows(rows)
    return subset


def _bench_ingest(
    settings: Settings, embedder: Embedder | None, workers: Sequence[int], csv_path: Path
) -> dict[str, Any]:
    load_before = load_average()
    started = time.perf_counter()
    embedder = _load_embedder(settings, embedder)
    load_seconds = time.perf_counter() - started
    embedder.embed_documents(["warm-up"])  # first call initialises kernels; keep it out of both timings
    runs = [_ingest_once(settings, embedder, csv_path, count) for count in workers]
    report = runs[0]
    texts = _chunk_texts(csv_path, embedder, settings)
    logger.info("raw embedding of the same %d chunk texts", len(texts))
    started = time.perf_counter()
    embedder.embed_documents(texts)
    raw_seconds = time.perf_counter() - started
    if len(texts) != report.chunks:
        logger.warning("re-chunking gave %d chunks, the ingest wrote %d", len(texts), report.chunks)
    tokens = [embedder.count_tokens(text) for text in texts]
    return {
        "file": str(csv_path),
        "model": embedder.model_id,
        "engine": getattr(embedder, "engine", "fake"),
        "cpu": cpu_signature().model_dump(),
        "articles": report.documents,
        "failed": len(report.failed),
        "chunks": report.chunks,
        "mean_tokens_per_chunk": round(sum(tokens) / len(tokens), 1) if tokens else None,
        "end_to_end_s": round(report.seconds, 2),
        "articles_per_s": round(report.documents / report.seconds, 2),
        "chunks_per_s": round(report.chunks / report.seconds, 2),
        "embedding_in_pipeline_s": round(report.embedding_seconds, 2),
        "raw_embedding_s": round(raw_seconds, 2),
        "raw_chunks_per_s": round(len(texts) / raw_seconds, 2),
        "pipeline_overhead": round(report.seconds / raw_seconds - 1, 3),
        "model_load_s": round(load_seconds, 2),
        "by_workers": [
            {
                "workers": count,
                "end_to_end_s": round(run.seconds, 2),
                "articles_per_s": round(run.documents / run.seconds, 2),
                "chunks_per_s": round(run.chunks / run.seconds, 2),
                "embedding_in_pipeline_s": round(run.embedding_seconds, 2),
            }
            for count, run in zip(workers, runs, strict=True)
        ],
        "batch_size": settings.models.embedding_batch_size,
        "cpu_cores": os.cpu_count(),
        "load_average": {"start": load_before, "end": load_average()},
    }


def _ingest_once(settings: Settings, embedder: Embedder, csv_path: Path, workers: int) -> IngestReport:
    with tempfile.TemporaryDirectory(prefix="bench-ingest-") as folder:
        own = settings.model_copy(update={"collection": "bench-ingest", "qdrant": local_store(settings, Path(folder))})
        service = RagService(own, embedder=embedder)
        try:
            ingestor = build_ingestor(service)
            with progress_bar(total=None, desc=f"ingest, {workers} worker(s)", unit="doc") as bar:
                return ingestor.ingest_paths([csv_path], progress=bar, workers=workers)
        finally:
            service.close()


def _chunk_texts(path: Path, embedder: Embedder, settings: Settings) -> list[str]:
    plan = ChunkingPlan(max_tokens=settings.chunking.max_tokens, overlap_sentences=settings.chunking.overlap_sentences)
    texts: list[str] = []
    for item in iter_documents([path]):
        if isinstance(item, Article):
            texts.extend(embedding_text(chunk) for chunk in chunk_article(item, embedder.count_tokens, plan))
    return texts


def format_ingest(result: dict[str, Any]) -> str:
    in_pipeline = result["chunks"] / result["embedding_in_pipeline_s"]
    rows = [
        [
            "end to end (load, clean, chunk, embed, store)",
            result["end_to_end_s"],
            result["articles_per_s"],
            result["chunks_per_s"],
        ],
        ["  of which embedding", result["embedding_in_pipeline_s"], None, in_pipeline],
        ["raw model, same chunk texts, one call", result["raw_embedding_s"], None, result["raw_chunks_per_s"]],
    ]
    rows = [[label, fmt(s, 1), fmt(a, 2) if a else "", fmt(c, 2)] for label, s, a, c in rows]
    table = format_table(["", "seconds", "articles/s", "chunks/s"], rows)
    cpu = CpuSignature.model_validate(result["cpu"])
    text = (
        f"{result['model']} through {result['engine']} on {cpu.describe()}\n"
        f"{result['articles']} articles{_first_text(result)} ({result['failed']} failed) → {result['chunks']} chunks "
        f"(mean {result['mean_tokens_per_chunk']} model tokens), {result['cpu_cores']} cores, "
        f"load average {_load_text(result['load_average'])}\n\n{table}\n\n"
        f"pipeline overhead = end-to-end / raw − 1 = {result['pipeline_overhead']:.3f}  "
        f"(model load {result['model_load_s']} s, not counted)\n"
    )
    if len(result.get("by_workers", [])) > 1:
        rows = [
            [run["workers"], fmt(run["end_to_end_s"], 1), fmt(run["articles_per_s"], 2), fmt(run["chunks_per_s"], 2)]
            for run in result["by_workers"]
        ]
        text += "\n`--workers` in the same run:\n\n" + format_table(
            ["workers", "seconds", "articles/s", "chunks/s"], rows
        )
        text += "\n"
    return text


def _first_text(result: dict[str, Any]) -> str:
    return (
        f" (the first {result['first_articles']} of {Path(result['file']).name})"
        if result.get("first_articles")
        else ""
    )


# --- bench-retrieval -------------------------------------------------------------------------------


RETRIEVAL_PARTS = ("korquad", "cross-lingual", "sample", "latency")


def bench_retrieval(
    settings: Settings,
    *,
    limit: int | None = None,
    parts: Sequence[str] = RETRIEVAL_PARTS,
    embedder: Embedder | None = None,
) -> dict[str, Any]:
    """The parts asked for, in order: (a) korquad, (b) cross-lingual, (c) sample, (d) latency.

    `limit` samples the KorQuAD questions (None: all 5,774). A 500-question sample leaves modes that differ by
    one question in a coin toss (0.002), so the comparison the issue asks for runs on the whole dev set."""
    load_before = load_average()
    embedder = _load_embedder(settings, embedder)
    cache = bench_cache_dir(settings)
    result: dict[str, Any] = {}
    if "korquad" in parts:
        result["korquad"] = _korquad_modes(settings, cache, embedder, limit)
    if "cross-lingual" in parts:
        result["cross_lingual"] = _cross_lingual(settings, cache, embedder)
    if "sample" in parts or "latency" in parts:
        service, sample_id, n_docs = _all_korean_collection(settings, cache, embedder)
        try:
            if "sample" in parts:
                result["sample_article"] = _sample_ranks(service, sample_id, n_docs)
            if "latency" in parts:
                result["latency"] = _warm_latency(service, _latency_queries(), n_docs)
        finally:
            service.close()
    result["cpu_cores"] = os.cpu_count()
    result["load_average"] = {"start": load_before, "end": load_average()}
    return result


def _mode_metrics(service: RagService, questions: Sequence[Question], modes: Sequence[SearchMode]) -> dict[str, Any]:
    relevant = [q.relevant_doc_ids for q in questions]
    out: dict[str, Any] = {}
    for mode in modes:
        system = RagRanking(service, mode)
        runs = [system.rank(q.question) for q in _progress(questions, f"{mode} queries")]
        scores = retrieval_metrics([ids for ids, _ in runs], relevant)
        latency = m.latency_summary([ms for _, ms in runs])
        out[mode] = {k: scores[k] for k in ("recall@1", "recall@5", "recall@10", "mrr@10")} | {
            "latency_p50_ms": latency["p50"],
            "latency_p95_ms": latency["p95"],
        }
    return out


def _progress(items: Sequence[Any], desc: str) -> Any:
    bar = progress_bar(total=len(items), desc=desc, unit="q")
    for item in items:
        yield item
        bar.update(1)
    bar.close()


def _korquad_modes(settings: Settings, cache: Path, embedder: Embedder, limit: int | None) -> dict[str, Any]:
    path = shared_file(KORQUAD)
    documents, questions = load_squad(path)
    selected = sample_questions(questions, limit, SEED)
    result = _modes_on(settings, cache, embedder, [path], documents, selected, label="korquad")
    return {**result, "sampled": len(selected) < len(questions), "seed": SEED}


def _cross_lingual(settings: Settings, cache: Path, embedder: Embedder) -> dict[str, Any]:
    ko, en = shared_file(PARALLEL_KO), shared_file(PARALLEL_EN)
    documents, questions = load_parallel(ko, en)
    result = _modes_on(settings, cache, embedder, [ko], documents, questions, label="parallel ko")
    return {**result, "stories": _cross_lingual_stories(settings, cache, embedder)}


def _cross_lingual_stories(settings: Settings, cache: Path, embedder: Embedder) -> dict[str, Any]:
    """English sentences → the Korean story (STORY_SENTENCES consecutive lines) holding their twin: English
    questions over Korean articles, on the held-out test split."""
    ko, en = shared_file(PARALLEL_TEST_KO), shared_file(PARALLEL_TEST_EN)
    stories, questions = group_into_stories(*load_parallel(ko, en), size=STORY_SENTENCES)
    selected = sample_questions(questions, SAMPLED_QUESTIONS, SEED)
    result = _modes_on(settings, cache, embedder, [ko], stories, selected, label="parallel ko stories")
    return {**result, "sentences_per_story": STORY_SENTENCES, "seed": SEED}


def _modes_on(
    settings: Settings,
    cache: Path,
    embedder: Embedder,
    sources: list[Path],
    documents: list[CorpusDocument],
    questions: list[Question],
    *,
    label: str,
) -> dict[str, Any]:
    """Dense, sparse and hybrid retrieval metrics for `questions` over `documents` (cached collection)."""
    service = open_eval_collection(settings, file_digest(sources), cache, embedder=embedder)
    try:
        ingest_corpus(service, [to_article(d) for d in documents], label=label)
        modes = _mode_metrics(service, questions, ("dense", "sparse", "hybrid"))
    finally:
        service.close()
    return {"documents": len(documents), "questions": len(questions), "modes": modes}


def _all_korean_collection(settings: Settings, cache: Path, embedder: Embedder) -> tuple[RagService, str, int]:
    """wikinews.csv + press_releases.jsonl + the sample article, ingested as `python -m ingest` would."""
    paths = [shared_file(WIKINEWS), shared_file(PRESS_RELEASES), SAMPLE_ARTICLE]
    articles: list[Article] = []
    failures = 0
    for item in iter_documents(paths):
        if isinstance(item, LoadFailure):
            failures += 1
            logger.warning("not loaded: %s: %s", item.path, item.reason)
        else:
            articles.append(item)
    sample = next(a for a in load_file(SAMPLE_ARTICLE) if isinstance(a, Article))
    service = open_eval_collection(settings, file_digest(paths), cache, embedder=embedder)
    ingest_corpus(service, articles, label="korean news")
    logger.info("korean news collection: %d articles (%d not loaded)", len(articles), failures)
    return service, sample.id, len(articles)


def _sample_ranks(service: RagService, sample_id: str, n_docs: int) -> dict[str, Any]:
    modes: tuple[SearchMode, ...] = ("hybrid", "dense", "sparse")
    rows: list[dict[str, Any]] = []
    for question in SAMPLE_QUESTIONS:
        ranks: dict[str, int | None] = {}
        for mode in modes:
            ids, _ = RagRanking(service, mode).rank(question)
            ranks[mode] = ids.index(sample_id) + 1 if sample_id in ids else None
        rows.append({"question": question, "rank": ranks})
    first = sum(1 for row in rows if row["rank"]["hybrid"] == 1)
    return {"documents": n_docs, "sample_id": sample_id, "questions": rows, "hybrid_rank1": first}


def _latency_queries() -> list[str]:
    """Korean KorQuAD questions and English news sentences (3:1): realistic lengths in both languages."""
    _, korquad = load_squad(shared_file(KORQUAD))
    korean = [q.question for q in sample_questions(korquad, SAMPLED_QUESTIONS, SEED)][: LATENCY_QUERIES * 3 // 4]
    _, parallel = load_parallel(shared_file(PARALLEL_KO), shared_file(PARALLEL_EN))
    english = [q.question for q in parallel][: LATENCY_QUERIES - len(korean)]
    return korean + english


def _warm_latency(service: RagService, queries: Sequence[str], n_docs: int) -> dict[str, Any]:
    for query in queries[:LATENCY_WARMUP]:
        service.retriever.retrieve(query)
    totals, embeds, searches = [], [], []
    for query in queries:
        started = time.perf_counter()
        retrieval = service.retriever.retrieve(query)
        totals.append((time.perf_counter() - started) * 1000)
        embeds.append(retrieval.timings_ms["embed"])
        searches.append(retrieval.timings_ms["search"])
    summary = {
        name: m.latency_summary(values) for name, values in (("total", totals), ("embed", embeds), ("search", searches))
    }
    return {
        "documents": n_docs,
        "chunks": service.store.count_chunks(),
        "queries": len(queries),
        "top_k": service.settings.retrieval.top_k,
        "ms": {name: {"p50": s["p50"], "p95": s["p95"]} for name, s in summary.items()},
    }


def format_retrieval(result: dict[str, Any]) -> str:
    parts = []
    if "korquad" in result:
        korquad = result["korquad"]
        korquad_sample = f" (sampled, seed {korquad['seed']})" if korquad.get("sampled") else " (all)"
        parts.append(
            f"(a) KorQuAD 1.0 dev: {korquad['questions']} questions{korquad_sample}, "
            f"{korquad['documents']} paragraphs; document level, first {DEPTH_DOCS} distinct documents\n\n"
            + _modes_table(korquad["modes"], ("recall@1", "recall@5", "mrr@10"))
        )
    if "cross_lingual" in result:
        cross = result["cross_lingual"]
        parts.append(
            f"(b) cross-lingual: {cross['questions']} English sentences → their Korean twin among "
            f"{cross['documents']}\n\n" + _modes_table(cross["modes"], ("recall@1", "recall@5", "mrr@10"))
        )
        stories = cross["stories"]
        parts.append(
            f"(b2) cross-lingual, article level: {stories['questions']} English sentences (seed {stories['seed']}) → "
            f"the Korean story holding their twin among {stories['documents']} ({stories['sentences_per_story']} "
            "consecutive lines each; held-out test split)\n\n"
            + _modes_table(stories["modes"], ("recall@1", "recall@5", "mrr@10"))
        )
    if "sample_article" in result:
        parts.append(_sample_text(result["sample_article"]))
    if "latency" in result:
        parts.append(_latency_text(result["latency"]))
    parts.append(f"{result['cpu_cores']} cores, load average {_load_text(result['load_average'])}")
    return "\n\n".join(parts) + "\n"


def _modes_table(modes: dict[str, Any], keys: Sequence[str]) -> str:
    rows = [[mode, *(values[k] for k in keys), fmt(values["latency_p50_ms"], 1)] for mode, values in modes.items()]
    return format_table(["mode", *keys, "p50 ms"], rows)


def _sample_text(sample: dict[str, Any]) -> str:
    rows = [
        [
            row["question"],
            *(fmt(row["rank"][mode]) if row["rank"][mode] else ">10" for mode in ("hybrid", "dense", "sparse")),
        ]
        for row in sample["questions"]
    ]
    head = (
        f"(c) the sample article among {sample['documents']} Korean articles: its rank per question "
        f"(hybrid rank 1 for {sample['hybrid_rank1']} of {len(rows)})"
    )
    return head + "\n\n" + format_table(["question", "hybrid", "dense", "sparse"], rows)


def _latency_text(latency: dict[str, Any]) -> str:
    rows = [[name, fmt(v["p50"], 1), fmt(v["p95"], 1)] for name, v in latency["ms"].items()]
    head = (
        f"(d) warm retrieval latency (hybrid, top_k {latency['top_k']}) over {latency['queries']} queries, "
        f"{latency['documents']} articles / {latency['chunks']} chunks"
    )
    return head + "\n\n" + format_table(["stage", "p50 ms", "p95 ms"], rows)


def _load_text(load: dict[str, Any]) -> str:
    """1-minute load averages. At the start it shows other jobs on the machine (a timing taken while they ran is
    inflated); at the end it includes this benchmark itself (~1-2 on its own)."""
    start, end = (load.get(k) for k in ("start", "end"))
    return f"{start[0] if start else '?'} at start (other jobs), {end[0] if end else '?'} at the end (1-min)"
