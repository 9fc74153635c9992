"""Concurrency and back-pressure of the running app (real uvicorn, real local Qdrant, the fake embedder and a
fake OpenAI-compatible LLM server that takes its time, as a GPU server's generation does)."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager

import httpx
import pytest

import api.admission
from app import create_app
from ingest.pipeline import build_ingestor
from rag.answer.llm import OpenAICompatibleLLM
from rag.config import ApiSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService

from .fake_openai import FakeOpenAIServer
from .sample_articles import ALLIANCE
from .served import serve

ARTICLE = ALLIANCE
REPLY = "초대 공동의장사는 LG CNS와 이큐브랩이다 [1]."
QUESTION = {"question": "초대 공동의장사는 어디인가?"}
HANG_TIMEOUT_S = 120  # only to detect a hang: a healthy run takes seconds
# a generation of ~15 s (a character every 0.25 s) unless it is stopped; a stop is seen well before its end
LONG_REPLY = f"{REPLY} {REPLY}"
STOP_WITHIN_S = 12


@contextmanager
def running_app(settings: Settings, fake: FakeOpenAIServer, **limits: float) -> Iterator[str]:
    """The app (answering with `fake` as its LLM) served over HTTP; its base URL."""
    settings = settings.model_copy(update={"api": settings.api.model_copy(update=limits)})
    with serve(fake.app) as llm_url:
        llm = OpenAICompatibleLLM(f"{llm_url}/v1", "fake", api_key=None, timeout_s=60)
        service = RagService(settings, embedder=FakeEmbedder(), llm=llm)
        build_ingestor(service).ingest_articles([ARTICLE])
        try:
            with serve(create_app(service, with_ui=False)) as url:
                yield url
        finally:
            service.close()


def _seconds(call: Callable[[], object]) -> float:
    started = time.perf_counter()
    call()
    return time.perf_counter() - started


def _answer(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/answer", json=QUESTION, timeout=HANG_TIMEOUT_S)


def _wait_until(condition: Callable[[], bool], seconds: float = 30) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return False


def _idle(url: str) -> bool:
    return bool(httpx.get(f"{url}/readyz", timeout=10).json().get("inflight") == 0)


def test_answers_wait_on_a_remote_llm_together(settings: Settings) -> None:
    fake = FakeOpenAIServer(REPLY, delay_s=1.5)
    with running_app(settings, fake) as url:
        first = _answer(url)  # warm: the analyser, the in-process index
        assert first.status_code == 200 and first.json()["citations"], first.text
        one = _seconds(lambda: _answer(url))
        with ThreadPoolExecutor(8) as pool:
            started = time.perf_counter()
            responses = list(pool.map(lambda _: _answer(url), range(8)))
            eight = time.perf_counter() - started
    assert [r.status_code for r in responses] == [200] * 8
    assert all(r.json()["citations"] and not r.json()["refused"] for r in responses)
    print(f"one answer {one:.2f} s, 8 concurrent {eight:.2f} s: ratio {eight / one:.2f}")
    assert eight <= 3 * one, f"8 concurrent answers took {eight:.2f} s, one {one:.2f} s"
    assert fake.most_open == 8  # all eight were waiting on the LLM server at the same time


def _stream_answer(url: str) -> tuple[int, list[str]]:
    body = {**QUESTION, "stream": True}
    with httpx.stream("POST", f"{url}/v1/answer", json=body, timeout=HANG_TIMEOUT_S) as response:
        events = [line.removeprefix("event: ") for line in response.iter_lines() if line.startswith("event:")]
        return response.status_code, events


def _search(url: str) -> httpx.Response:
    return httpx.post(f"{url}/v1/search", json={"query": "공동감사"}, timeout=HANG_TIMEOUT_S)


def test_streams_and_a_burst_of_searches_all_complete(settings: Settings) -> None:
    fake = FakeOpenAIServer(REPLY, delay_s=1.5)
    with running_app(settings, fake) as url:
        _search(url)  # warm
        with ThreadPoolExecutor(47) as pool:
            streams = [pool.submit(_stream_answer, url) for _ in range(2)]
            searches = [pool.submit(_search, url) for _ in range(45)]
            streamed = [future.result(timeout=HANG_TIMEOUT_S) for future in streams]
            searched = [future.result(timeout=HANG_TIMEOUT_S) for future in searches]
        after = _search(url)
    for status, events in streamed:
        assert status in (200, 503)
        if status == 200:
            assert events[-1] == "answer", events
    assert {r.status_code for r in searched} <= {200, 503}
    assert sum(r.status_code == 200 for r in searched) >= 8
    for refused in (r for r in searched if r.status_code == 503):
        assert refused.json()["error"]["code"] == "overloaded" and int(refused.headers["retry-after"]) >= 1
    assert after.status_code == 200  # and the app still answers


def test_a_full_queue_is_a_503_with_retry_after(settings: Settings) -> None:
    fake = FakeOpenAIServer(REPLY, delay_s=1.5)
    with running_app(settings, fake, max_inflight=1, queue_depth=0) as url:
        with ThreadPoolExecutor(2) as pool:
            responses = list(pool.map(lambda _: _answer(url), range(2)))
        statuses = sorted(r.status_code for r in responses)
        assert statuses == [200, 503]
        refused = next(r for r in responses if r.status_code == 503)
        assert refused.json()["error"]["code"] == "overloaded"
        assert int(refused.headers["retry-after"]) >= 1
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'rag_rejected_requests_total{reason="overloaded"} 1.0' in metrics


def test_a_request_past_its_timeout_is_a_504_and_its_generation_stops(settings: Settings) -> None:
    fake = FakeOpenAIServer(LONG_REPLY, delay_s=0.0, pieces=len(LONG_REPLY), piece_delay_s=0.25)
    with running_app(settings, fake, request_timeout_s=1.0) as url:
        response = _answer(url)
        assert response.status_code == 504 and response.json()["error"]["code"] == "timeout"
        # the LLM stream was closed early
        assert _wait_until(lambda: fake.disconnected == 1, seconds=STOP_WITHIN_S)
        assert _wait_until(lambda: _idle(url))


def test_a_client_that_leaves_a_stream_stops_its_generation(settings: Settings) -> None:
    fake = FakeOpenAIServer(LONG_REPLY, delay_s=0.0, pieces=len(LONG_REPLY), piece_delay_s=0.25)
    with running_app(settings, fake) as url:
        body = {**QUESTION, "stream": True}
        with httpx.stream("POST", f"{url}/v1/answer", json=body, timeout=HANG_TIMEOUT_S) as response:
            first = next(line for line in response.iter_lines() if line.startswith("event:"))
        assert first == "event: token"
        assert _wait_until(lambda: fake.disconnected == 1, seconds=STOP_WITHIN_S)
        assert _wait_until(lambda: _idle(url))


def test_a_client_that_stops_waiting_for_an_answer_stops_its_generation(
    settings: Settings, caplog: pytest.LogCaptureFixture
) -> None:
    fake = FakeOpenAIServer(LONG_REPLY, delay_s=0.0, pieces=len(LONG_REPLY), piece_delay_s=0.25)
    with running_app(settings, fake) as url, caplog.at_level("WARNING"):
        with pytest.raises(httpx.ReadTimeout):
            httpx.post(f"{url}/v1/answer", json=QUESTION, timeout=1.0)
        assert _wait_until(lambda: fake.disconnected == 1, seconds=STOP_WITHIN_S)
        assert _wait_until(lambda: _idle(url))
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'rag_rejected_requests_total{reason="client_gone"} 1.0' in metrics
    assert 'route="/v1/answer",status="499"' in metrics
    assert not [record for record in caplog.records if record.levelname in ("WARNING", "ERROR")]  # a normal event


def test_readiness_while_busy_and_while_stuck(settings: Settings, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(api.admission, "STUCK_GRACE_S", 0.5)
    # the first byte takes 10 s: a worker blocked in that read cannot stop at its 3 s deadline
    fake = FakeOpenAIServer(REPLY, delay_s=10.0)
    with running_app(settings, fake, max_inflight=1, request_timeout_s=3.0) as url:
        readiness: list[httpx.Response] = []

        def not_ready() -> bool:
            readiness.append(httpx.get(f"{url}/readyz", timeout=10))
            return readiness[-1].status_code == 503

        with ThreadPoolExecutor(1) as pool:
            pending = pool.submit(_answer, url)
            assert _wait_until(lambda: fake.open == 1)
            busy = httpx.get(f"{url}/readyz", timeout=10)
            assert busy.status_code == 200 and busy.json()["saturated"] is True  # busy is still ready
            assert _wait_until(not_ready, seconds=10)
            assert pending.result(timeout=HANG_TIMEOUT_S).status_code == 504
        assert readiness[-1].json()["error"]["code"] == "stuck"
        assert _wait_until(lambda: httpx.get(f"{url}/readyz", timeout=10).status_code == 200)


def test_metrics_count_requests_stages_and_answers(settings: Settings) -> None:
    fake = FakeOpenAIServer(REPLY, delay_s=0.0)
    with running_app(settings, fake) as url:
        assert _answer(url).status_code == 200
        assert _search(url).status_code == 200
        response = httpx.get(f"{url}/metrics", timeout=10)
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert 'rag_http_requests_total{method="POST",route="/v1/answer",status="200"} 1.0' in text
    for stage in ("embed", "search", "evidence", "generate", "total"):
        assert f'rag_stage_duration_seconds_count{{stage="{stage}"}}' in text
    assert 'rag_answers_total{outcome="answered"} 1.0' in text
    assert "rag_queue_depth 0.0" in text and "rag_inflight" in text


def test_metrics_count_uploads(settings: Settings) -> None:
    fake = FakeOpenAIServer(REPLY, delay_s=0.0)
    with running_app(settings, fake) as url:
        files = {
            "files": (
                "rail.txt",
                "철도 안전 대책\n\n국토교통부는 철도 안전 강화 대책을 발표했다.".encode(),
                "text/plain",
            )
        }
        assert httpx.post(f"{url}/v1/ingest", files=files, timeout=HANG_TIMEOUT_S).status_code == 200
        text = httpx.get(f"{url}/metrics", timeout=10).text
    assert 'rag_ingest_documents_total{outcome="added"} 1.0' in text


def test_streamed_answer_events_are_well_formed(settings: Settings) -> None:
    fake = FakeOpenAIServer(REPLY, delay_s=0.0)
    with running_app(settings, fake) as url:
        body = {**QUESTION, "stream": True}
        with httpx.stream("POST", f"{url}/v1/answer", json=body, timeout=HANG_TIMEOUT_S) as response:
            blocks = [block for block in response.read().decode().split("\n\n") if block.strip()]
    final = json.loads(blocks[-1].split("data: ", 1)[1])
    assert blocks[0].startswith("event: token") and blocks[-1].startswith("event: answer")
    assert final["citations"] and "[1]" in final["answer"]


def test_settings_reject_a_blank_api_key() -> None:
    with pytest.raises(ValueError, match="blank"):
        ApiSettings(key="  ")  # type: ignore[arg-type]
