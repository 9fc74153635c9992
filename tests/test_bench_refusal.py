from __future__ import annotations

import pytest

from eval.bench_refusal import accuracy_at, best_threshold

from .conftest import shared_data_dir


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


def test_the_english_split_indexes_the_fomc_statements_with_hand_written_questions(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from eval.bench_refusal import fomc_split

    monkeypatch.setenv("RAG_SHARED_DATA", str(shared_data_dir()))
    split = fomc_split()
    assert len(split.corpus) == 210 and len({d.id for d in split.corpus}) == 210
    assert len(split.answerable) == len(split.unanswerable) == 20
    assert all(q.answerable for q in split.answerable) and not any(q.answerable for q in split.unanswerable)
    assert not {q.question for q in split.answerable} & {q.question for q in split.unanswerable}
