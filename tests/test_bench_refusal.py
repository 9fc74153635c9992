from __future__ import annotations

from eval.bench_refusal import accuracy_at, best_threshold


def test_best_threshold_separates_the_two_halves() -> None:
    answerable = [0.86, 0.84, 0.90, 0.83]
    unanswerable = [0.78, 0.80, 0.81, 0.845]
    cut, accuracy = best_threshold(answerable, unanswerable)
    assert accuracy == 7 / 8
    assert accuracy_at(cut, answerable, unanswerable) == accuracy
    assert 0.81 < cut <= 0.83


def test_perfectly_separable_scores_give_accuracy_one() -> None:
    cut, accuracy = best_threshold([0.9, 0.95], [0.1, 0.2])
    assert accuracy == 1.0 and 0.2 < cut <= 0.9
