"""The prompt settings: format, worked example, evidence order, language line."""

from __future__ import annotations

import datetime as dt

from ingest.pipeline import build_ingestor
from rag.answer.llm import Message
from rag.answer.prompts import EXAMPLE_QUESTION, QUOTE_THEN_SAY_SYSTEM
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService
from rag.types import Answer, Article
from tests.doubles import ScriptedLLM

CO_CHAIRS = "이날 총회에서 초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다."
ARTICLE = Article(
    id="alliance",
    title="스마트시티 융합 얼라이언스 출범",
    text=f"스마트시티 융합 얼라이언스가 2월 13일 부산 벡스코에서 공식 출범했다. {CO_CHAIRS} "
    "공동감사는 한국기업데이터가 맡는다.",
    date=dt.date(2024, 4, 20),
)


def _ask(settings: Settings, reply: str = "NOT_FOUND", **prompt: object) -> tuple[list[Message], Answer]:
    answer_settings = settings.answer.model_copy(update={"evidence_margin": 1.0, "evidence_sentences": 10, **prompt})
    llm = ScriptedLLM(reply)
    service = RagService(settings.model_copy(update={"answer": answer_settings}), embedder=FakeEmbedder(), llm=llm)
    build_ingestor(service).ingest_articles([ARTICLE])
    answer = service.answer("얼라이언스 공동의장사는 어디인가?")
    service.close()
    return llm.calls[0], answer


def _evidence_lines(messages: list[Message]) -> list[str]:
    return [line for line in messages[-1]["content"].splitlines() if line.startswith("[")]


def test_default_prompt_names_the_answer_language_and_has_no_example(settings: Settings) -> None:
    messages, _ = _ask(settings)
    assert [m["role"] for m in messages] == ["system", "user"]
    assert messages[-1]["content"].endswith("Answer in Korean.")


def test_without_the_language_line(settings: Settings) -> None:
    messages, _ = _ask(settings, language_instruction=False)
    assert "Answer in" not in messages[-1]["content"]


def test_worked_example_comes_before_the_question(settings: Settings) -> None:
    messages, _ = _ask(settings, prompt_example=True)
    assert [m["role"] for m in messages] == ["system", "user", "assistant", "user"]
    assert EXAMPLE_QUESTION in messages[1]["content"] and "[1]" in messages[2]["content"]


def test_best_last_reverses_the_evidence(settings: Settings) -> None:
    first, _ = _ask(settings)
    last, _ = _ask(settings, evidence_order="best-last")
    texts = [line.split("] ", 1)[1] for line in _evidence_lines(first)]
    assert [line.split("] ", 1)[1] for line in _evidence_lines(last)] == texts[::-1]


def test_quote_then_say_keeps_the_copied_quote_and_the_answer(settings: Settings) -> None:
    def number(messages: list[Message]) -> int:
        line = next(line for line in _evidence_lines(messages) if "공동의장사" in line)
        return int(line[1 : line.index("]")])

    probe, _ = _ask(settings, prompt_format="quote-then-say")
    n = number(probe)
    reply = f'"초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다" [{n}]\n공동의장사는 LG CNS와 이큐브랩이다 [{n}].'
    messages, answer = _ask(settings, reply, prompt_format="quote-then-say")
    assert messages[0]["content"] == QUOTE_THEN_SAY_SYSTEM
    assert answer.checks is not None and [c.verdict for c in answer.checks] == ["supported", "supported"]
    assert answer.answer.endswith("공동의장사는 LG CNS와 이큐브랩이다 [1].")
