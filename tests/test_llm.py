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


def test_endpoint_error_becomes_an_llm_error_with_the_status() -> None:
    llm = _llm_with(httpx.MockTransport(lambda request: httpx.Response(503, text="overloaded")))
    with pytest.raises(LLMError, match="503"):
        complete(llm, [{"role": "user", "content": "q"}], max_tokens=5)


def test_unreachable_endpoint_is_an_llm_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused")

    with pytest.raises(LLMError, match="cannot reach"):
        complete(_llm_with(httpx.MockTransport(refuse)), [{"role": "user", "content": "q"}], max_tokens=5)


def test_factory_resolves_backends(settings: Settings, tmp_path: object) -> None:
    assert create_llm(settings) is None  # default: extractive
    missing = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": "local"})})
    missing.models.llm_file = "/nonexistent/model.gguf"
    with pytest.raises(ModelProvisioningError, match="models --llm"):
        create_llm(missing)
    openai = settings.model_copy(update={"llm": settings.llm.model_copy(update={"backend": "openai"})})
    with pytest.raises(ConfigurationError, match="RAG_OPENAI_BASE_URL"):
        create_llm(openai)
