"""Numbers and dates read as values: Korean units, English scales, stated precision, date forms."""

from __future__ import annotations

import pytest

from rag.text.quantities import find_dates, values_in


def _value(text: str) -> float:
    quantities, _ = values_in(text)
    assert len(quantities) == 1, quantities
    return quantities[0].value


@pytest.mark.parametrize(
    ("text", "value"),
    [
        ("265억원", 265e8),
        ("2조 6천억 원", 2.6e12),
        ("3만 5천 명", 35_000),
        ("1억2천만", 1.2e8),
        ("5천만 원", 5e7),
        ("12.5%", 12.5),
        ("26.5 billion won", 26.5e9),
        ("$3bn", 3e9),
        ("1,200 people", 1200),
        ("the 19th", 19),
        ("10km", 10),
    ],
)
def test_numbers_are_read_with_their_units(text: str, value: float) -> None:
    assert _value(text) == pytest.approx(value)


def test_a_number_matches_within_its_stated_precision_only() -> None:
    stated, _ = values_in("about 27억")
    assert stated[0].supported_by(26.8e8)  # 27억 rounds 26.8억
    finer, _ = values_in("26.8억")
    assert not finer[0].supported_by(27e8)  # evidence saying 27억 does not support the finer 26.8억
    assert values_in("26.5 billion")[0][0].supported_by(265e8)
    assert not values_in("2.65 trillion")[0][0].supported_by(2.6e12)


@pytest.mark.parametrize("text", ["제3조에 따라", "5G network", "3 조사", "3경기"])
def test_identifiers_and_nouns_are_not_amounts(text: str) -> None:
    quantities, _ = values_in(text)
    assert all(q.value < 10 for q in quantities), quantities


@pytest.mark.parametrize(
    ("text", "parts"),
    [
        ("2026년 7월 3일", (2026, 7, 3)),
        ("July 3, 2026", (2026, 7, 3)),
        ("3rd of July 2026", (2026, 7, 3)),
        ("2026.7.3. 발표", (2026, 7, 3)),
        ("2026-07-03", (2026, 7, 3)),
        ("2월15일부터", (None, 2, 15)),
        ("in February", (None, 2, None)),
        ("2021년 말부터", (2021, None, None)),
    ],
)
def test_dates_in_korean_and_english_forms(text: str, parts: tuple[int | None, ...]) -> None:
    dates = find_dates(text)
    assert [(d.year, d.month, d.day) for d in dates] == [parts]


def test_lower_case_may_is_not_a_month_and_a_date_is_no_number() -> None:
    assert find_dates("you may go") == []
    quantities, dates = values_in("2월 13일 부산에서 113개 기업이")
    assert [q.value for q in quantities] == [113]
    assert [(d.month, d.day) for d in dates] == [(2, 13)]
