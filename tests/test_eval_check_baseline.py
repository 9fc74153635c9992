"""The pure parts of eval.check_llamaindex_baseline: per-question scores, noise, verdicts."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from eval.check_llamaindex_baseline import (
    DEPTH_DOCS,
    OUTSIDE,
    WITHIN,
    build_parser,
    compare_metric,
    distinct_doc_ids,
    overall_verdict,
    paired_bootstrap_ci,
    per_question_scores,
    reference_rankings_from_report,
    standard_error,
)
from eval.datasets import Question


def test_per_question_scores_use_distinct_documents() -> None:
    rankings = [["a", "b"], ["x", "x", "b"], ["c"]]
    relevant = [["a"], ["b"], ["z"]]
    scores = per_question_scores(rankings, relevant)
    assert scores["recall@1"] == [1.0, 0.0, 0.0]
    assert scores["recall@5"] == [1.0, 1.0, 0.0]
    assert scores["mrr@10"] == [1.0, 0.5, 0.0]  # the duplicate "x" counts once, so "b" is second


def test_standard_error_of_a_proportion() -> None:
    values = [1.0] * 80 + [0.0] * 20
    expected = math.sqrt(0.8 * 0.2 * 100 / 99) / math.sqrt(100)  # sample variance, n − 1
    assert standard_error(values) == pytest.approx(expected)
    assert math.isnan(standard_error([1.0]))


def test_identical_scores_give_a_zero_interval_and_within_noise() -> None:
    scores = [1.0, 0.0, 1.0, 1.0]
    assert paired_bootstrap_ci(scores, scores) == (0.0, 0.0)
    comparison = compare_metric("recall@1", scores, scores)
    assert comparison.difference == 0.0
    assert comparison.verdict == WITHIN


def test_a_consistent_gain_is_outside_noise() -> None:
    reference = [0.0] * 50 + [1.0] * 450
    by_hand = [1.0] * 500  # 50 questions better, none worse
    comparison = compare_metric("recall@1", reference, by_hand)
    assert comparison.difference == pytest.approx(0.1)
    assert 0.0 < comparison.ci_low <= 0.1 <= comparison.ci_high
    assert comparison.verdict == OUTSIDE


def test_flips_both_ways_are_within_noise() -> None:
    # 10 questions gained and 9 lost out of 500: a net +0.002 that the pairing cannot tell from chance
    reference = [0.0] * 10 + [1.0] * 9 + [1.0] * 481
    by_hand = [1.0] * 10 + [0.0] * 9 + [1.0] * 481
    comparison = compare_metric("recall@1", reference, by_hand)
    assert comparison.difference == pytest.approx(0.002)
    assert comparison.ci_low < 0.0 < comparison.ci_high
    assert comparison.verdict == WITHIN


def test_bootstrap_is_seeded_and_checks_its_input() -> None:
    a, b = [0.0, 1.0, 1.0, 0.0, 1.0], [1.0, 1.0, 0.0, 1.0, 1.0]
    assert paired_bootstrap_ci(a, b, seed=3) == paired_bootstrap_ci(a, b, seed=3)
    with pytest.raises(ValueError):
        paired_bootstrap_ci([1.0], [1.0, 0.0])
    with pytest.raises(ValueError):
        paired_bootstrap_ci([], [])


def test_overall_verdict_needs_every_metric_within_noise() -> None:
    same = compare_metric("recall@1", [1.0, 0.0], [1.0, 0.0])
    worse = compare_metric("recall@5", [1.0] * 100, [0.0] * 100)
    assert overall_verdict([same]) == WITHIN
    assert overall_verdict([same, worse]) == OUTSIDE


def test_distinct_doc_ids_keep_rank_order_and_skip_missing_sources() -> None:
    assert distinct_doc_ids(["b", None, "a", "b", "c"], k=2) == ["b", "a"]


def test_defaults_match_the_report() -> None:
    from eval import bench, runner

    args = build_parser().parse_args([])
    assert (args.limit, args.seed, args.top_k) == (500, bench.SEED, runner.DEPTH_CHUNKS)
    assert DEPTH_DOCS == runner.DEPTH_DOCS


def test_reference_rankings_from_a_report_folder(tmp_path: Path) -> None:
    records = [
        {"id": "q1", "baselines": {"llamaindex": {"retrieved_doc_ids": ["d1", "d2"], "retrieval_ms": 3.0}}},
        {"id": "q2", "baselines": {}},
    ]
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    q1 = Question(id="q1", question="?", answers=["a"], relevant_doc_ids=["d1"])
    q2 = Question(id="q2", question="?", answers=["a"], relevant_doc_ids=["d2"])
    assert reference_rankings_from_report(tmp_path, [q1]) == [["d1", "d2"]]
    with pytest.raises(ValueError, match="no llama-index ranking for 1"):
        reference_rankings_from_report(tmp_path, [q1, q2])
    with pytest.raises(ValueError, match="no such file"):
        reference_rankings_from_report(tmp_path / "missing", [q1])
