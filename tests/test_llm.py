"""LLM backends without a real model: the OpenAI-compatible client (llama-index's OpenAILike) against a mock
transport."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import pytest

from rag.answer.llm import Message, OpenAICompatibleLLM, complete, create_llm
from rag.config import Settings
from rag.errors import ConfigurationError, LLMError, ModelProvisioningError


def _llm_with(handler: httpx.MockTransport, **options: Any) -> OpenAICompatibleLLM:
    return OpenAICompatibleLLM(
        "http://llm.test/v1", "qwen", "k3y", timeout_s=5, http_client=httpx.Client(transport=handler), **options
    )


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
    # the messages as the prompt layer wrote them (document text already neutralised there) reach the endpoint
    # untouched: no template, no added system prompt
    messages: list[Message] = [
        {"role": "system", "content": "Answer from the evidence."},
        {
            "role": "user",
            "content": "<evidence>\n[1] 공동의장사로 LG CNS와 이큐브랩이 선임됐다.\n</evidence>\nQuestion: q",
        },
        {"role": "assistant", "content": "LG CNS [1]."},
        {"role": "user", "content": "  and who audits?  "},
    ]
    reply = complete(llm, messages, max_tokens=50, temperature=0.3)
    assert reply == "LG CNS and IcubeLab [1]."
    assert seen["path"] == "/v1/chat/completions" and seen["auth"] == "Bearer k3y"
    body: Any = seen["body"]
    assert body["model"] == "qwen" and body["stream"] is True
    assert body["messages"] == messages
    assert body["temperature"] == 0.3 and body["max_tokens"] == 50


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


@pytest.mark.parametrize("failure", [httpx.ConnectError, httpx.ReadTimeout])
def test_unreachable_endpoint_is_an_llm_error(
    failure: type[httpx.TransportError], caplog: pytest.LogCaptureFixture
) -> None:
    attempts: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        attempts.append(request)
        raise failure("no answer from http://10.1.2.3:8000")

    llm = _llm_with(httpx.MockTransport(refuse), max_retries=1)
    with caplog.at_level("ERROR"), pytest.raises(LLMError, match="cannot be reached") as raised:
        complete(llm, [{"role": "user", "content": "q"}], max_tokens=5)
    assert len(attempts) == 2  # retried once
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
    openai.openai = openai.openai.model_copy(
        update={"base_url": "http://gpu:8000/v1", "model": "qwen", "context_window": 2048, "max_retries": 0}
    )
    endpoint = create_llm(openai)
    assert isinstance(endpoint, OpenAICompatibleLLM) and endpoint.name == "openai:qwen"
    assert endpoint.context_window == 2048


def _event_stream(*pieces: str) -> httpx.Response:
    events = [{"choices": [{"delta": {"content": piece}}]} for piece in pieces]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events) + "data: [DONE]\n\n"
    return httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})


def test_a_busy_endpoint_is_retried_and_a_page_that_is_no_event_stream_is_not() -> None:
    statuses: list[int] = []

    def busy_once(request: httpx.Request) -> httpx.Response:
        statuses.append(503 if not statuses else 200)
        return httpx.Response(503, json={"error": {"message": "busy"}}) if len(statuses) == 1 else _event_stream("ok")

    assert (
        complete(
            _llm_with(httpx.MockTransport(busy_once), max_retries=1), [{"role": "user", "content": "q"}], max_tokens=5
        )
        == "ok"
    )
    assert statuses == [503, 200]
    pages: list[httpx.Request] = []

    def login_page(request: httpx.Request) -> httpx.Response:
        pages.append(request)
        return httpx.Response(200, text=ERROR_PAGE, headers={"content-type": "text/html"})

    with pytest.raises(LLMError):
        complete(
            _llm_with(httpx.MockTransport(login_page), max_retries=2), [{"role": "user", "content": "q"}], max_tokens=5
        )
    assert len(pages) == 1


def test_an_error_event_mid_stream_is_a_generic_failure(caplog: pytest.LogCaptureFixture) -> None:
    events = [{"choices": [{"delta": {"content": "LG "}}]}, {"error": {"message": SECRET}}]
    body = "".join(f"data: {json.dumps(e)}\n\n" for e in events)
    broken = httpx.MockTransport(
        lambda request: httpx.Response(200, text=body, headers={"content-type": "text/event-stream"})
    )
    with caplog.at_level("ERROR"), pytest.raises(LLMError) as raised:
        complete(_llm_with(broken), [{"role": "user", "content": "q"}], max_tokens=5)
    assert raised.value.message == "the language model service failed; try again later"
    assert any(SECRET in record.getMessage() for record in caplog.records)


def test_the_reply_cap_is_cut_to_what_the_context_window_leaves(caplog: pytest.LogCaptureFixture) -> None:
    sent: list[dict[str, Any]] = []

    def handle(request: httpx.Request) -> httpx.Response:
        sent.append(json.loads(request.content))
        return _event_stream("ok")

    llm = _llm_with(httpx.MockTransport(handle), context_window=1024)
    # a document may hold tiktoken's own special tokens: counted as text, never an error
    evidence = "정부는 내년 예산안을 656조원으로 편성했다. <|endoftext|> " * 20
    messages: list[Message] = [{"role": "system", "content": "answer"}, {"role": "user", "content": evidence}]
    prompt_tokens = llm.count_prompt_tokens(messages)
    assert 400 < prompt_tokens < 1024 - 64
    complete(llm, messages, max_tokens=4096)
    assert sent[-1]["max_tokens"] == 1024 - prompt_tokens - 64
    complete(llm, messages, max_tokens=50)
    assert sent[-1]["max_tokens"] == 50
    too_long: list[Message] = [{"role": "user", "content": evidence * 3}]
    with caplog.at_level("ERROR"), pytest.raises(LLMError, match="failed; try again later"):
        complete(llm, too_long, max_tokens=50)
    assert len(sent) == 2  # nothing sent that the endpoint would cut or refuse
    assert any("RAG_OPENAI_CONTEXT_WINDOW" in record.getMessage() for record in caplog.records)


def test_without_a_key_no_key_from_the_environment_reaches_the_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    # the openai client reads OPENAI_API_KEY when no key is given: a key for another service must not leak here
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    seen: list[str | None] = []

    def handle(request: httpx.Request) -> httpx.Response:
        seen.append(request.headers.get("authorization"))
        return _event_stream("ok")

    client = httpx.Client(transport=httpx.MockTransport(handle))
    llm = OpenAICompatibleLLM("http://llm.test/v1", "qwen", None, timeout_s=5, http_client=client)
    complete(llm, [{"role": "user", "content": "q"}], max_tokens=5)
    assert seen and SECRET not in str(seen)


def test_pieces_arrive_while_the_endpoint_is_still_writing() -> None:
    # a real loopback server that holds back the rest of its reply until the first piece has reached the caller:
    # a client that waited for the whole body would never see it
    first_piece_seen = threading.Event()
    released: list[bool] = []  # whether the server went on because the caller had the first piece

    class Streaming(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            self.send_response(200)
            self.send_header("content-type", "text/event-stream")
            self.send_header("transfer-encoding", "chunked")
            self.end_headers()
            self._send({"choices": [{"delta": {"role": "assistant", "content": "LG CNS "}}]})
            # generous: only keeps a buffering client from hanging the test
            released.append(first_piece_seen.wait(timeout=30))
            self._send({"choices": [{"delta": {"content": "and IcubeLab [1]."}}]})
            self._chunk(b"data: [DONE]\n\n")
            self._chunk(b"")

        def _send(self, event: dict[str, Any]) -> None:
            self._chunk(f"data: {json.dumps(event)}\n\n".encode())

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Streaming)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        llm = OpenAICompatibleLLM(f"http://127.0.0.1:{server.server_address[1]}/v1", "qwen", None, timeout_s=60)
        pieces = []
        for piece in llm.stream([{"role": "user", "content": "q"}], max_tokens=20, temperature=0):
            pieces.append((piece, first_piece_seen.is_set()))
            first_piece_seen.set()
    finally:
        server.shutdown()
        server.server_close()
    assert pieces == [("LG CNS ", False), ("and IcubeLab [1].", True)]
    assert released == [True]


def test_a_caller_that_stops_reading_closes_the_upstream_response() -> None:
    closed: list[bool] = []

    class Events(httpx.SyncByteStream):
        def __iter__(self) -> Iterator[bytes]:
            for piece in ("LG CNS ", "and ", "IcubeLab [1]."):
                yield f"data: {json.dumps({'choices': [{'delta': {'content': piece}}]})}\n\n".encode()

        def close(self) -> None:
            closed.append(True)

    events = httpx.MockTransport(
        lambda request: httpx.Response(200, stream=Events(), headers={"content-type": "text/event-stream"})
    )
    pieces = _llm_with(events).stream([{"role": "user", "content": "q"}], max_tokens=20, temperature=0)
    assert next(pieces) == "LG CNS "
    assert not closed
    pieces.close()  # a reader who left mid-answer
    assert closed
