"""bench-scale on a tiny pool: the synthetic collections are what they claim, and each engine's run reports real
figures from its own processes (or says where it was stopped)."""

from __future__ import annotations

import datetime as dt
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np
import pytest

from eval.bench_scale import (
    PoolArticle,
    RunLimits,
    ScaleRow,
    date_filter_from,
    format_scale,
    run_engine_size,
    synthetic_articles,
)


def _pool() -> list[PoolArticle]:
    pool = []
    for i in range(12):
        sentences = [f"{i}번째 기사의 문장 {j}입니다." for j in range(3 + i % 4)]
        text = " ".join(sentences)
        chunks, start = [], 0
        for j, sentence in enumerate(sentences):
            chunks.append(
                {
                    "index": j,
                    "start": start,
                    "end": start + len(sentence),
                    "text": sentence,
                    "sentences": [[start, start + len(sentence)]],
                    "terms": [i, 100 + j, 1000],
                    "weights": [1.0, 0.5, 0.2],
                }
            )
            start += len(sentence) + 1
        day = (dt.date(2020, 1, 1) + dt.timedelta(days=60 * i)).isoformat()
        pool.append(PoolArticle(title=f"기사 {i}", text=text, date=day, source=f"s{i % 3}", url=None, chunks=chunks))
    return pool


def test_synthetic_collections_hold_exactly_the_size_asked_for() -> None:
    pool = _pool()
    generated = list(synthetic_articles(pool, 101, dimension=8))
    assert sum(len(chunks) for _, chunks, _, _ in generated) == 101
    assert len({article.id for article, _, _, _ in generated}) == len(generated)  # new ids, no collision
    for article, chunks, dense, sparse in generated:
        assert dense.shape == (len(chunks), 8)
        assert np.allclose(np.linalg.norm(dense, axis=1), 1.0, atol=1e-5)
        assert len(sparse) == len(chunks)
        for chunk in chunks:
            assert article.text[chunk.start : chunk.end] == chunk.text  # offsets as ingest stores them
            assert chunk.date == article.date and chunk.article_id == article.id
    again = list(synthetic_articles(pool, 101, dimension=8))
    assert [a.id for a, *_ in again] == [a.id for a, *_ in generated]
    assert all(np.array_equal(x[2], y[2]) for x, y in zip(again, generated, strict=True))  # seeded


def test_the_date_filter_keeps_about_a_tenth() -> None:
    filters, share = date_filter_from(_pool())
    assert filters.date_from is not None and 0.05 <= share <= 0.3


@pytest.fixture
def pool_file(tmp_path: Path) -> Path:
    path = tmp_path / "pool.json"
    path.write_text(json.dumps([asdict(a) for a in _pool()], ensure_ascii=False), encoding="utf-8")
    return path


QUERY_JOB = {"queries": [([i, 100], [1.0, 1.0]) for i in range(12)] * 2, "date_from": "2021-01-01"}


@pytest.mark.parametrize("engine", ["local", "edge"])
def test_each_engine_reports_writes_opening_memory_and_latency(engine: str, pool_file: Path, tmp_path: Path) -> None:
    limits = RunLimits(max_write_s=600, max_memory_bytes=8 * 1024**3, queries=24)
    row = run_engine_size(engine, 300, pool_file, 16, limits, QUERY_JOB, tmp_path / "work")
    assert row.stopped is None, row.stopped
    assert row.written == 300 and row.write_rate and row.write_rate > 0
    assert row.open_s and row.open_s > 0 and row.reopen_s and row.reopen_s > 0
    assert row.peak_rss_mb and row.peak_rss_mb > 10
    for latency in (row.hybrid_ms, row.date_filtered_ms):
        assert 0 < latency["p50"] <= latency["p95"]
    assert not list((tmp_path / "work").iterdir())  # the collection is removed afterwards
    table = format_scale(_result([row]))
    assert f"| {engine}" in table
    if engine == "edge":  # optimised beside the serving shard, a reader thread counting its answers
        assert row.optimize_s and row.optimize_s > 0 and row.answered_while_optimizing is not None
        assert f"{row.answered_while_optimizing} questions were answered meanwhile" in table


def test_a_run_past_its_budget_is_stopped_and_says_how_far_it_got(pool_file: Path, tmp_path: Path) -> None:
    limits = RunLimits(max_write_s=0.0, max_memory_bytes=8 * 1024**3, queries=24)
    row = run_engine_size("local", 1_000_000, pool_file, 16, limits, QUERY_JOB, tmp_path / "work")
    assert row.stopped is not None and "time budget" in row.stopped
    assert 0 < row.written < 1_000_000
    assert "stopped (time budget" in format_scale(_result([row]))


def _result(rows: list[ScaleRow]) -> dict[str, object]:
    return {
        "rows": [asdict(row) | {"write_rate": row.write_rate} for row in rows],
        "dimension": 16,
        "pool": {"articles": 12, "chunks": 54},
        "date_filter": {"date_from": "2021-01-01", "share": 0.1},
        "queries": 24,
        "cpu_cores": 2,
        "load_average": {"start": [1.0, 1.0, 1.0], "end": [1.0, 1.0, 1.0]},
        "date": "2026-12-05",
    }
