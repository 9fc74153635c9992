"""LLM backends without a real model: the OpenAI-compatible client against a mock transport."""

from __future__ import annotations

import json

import httpx
import pytest

from rag.answer.llm import OpenAICompatibleLLM, complete, create_llm
from rag.config import Settings
from rag.errors import ConfigurationError, LLMError, ModelProvisioningError


def _llm_with(handler: httpx.MockTransport) -> OpenAICompatibleLLM:
    llm = OpenAICompatibleLLM("http://llm.test/v1", "qwen", "k3y", timeout_s=5)
    llm._client = httpx.Client(
        base_url="http://llm.test/v1", transport=handler, headers={"Authorization": "Bearer k3y"}
    )
    return llm


def test_streamed_chat_completion_is_joined_and_sends_model_and_key() -> None:
    seen: dict[str, object] = {}

    def handle(request: httpx.Request) -> httpx.Response:
        seen["body"] = json.loads(request.content)
        seen["auth"] = request.headers.get("authorization")
        seen["path"] = request.url.path
        events = [{"choices": [{"delta": {"content": piece}}]} for piece in ("LG CNS ", "and ", "IcubeLab [1].")]
        body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
        return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})

    llm = _llm_with(httpx.MockTransport(handle))
    reply = complete(llm, [{"role": "user", "content": "q"}], max_tokens=50)
    assert reply == "LG CNS and IcubeLab [1]."
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k3y"
    assert seen["body"]["model"] == "qwen" and seen["body"]["stream"] is True  # type: ignore[index]


SECRET = "sk-live-7f3a9c1e0b2d4f6a"  # what a failing endpoint may echo: its key, a stack trace, an HTML page
ERROR_PAGE = f"<html><body><h1>500 Internal Server Error</h1><pre>Traceback: auth={SECRET}</pre></body></html>"


def test_endpoint_error_is_a_generic_llm_error_with_the_details_in_the_log(caplog: pytest.LogCaptureFixture) -> None:
    llm = _llm_with(httpx.MockTransport(lambda request: httpx.Response(500, text=ERROR_PAGE)))
    with caplog.at_level("ERROR"), pytest.raises(LLMError) as raised:
        complete(llm, [{"role": "user", "content": "q"}], max_tokens=5)
    assert raised.value.message == "the language model service failed; try again later"
    assert SECRET not in str(raised.value) and "<html>" not in str(raised.value)
    logged = [record.getMessage() for record in caplog.records]
    assert len(logged) == 1 and "500" in logged[0] and SECRET in logged[0]


def test_a_reply_that_is_no_event_stream_is_a_failure_not_an_empty_answer(caplog: pytest.LogCaptureFixture) -> None:
    # a proxy's login or error page with status 200 used to read as an empty reply, shown as a refusal
    page = httpx.MockTransport(
        lambda request: httpx.Response(200, text=ERROR_PAGE, headers={"content-type": "text/html"})
    )
    with caplog.at_level("ERROR"), pytest.raises(LLMError, match="failed; try again later"):
        complete(_llm_with(page), [{"role": "user", "content": "q"}], max_tokens=5)
    assert any(SECRET in record.getMessage() for record in caplog.records)


def test_unreachable_endpoint_is_an_llm_error(caplog: pytest.LogCaptureFixture) -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused to http://10.1.2.3:8000")

    with caplog.at_level("ERROR"), pytest.raises(LLMError, match="cannot be reached") as raised:
        complete(_llm_with(httpx.MockTransport(refuse)), [{"role": "user", "content": "q"}], max_tokens=5)
    assert "10.1.2.3" not in raised.value.message
    assert any("10.1.2.3" in record.getMessage() for record in caplog.records)


def test_factory_resolves_backends(settings: Settings, tmp_path: object) -> None:
    assert create_llm(settings) is None  # default: extractive
    missing = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": "local"})})
    missing.models.llm_file = "/nonexistent/model.gguf"
    with pytest.raises(ModelProvisioningError, match="models --llm"):
        create_llm(missing)
    openai = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": "openai"})})
    with pytest.raises(ConfigurationError, match="RAG_OPENAI_BASE_URL"):
        create_llm(openai)
