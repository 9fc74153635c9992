"""Scoring functions against hand-computed values (and numpy for percentiles)."""

from __future__ import annotations

import math
import random
from collections.abc import Callable, Collection, Sequence

import numpy as np
import pytest

from eval.metrics import (
    answer_exact_match,
    answer_f1,
    char_f1,
    citation_precision,
    citation_recall,
    contains_answer,
    contains_hangul,
    distinct_top_k,
    exact_match,
    latency_summary,
    mean_or_none,
    ndcg_at_k,
    normalize_answer_korquad,
    normalize_answer_squad,
    percentile,
    recall_at_k,
    reciprocal_rank,
    refusal_correct,
    token_exact_match,
    token_f1,
)

# Chunks of one document come back several times; distinct order is a, b, c, d.
RANKED_WITH_DUPLICATES = ["a", "a", "b", "c", "b", "d"]


# --- retrieval -------------------------------------------------------------------------------------


def test_distinct_top_k_keeps_first_occurrences_in_order() -> None:
    assert distinct_top_k(RANKED_WITH_DUPLICATES, 10) == ["a", "b", "c", "d"]
    assert distinct_top_k(RANKED_WITH_DUPLICATES, 2) == ["a", "b"]


@pytest.mark.parametrize(("k", "expected"), [(1, 0.0), (2, 0.0), (3, 1.0), (10, 1.0)])
def test_recall_at_k_counts_distinct_documents(k: int, expected: float) -> None:
    # "c" is the 4th id in the raw list but the 3rd distinct document.
    assert recall_at_k(RANKED_WITH_DUPLICATES, {"c"}, k) == expected


def test_recall_at_k_is_a_hit_rate_not_a_fraction() -> None:
    assert recall_at_k(["a", "x"], {"a", "b", "c"}, 2) == 1.0


def test_recall_at_k_empty_inputs() -> None:
    assert recall_at_k([], {"a"}, 5) == 0.0
    assert recall_at_k(["a"], set(), 5) == 0.0


@pytest.mark.parametrize("metric", [recall_at_k, reciprocal_rank, ndcg_at_k])
def test_retrieval_metrics_reject_k_below_one(metric: Callable[[Sequence[str], Collection[str], int], float]) -> None:
    with pytest.raises(ValueError, match="k must be at least 1"):
        metric(["a"], {"a"}, 0)


def test_reciprocal_rank_uses_distinct_rank() -> None:
    assert reciprocal_rank(RANKED_WITH_DUPLICATES, {"c"}) == pytest.approx(1 / 3)
    assert reciprocal_rank(RANKED_WITH_DUPLICATES, {"a"}) == 1.0
    assert reciprocal_rank(RANKED_WITH_DUPLICATES, {"c", "d"}) == pytest.approx(1 / 3)


def test_reciprocal_rank_cut_off_and_misses() -> None:
    assert reciprocal_rank(RANKED_WITH_DUPLICATES, {"d"}, k=3) == 0.0
    assert reciprocal_rank(RANKED_WITH_DUPLICATES, {"d"}, k=4) == pytest.approx(1 / 4)
    assert reciprocal_rank(RANKED_WITH_DUPLICATES, {"z"}) == 0.0
    assert reciprocal_rank([], {"a"}) == 0.0
    assert reciprocal_rank(["a"], []) == 0.0


def test_ndcg_single_relevant_document_at_rank_three() -> None:
    assert ndcg_at_k(RANKED_WITH_DUPLICATES, {"c"}) == pytest.approx(1 / math.log2(4))
    assert ndcg_at_k(RANKED_WITH_DUPLICATES, {"c"}) == pytest.approx(0.5)


def test_ndcg_two_relevant_documents() -> None:
    # a at rank 1, d at rank 4; the ideal ranking puts them at ranks 1 and 2.
    expected = (1 + 1 / math.log2(5)) / (1 + 1 / math.log2(3))
    assert ndcg_at_k(RANKED_WITH_DUPLICATES, {"a", "d"}) == pytest.approx(expected)


def test_ndcg_cut_off_limits_both_dcg_and_ideal() -> None:
    # k=3: d (rank 4) falls out; the ideal still has 2 relevant documents within k.
    assert ndcg_at_k(RANKED_WITH_DUPLICATES, {"a", "d"}, k=3) == pytest.approx(1 / (1 + 1 / math.log2(3)))
    # k=1: only one relevant document fits the ideal ranking, and a is at rank 1.
    assert ndcg_at_k(RANKED_WITH_DUPLICATES, {"a", "d"}, k=1) == 1.0


def test_ndcg_perfect_missing_and_empty() -> None:
    assert ndcg_at_k(["a", "b", "c"], {"a", "b"}) == pytest.approx(1.0)
    assert ndcg_at_k(["x", "y"], {"a"}) == 0.0
    assert ndcg_at_k([], {"a"}) == 0.0
    assert ndcg_at_k(["a"], set()) == 0.0


# --- KorQuAD answer metrics ------------------------------------------------------------------------


def test_korquad_normalisation() -> None:
    assert normalize_answer_korquad("  1989년   2월 15일 ") == "1989년 2월 15일"
    assert normalize_answer_korquad("《임종석》") == "임종석"
    assert normalize_answer_korquad("'KBS'.") == "kbs"
    # ( ) become spaces before ASCII punctuation is deleted, as in the official script.
    assert normalize_answer_korquad("서울(한국)") == "서울 한국"
    assert normalize_answer_korquad("3,000원") == "3000원"
    # Unicode quotes outside the official list stay.
    assert normalize_answer_korquad("“임종석”") == "“임종석”"


def test_korquad_trailing_particle() -> None:
    # 10 gold characters, 11 predicted, 10 shared: P = 10/11, R = 1, F1 = 20/21.
    assert exact_match("1989년 2월 15일에", ["1989년 2월 15일"]) == 0.0
    assert char_f1("1989년 2월 15일에", ["1989년 2월 15일"]) == pytest.approx(20 / 21)


def test_korquad_spacing_counts_for_em_but_not_for_f1() -> None:
    assert exact_match("1989년2월15일", ["1989년 2월 15일"]) == 0.0
    assert char_f1("1989년2월15일", ["1989년 2월 15일"]) == 1.0
    assert exact_match("1989년  2월\t15일", ["1989년 2월 15일"]) == 1.0


def test_korquad_punctuation_and_case() -> None:
    assert exact_match("《임종석》", ["임종석"]) == 1.0
    assert exact_match("임종석.", ["임종석"]) == 1.0
    assert exact_match("Kbs", ["KBS"]) == 1.0
    # “ ” are not removed: 3 shared of 5 predicted characters, F1 = 2 * 0.6 * 1 / 1.6 = 0.75.
    assert exact_match("“임종석”", ["임종석"]) == 0.0
    assert char_f1("“임종석”", ["임종석"]) == pytest.approx(0.75)


def test_korquad_max_over_ground_truths_and_empty() -> None:
    assert exact_match("임종석", ["김영삼", "임종석"]) == 1.0
    # gold 김영삼: 0 shared; gold 김영: 김 shared, P = 1/3, R = 1/2, F1 = 0.4.
    assert char_f1("김종석", ["최영", "김영"]) == pytest.approx(0.4)
    assert exact_match("임종석", []) == 0.0
    assert char_f1("임종석", []) == 0.0
    assert char_f1("", ["임종석"]) == 0.0
    assert char_f1("", [""]) == 0.0  # the official script scores "no overlap" as 0, even here


def test_korquad_character_multiset() -> None:
    # 가가나 vs 가나나: shared 가 x1, 나 x1 → 2 of 3 each side, F1 = 2/3.
    assert char_f1("가가나", ["가나나"]) == pytest.approx(2 / 3)


# --- SQuAD answer metrics --------------------------------------------------------------------------


def test_squad_normalisation() -> None:
    assert normalize_answer_squad("The  Federal Reserve, Inc.") == "federal reserve inc"
    assert normalize_answer_squad("an apple") == "apple"
    assert normalize_answer_squad("theory") == "theory"


def test_token_f1_and_exact_match() -> None:
    # pred [federal, reserve], gold [federal, reserve, board]: P = 1, R = 2/3, F1 = 0.8.
    assert token_f1("the Federal Reserve", ["Federal Reserve Board"]) == pytest.approx(0.8)
    assert token_exact_match("The Fed.", ["fed"]) == 1.0
    assert token_exact_match("Fed chair", ["fed"]) == 0.0
    assert token_f1("Powell", ["Yellen", "Jerome Powell"]) == pytest.approx(2 / 3)
    assert token_f1("", ["x"]) == 0.0
    assert token_f1("x", []) == 0.0
    assert token_exact_match("x", []) == 0.0


def test_contains_hangul() -> None:
    assert contains_hangul("1989년")
    assert contains_hangul("ㅋㅋ")
    assert not contains_hangul("1989 Seoul 漢字")


def test_answer_metrics_dispatch_by_gold_script() -> None:
    # Hangul gold → character F1 (token F1 would be 2/3 here).
    assert answer_f1("1989년 2월 15일에", ["1989년 2월 15일"]) == pytest.approx(20 / 21)
    assert token_f1("1989년 2월 15일에", ["1989년 2월 15일"]) == pytest.approx(2 / 3)
    # Latin gold → token F1 with articles dropped.
    assert answer_f1("the Federal Reserve", ["Federal Reserve Board"]) == pytest.approx(0.8)
    assert answer_exact_match("The Fed.", ["fed"]) == 1.0
    assert answer_exact_match("1989년2월15일", ["1989년 2월 15일"]) == 0.0
    # Each gold picks its own metric; the best one counts.
    assert answer_f1("Federal Reserve", ["연방준비제도", "the Federal Reserve"]) == 1.0
    assert answer_f1("anything", []) == 0.0
    assert answer_exact_match("anything", []) == 0.0


def test_contains_answer_korean_ignores_spacing_and_particles() -> None:
    assert contains_answer("임종석은 1989년 2월 15일에 지명수배되었다.", ["1989년 2월 15일"]) == 1.0
    assert contains_answer("1989년2월15일에 수배됐다", ["1989년 2월 15일"]) == 1.0
    assert contains_answer("1989년 3월에 수배됐다", ["1989년 2월 15일"]) == 0.0


def test_contains_answer_english_whole_tokens() -> None:
    assert contains_answer("Rates were raised by the Federal Reserve.", ["Federal Reserve"]) == 1.0
    assert contains_answer("A bobcat was seen.", ["cat"]) == 0.0


def test_contains_answer_latin_gold_with_a_korean_ending_attached() -> None:
    # a Korean sentence attaches particles and endings to Latin words and numbers
    assert contains_answer("이름은 TBC입니다.", ["TBC"]) == 1.0
    assert contains_answer("1990년에 시작했다.", ["1990"]) == 1.0
    assert contains_answer("이름은 jTBC입니다.", ["TBC"]) == 0.0  # another Latin word, not the gold
    assert contains_answer("19901년", ["1990"]) == 0.0
    assert contains_answer("anything", ["...", ""]) == 0.0  # golds that normalise to nothing never match
    assert contains_answer("anything", []) == 0.0


# --- citations and refusals ------------------------------------------------------------------------


def test_citation_precision() -> None:
    precision = citation_precision(
        ["d1", "d2", "d3"],
        ["unrelated", "임종석은 1989년 2월 15일에 수배됐다", "unrelated"],
        {"d1"},
        ["1989년 2월 15일"],
    )
    # d1 is relevant, d2's quote holds the answer, d3 neither.
    assert precision == pytest.approx(2 / 3)


def test_citation_precision_counts_each_citation() -> None:
    assert citation_precision(["d1", "d1", "x"], ["", "", ""], ["d1"], []) == pytest.approx(2 / 3)


def test_citation_precision_without_citations_is_none() -> None:
    assert citation_precision([], [], {"d1"}, ["answer"]) is None


def test_citation_precision_rejects_misaligned_inputs() -> None:
    with pytest.raises(ValueError, match="2 cited doc ids but 1 quotes"):
        citation_precision(["a", "b"], ["q"], set(), [])


def test_citation_recall() -> None:
    assert citation_recall(["d1", "d1", "d3"], ["d1", "d2"]) == 0.5
    assert citation_recall([], ["d1"]) == 0.0
    assert citation_recall(["d1"], []) is None


@pytest.mark.parametrize(
    ("refused", "answerable", "correct"),
    [(True, False, True), (False, True, True), (True, True, False), (False, False, False)],
)
def test_refusal_correct(refused: bool, answerable: bool, correct: bool) -> None:
    assert refusal_correct(refused, answerable) is correct


# --- aggregation -----------------------------------------------------------------------------------


def test_percentile_hand_computed() -> None:
    assert percentile([1, 2, 3, 4], 50) == 2.5
    assert percentile([4, 1, 3, 2], 0) == 1.0
    assert percentile([4, 1, 3, 2], 100) == 4.0
    assert percentile([7.0], 95) == 7.0


@pytest.mark.parametrize("q", [0, 5, 25, 37.5, 50, 90, 95, 99, 100])
def test_percentile_matches_numpy(q: float) -> None:
    rng = random.Random(7)
    for size in (1, 2, 3, 10, 101):
        values = [rng.uniform(0, 5000) for _ in range(size)]
        assert percentile(values, q) == pytest.approx(float(np.percentile(values, q)))


def test_percentile_empty_and_invalid() -> None:
    assert math.isnan(percentile([], 50))
    with pytest.raises(ValueError):
        percentile([1.0], 101)
    with pytest.raises(ValueError):
        percentile([1.0], -1)


def test_latency_summary() -> None:
    # p95: position 0.95 * 3 = 2.85 → 300 + 0.85 * 100.
    assert latency_summary([400, 100, 300, 200]) == pytest.approx(
        {"p50": 250.0, "p95": 385.0, "mean": 250.0, "max": 400.0}
    )
    empty = latency_summary([])
    assert set(empty) == {"p50", "p95", "mean", "max"}
    assert all(math.isnan(value) for value in empty.values())


def test_mean_or_none() -> None:
    assert mean_or_none([1.0, None, 2.0]) == 1.5
    assert mean_or_none(value for value in [0.0, None]) == 0.0
    assert mean_or_none([None, None]) is None
    assert mean_or_none([]) is None


def test_report_tables_line_up_korean_cells_on_a_terminal() -> None:
    from eval.report import display_width, format_table

    table = format_table(["question", "rank"], [["공동감사는 누가 맡나?", 2], ["Who audits the alliance?", 3]])
    widths = {display_width(line) for line in table.splitlines()}
    assert len(widths) == 1  # every line, the separator included, spans the same columns
    assert display_width("공동") == 4
