"""Disagreeing sources: the answer says so and cites each side instead of silently picking one."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from ingest.pipeline import build_ingestor
from rag.answer.claims import ClaimChecker
from rag.answer.conflicts import asked_slot, find_conflict
from rag.answer.llm import Message
from rag.answer.prompts import SOURCES_DIFFER_EN, SOURCES_DIFFER_KO
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.embed.torch_embedder import SentenceTransformerEmbedder
from rag.service import RagService
from rag.text.analyzer import TermAnalyzer
from rag.types import Answer, Article
from tests.doubles import ScriptedLLM

from .conftest import SAMPLE_ARTICLE, make_settings

SAMPLE_CO_CHAIRS = ("LG CNS", "이큐브랩")
PLANTED_CO_CHAIRS = ("삼성SDS", "네이버")
# another outlet's report of the same launch that names other co-chairs and another amount
PLANTED = Article(
    id="planted-report",
    title="스마트시티 융합 얼라이언스 출범, 공동의장사 선임",
    text="스마트시티 융합 얼라이언스가 2월 13일 공식 출범했다. "
    "이날 총회에서 초대 공동의장사로 삼성SDS(대표이사 홍원표)와 네이버(대표 한성숙)가 선임됐다. "
    "정부는 2019년에 총 11개 사업에 300억원을 투자한다.",
    date=dt.date(2024, 4, 21),
)
SAMPLE_INVESTMENT = "먼저 정부는 2019년에 총 11개 사업에 265억원을 투자한다."


@dataclass(frozen=True)
class Item:
    text: str
    article_id: str
    score: float


@pytest.fixture(scope="module")
def checker() -> ClaimChecker:
    return ClaimChecker(TermAnalyzer())


@pytest.mark.parametrize(
    ("question", "slot"),
    [
        ("Who co-chairs the alliance?", "name"),
        ("얼라이언스 공동의장사는 어디인가?", "name"),
        ("How much will the government invest?", "number"),
        ("정부는 얼마를 투자하나?", "number"),
        ("When do residents move in?", "date"),
        ("주민입주는 몇 년부터인가?", "date"),
        ("Tell me about the alliance.", None),
    ],
)
def test_the_asked_slot(question: str, slot: str | None) -> None:
    assert asked_slot(question) == slot


def test_near_copies_with_different_amounts_conflict(checker: ClaimChecker) -> None:
    evidence = [
        Item(SAMPLE_INVESTMENT, "sample", 0.9),
        Item("스마트시티 융합 얼라이언스가 출범했다.", "sample", 0.88),
        Item("정부는 2019년에 총 11개 사업에 300억원을 투자한다.", "planted", 0.86),
    ]
    conflict = find_conflict("정부는 2019년에 얼마를 투자하나?", evidence, checker)
    assert conflict is not None and (conflict.first, conflict.second, conflict.slot) == (0, 2, "number")


@pytest.mark.parametrize(
    ("question", "other", "other_article", "score"),
    [
        (
            "정부는 2019년에 얼마를 투자하나?",
            "정부는 2019년에 총 11개 사업에 265억원을 투자한다.",
            "planted",
            0.86,
        ),  # agrees
        (
            "정부는 2019년에 얼마를 투자하나?",
            "올해 쌀 수확량은 작년보다 300만 톤 늘었다.",
            "planted",
            0.86,
        ),  # another matter
        (
            "정부는 2019년에 얼마를 투자하나?",
            "정부는 2019년에 총 11개 사업에 300억원을 투자한다.",
            "sample",
            0.86,
        ),  # one article
        (
            "정부는 2019년에 얼마를 투자하나?",
            "정부는 2019년에 총 11개 사업에 300억원을 투자한다.",
            "planted",
            0.5,
        ),  # far below
        ("정부 투자에 대해 알려줘", "정부는 2019년에 총 11개 사업에 300억원을 투자한다.", "planted", 0.86),  # no slot
    ],
)
def test_no_conflict_without_a_near_top_disagreement_from_another_article(
    checker: ClaimChecker, question: str, other: str, other_article: str, score: float
) -> None:
    evidence = [Item(SAMPLE_INVESTMENT, "sample", 0.9), Item(other, other_article, score)]
    assert find_conflict(question, evidence, checker) is None


# ---- answers: a contradicting article planted beside the sample one ------------------------------------------


def _names_both_sides(answer: Answer, lead_in: str, first: tuple[str, ...], second: tuple[str, ...]) -> None:
    assert not answer.refused and lead_in in answer.answer, answer.answer
    for side in (first, second):
        citation = next(c for c in answer.citations if all(name in c.quote for name in side))
        assert all(name in answer.answer for name in side)
        assert f"[{citation.n}]" in answer.answer
    assert {c.n for c in answer.citations} == set(range(1, len(answer.citations) + 1))


@pytest.fixture
def fake_planted(settings: Settings) -> Iterator[RagService]:
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    build_ingestor(service).ingest_articles([PLANTED])
    yield service
    service.close()


def test_extractive_answer_quotes_both_amounts(fake_planted: RagService) -> None:
    answer = fake_planted.answer("정부는 2019년에 얼마를 투자하나?")
    _names_both_sides(answer, SOURCES_DIFFER_KO, ("265억원",), ("300억원",))


def test_generated_answer_that_names_one_side_gets_the_other_appended(settings: Settings) -> None:
    def reply(messages: list[Message]) -> str:
        assert "different answers" in messages[-1]["content"]  # the model was told
        line = next(line for line in messages[-1]["content"].splitlines() if "265억원" in line)
        return f"정부는 265억원을 투자한다 {line[: line.index(']') + 1]}."

    service = RagService(settings, embedder=FakeEmbedder(), llm=ScriptedLLM(reply))
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    build_ingestor(service).ingest_articles([PLANTED])
    answer = service.answer("정부는 2019년에 얼마를 투자하나?")
    service.close()
    assert answer.answer.startswith("정부는 265억원을 투자한다 [1].")
    _names_both_sides(answer, SOURCES_DIFFER_KO, ("265억원",), ("300억원",))
    assert answer.checks is not None and [c.verdict for c in answer.checks] == ["supported"]


@pytest.fixture(scope="module")
def real_planted(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: SentenceTransformerEmbedder
) -> Iterator[RagService]:
    service = RagService(make_settings(tmp_path_factory.mktemp("planted")), embedder=real_embedder)
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    build_ingestor(service).ingest_articles([PLANTED])
    yield service
    service.close()


@pytest.mark.slow
@pytest.mark.parametrize(
    ("question", "lead_in"),
    [("얼라이언스 공동의장사는 어디인가?", SOURCES_DIFFER_KO), ("Who co-chairs the alliance?", SOURCES_DIFFER_EN)],
)
def test_both_co_chair_reports_are_named_with_their_citations(
    real_planted: RagService, question: str, lead_in: str
) -> None:
    _names_both_sides(real_planted.answer(question), lead_in, SAMPLE_CO_CHAIRS, PLANTED_CO_CHAIRS)


@pytest.mark.slow
def test_the_sample_article_alone_has_no_conflict(real_embedder: SentenceTransformerEmbedder, tmp_path: Path) -> None:
    service = RagService(make_settings(tmp_path), embedder=real_embedder)
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    for question in (
        "얼라이언스 공동의장사는 어디인가?",
        "Who co-chairs the alliance?",
        "정부는 2019년에 얼마를 투자하나?",
    ):
        answer = service.answer(question)
        assert SOURCES_DIFFER_KO not in answer.answer and SOURCES_DIFFER_EN not in answer.answer
    service.close()
