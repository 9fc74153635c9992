"""The claim check: every generated sentence is supported by what it cites, repaired from it, or dropped."""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator

import httpx
import pytest
from fastapi.testclient import TestClient

from app import create_app
from ingest.pipeline import build_ingestor
from rag.answer.claims import ClaimChecker
from rag.answer.llm import Message, OpenAICompatibleLLM
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService
from rag.text.analyzer import TermAnalyzer
from rag.text.lexicon import Lexicon
from rag.types import Answer, Article
from tests.doubles import ScriptedLLM

LAUNCH = "스마트시티 융합 얼라이언스가 2월 13일 부산 벡스코에서 공식 출범했다."
CO_CHAIRS = "이날 총회에서 초대 공동의장사로 LG CNS(대표이사 김영섭)와 이큐브랩(대표 권순범)이 선임됐다."
INVESTMENT = "정부는 2019년에 총 11개 사업에 265억원을 투자한다."
AUDITORS = "공동감사는 한국기업데이터(대표이사 송병선)와 한국성장금융투자운용(대표이사 이동춘)가 맡는다."
ARTICLE = Article(
    id="alliance",
    title="스마트시티 융합 얼라이언스 출범",
    text=f"{LAUNCH} {CO_CHAIRS} {INVESTMENT} 자세한 내용은 www.smartcity.go.kr 에서 볼 수 있다.",
    date=dt.date(2024, 4, 20),
)


@pytest.fixture(scope="module")
def checker() -> ClaimChecker:
    lexicon = Lexicon({"committe": ("위원회",), "resid": ("주민",)})  # stems, as the built lexicon keys them
    return ClaimChecker(TermAnalyzer(), lexicon)


# ---- the check on its own ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("sentence", "evidence"),
    [
        ("The government will invest 26.5 billion won in 11 projects.", INVESTMENT),  # 265억 = 26.5 billion
        ("정부는 2.65e10이 아니라 265억원을 투자한다.", INVESTMENT),
        ("The co-chairs are LG CNS and E-Cube Lab.", CO_CHAIRS),  # romanised: E-Cube Lab ↔ 이큐브랩
        ("LG CNS and IcubeLab co-chair it.", CO_CHAIRS),
        ("LG CNS, led by CEO Kim Young-sub, co-chairs it.", CO_CHAIRS),  # 김영섭
        ("It was launched in Busan on February 13.", LAUNCH),  # 부산, 2월 13일
        ("It launched at BEXCO.", LAUNCH),
        ("Song Byung-sun and Lee Dong-chun head the auditors.", AUDITORS),  # surname + given name's sound
        ("Byung-sun Song heads one.", AUDITORS),
        ("공동의장사는 LG CNS와 이큐브랩이다.", CO_CHAIRS),
        ("Residents of the Committee agreed.", "위원회 주민들이 동의했다."),  # lexicon translations
    ],
)
def test_claims_found_in_the_evidence_are_supported(checker: ClaimChecker, sentence: str, evidence: str) -> None:
    assert checker.unsupported(sentence, [evidence], "") == []


@pytest.mark.parametrize(
    ("sentence", "evidence", "missing"),
    [
        ("The government will invest 30 billion won.", INVESTMENT, "30 billion"),
        ("정부는 2조 6천억원을 투자한다.", INVESTMENT, "2조 6천억"),
        ("The alliance was launched in Seoul.", LAUNCH, "Seoul"),
        ("It was launched on February 15.", LAUNCH, "February 15"),
        ("The co-chairs are Samsung SDS and LG CNS.", CO_CHAIRS, "Samsung SDS"),
        ("공동의장사는 네이버다.", CO_CHAIRS, "네이버"),
        ("The auditor is headed by Song Bonglin.", AUDITORS, "Song Bonglin"),  # 송병선 is Song Byung-sun
        ("Details are at https://evil.example.com/x.", LAUNCH, "https://evil.example.com/x"),
        ("You can write to tips@evil.example.", LAUNCH, "tips@evil.example"),
    ],
)
def test_a_claim_the_evidence_lacks_is_named(checker: ClaimChecker, sentence: str, evidence: str, missing: str) -> None:
    assert [claim.text for claim in checker.unsupported(sentence, [evidence], "")] == [missing]


def test_the_questions_own_words_and_numbers_are_not_claims(checker: ClaimChecker) -> None:
    question = "How much will the Seoul government invest in 2019?"
    assert checker.unsupported("In 2019 the Seoul government invests 26.5 billion won.", [INVESTMENT], question) == []


def test_common_words_capitalised_at_a_sentence_start_are_not_names(checker: ClaimChecker) -> None:
    assert checker.claims("Auditing is done by the alliance.") == []
    assert checker.claims("However, it was launched.") == []
    assert [c.text for c in checker.claims("Busan hosted it.")] == ["Busan"]


# ---- answers with a scripted LLM -----------------------------------------------------------------------


@pytest.fixture
def settings_wide(settings: Settings) -> Settings:
    # give the scripted model every sentence, whatever the fake embedder scores
    answer = settings.answer.model_copy(update={"evidence_margin": 1.0, "evidence_sentences": 10})
    return settings.model_copy(update={"answer": answer})


def _service(settings: Settings, llm: ScriptedLLM) -> Iterator[RagService]:
    service = RagService(settings, embedder=FakeEmbedder(), llm=llm)
    build_ingestor(service).ingest_articles([ARTICLE])
    yield service
    service.close()


def _number(messages: list[Message], needle: str) -> int:
    for line in messages[-1]["content"].splitlines():
        if needle in line and line.startswith("["):
            return int(line[1 : line.index("]")])
    raise AssertionError(f"{needle!r} not in the evidence given to the model")


def _answer(settings: Settings, question: str, reply: str, needle: str) -> Answer:
    """The answer to `question` when the model replies `reply`, where {n} is the number of the evidence holding
    `needle`."""
    llm = ScriptedLLM(lambda messages: reply.format(n=_number(messages, needle)))
    for service in _service(settings, llm):
        answer = service.answer(question)
        _assert_consistent(answer)
        return answer
    raise AssertionError("no service")


def _assert_consistent(answer: Answer) -> None:
    """Every marker refers to a citation, every quote is the article's text at its offsets."""
    numbers = {c.n for c in answer.citations}
    assert numbers == set(range(1, len(numbers) + 1))
    for n in range(1, 10):
        assert (f"[{n}]" in answer.answer) == (n in numbers)
    for citation in answer.citations:
        assert ARTICLE.text[citation.start : citation.end] == citation.quote


def test_wrong_number_is_repaired_with_the_cited_quote(settings_wide: Settings) -> None:
    answer = _answer(
        settings_wide, "How much will the government invest in 2019?", "It will invest 30 billion won [{n}].", "265억"
    )
    assert answer.checks is not None and [c.verdict for c in answer.checks] == ["repaired"]
    assert answer.checks[0].unsupported == ["30 billion"]
    assert "30 billion" not in answer.answer
    assert answer.answer == f"{INVESTMENT} [1]"


def test_wrong_city_is_repaired(settings_wide: Settings) -> None:
    answer = _answer(settings_wide, "Where was the alliance launched?", "It was launched in Seoul [{n}].", "부산")
    assert answer.checks is not None and answer.checks[0].verdict == "repaired"
    assert answer.checks[0].unsupported == ["Seoul"]
    assert "Seoul" not in answer.answer and "부산" in answer.answer


def test_romanised_name_that_matches_is_supported(settings_wide: Settings) -> None:
    answer = _answer(
        settings_wide, "Who co-chairs the alliance?", "LG CNS and E-Cube Lab co-chair it [{n}].", "이큐브랩"
    )
    assert answer.checks is not None and answer.checks[0].verdict == "supported"
    assert answer.answer == "LG CNS and E-Cube Lab co-chair it [1]."


def test_korean_unit_conversion_that_matches_is_supported(settings_wide: Settings) -> None:
    answer = _answer(
        settings_wide,
        "How much will the government invest?",
        "The government will invest 26.5 billion won in 11 projects [{n}].",
        "265억",
    )
    assert answer.checks is not None and answer.checks[0].verdict == "supported"
    assert "26.5 billion" in answer.answer


def test_each_sentence_gets_its_own_verdict(settings_wide: Settings) -> None:
    reply = (
        "LG CNS and 이큐브랩 were chosen [{n}]. It launched in Daegu [{n}]. The moon is made of cheese. "
        "See http://phish.example.net now [{n}]."
    )
    answer = _answer(settings_wide, "Who co-chairs the alliance?", reply, "이큐브랩")
    assert answer.checks is not None
    verdicts = [(c.sentence, c.verdict) for c in answer.checks]
    assert verdicts == [
        ("LG CNS and 이큐브랩 were chosen.", "supported"),
        ("It launched in Daegu.", "dropped"),  # its evidence is already cited above: not repeated
        ("The moon is made of cheese.", "dropped"),  # cites nothing, repeats nothing
        ("See http://phish.example.net now.", "dropped"),  # a link its evidence lacks is never shown
    ]
    assert answer.answer == "LG CNS and 이큐브랩 were chosen [1]."
    assert "phish" not in answer.answer and "Daegu" not in answer.answer


def test_a_link_the_evidence_holds_is_supported(settings_wide: Settings) -> None:
    answer = _answer(settings_wide, "Where are the details?", "See www.smartcity.go.kr [{n}].", "smartcity.go.kr")
    assert answer.checks is not None and answer.checks[0].verdict == "supported"


def test_a_claim_in_a_neighbouring_sentence_adds_its_citation(settings_wide: Settings) -> None:
    # the model cites the launch sentence for the investment figure, which the next sentence of the article holds
    reply = "스마트시티 융합 얼라이언스가 부산 벡스코에서 공식 출범했고 265억원이 투자된다 [{n}]."
    answer = _answer(settings_wide, "무슨 일이 있었나?", reply, "부산")
    assert answer.checks is not None and answer.checks[0].verdict == "supported"
    assert answer.checks[0].citations == [1, 2]
    assert {c.quote for c in answer.citations} == {LAUNCH, INVESTMENT}


def test_streaming_ends_with_the_checked_answer(settings_wide: Settings) -> None:
    llm = ScriptedLLM(lambda messages: f"It was launched in Seoul [{_number(messages, '부산')}].")
    for service in _service(settings_wide, llm):
        events = list(service.answer_stream("Where was the alliance launched?"))
        streamed = "".join(e for e in events if isinstance(e, str))
        final = events[-1]
        assert "Seoul" in streamed  # the model's words while it writes…
        assert isinstance(final, Answer) and "Seoul" not in final.answer  # …the checked answer once final
        assert final.checks is not None and final.checks[0].verdict == "repaired"
        assert "check" in final.timings_ms


def test_extractive_answers_have_no_checks(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_articles([ARTICLE])
    answer = service.answer("공동의장사는 어디인가?")
    service.close()
    assert not answer.refused and answer.checks is None


def test_http_answer_carries_the_checks_and_the_stream_ends_with_the_checked_answer(settings_wide: Settings) -> None:
    llm = ScriptedLLM(lambda messages: f"It was launched in Seoul [{_number(messages, '부산')}].")
    for service in _service(settings_wide, llm):
        with TestClient(create_app(service, with_ui=False)) as client:
            body = client.post("/v1/answer", json={"question": "Where was the alliance launched?"}).json()
            assert [c["verdict"] for c in body["checks"]] == ["repaired"] and "Seoul" not in body["answer"]
            streamed = client.post("/v1/answer", json={"question": "Where was the alliance launched?", "stream": True})
            events = [block for block in streamed.text.split("\n\n") if block.strip()]
            tokens = "".join(
                json.loads(e.split("data: ", 1)[1])["text"] for e in events if e.startswith("event: token")
            )
            final = json.loads(events[-1].split("data: ", 1)[1])
            assert "Seoul" in tokens and events[-1].startswith("event: answer")
            assert final["answer"] == body["answer"] and final["checks"] == body["checks"]


def test_the_openai_compatible_backend_goes_through_the_same_check(settings_wide: Settings) -> None:
    def handle(request: httpx.Request) -> httpx.Response:
        prompt = json.loads(request.content)["messages"][-1]["content"]
        n = next(line[1 : line.index("]")] for line in prompt.splitlines() if "부산" in line and line.startswith("["))
        chunk = {"choices": [{"delta": {"content": f"It was launched in Seoul [{n}]."}}]}
        body = f"data: {json.dumps(chunk)}\n\ndata: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    client = httpx.Client(transport=httpx.MockTransport(handle))
    llm = OpenAICompatibleLLM("http://llm.test/v1", "a-7b-model", None, timeout_s=5, http_client=client)
    service = RagService(settings_wide, embedder=FakeEmbedder(), llm=llm)
    build_ingestor(service).ingest_articles([ARTICLE])
    answer = service.answer("Where was the alliance launched?")
    service.close()
    assert answer.checks is not None and answer.checks[0].verdict == "repaired" and "Seoul" not in answer.answer


def test_a_model_refusal_over_relevant_evidence_quotes_it_as_extractive_mode_does(settings_wide: Settings) -> None:
    for service in _service(settings_wide, ScriptedLLM("NOT_FOUND")):
        answer = service.answer("정부는 2019년에 얼마를 투자하나?")
        extractive = RagService(settings_wide, embedder=service.embedder, store=service.store).answer(
            "정부는 2019년에 얼마를 투자하나?"
        )
        assert not answer.refused and answer.checks == []
        assert answer.answer == extractive.answer and answer.citations == extractive.citations
