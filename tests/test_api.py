"""The HTTP interface (docs/interfaces.md) over a service with the fake embedder and real local Qdrant."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import gradio as gr
import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.chat_page import ChatPage
from app import create_app
from ingest.pipeline import build_ingestor
from rag.answer.llm import OpenAICompatibleLLM
from rag.config import ApiSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.feedback import FeedbackStore
from rag.service import RagService

from .sample_articles import ALLIANCE
from .test_llm import ERROR_PAGE, SECRET

ARTICLE = ALLIANCE


def _client(settings: Settings, ingest: bool = True) -> Iterator[TestClient]:
    service = RagService(settings, embedder=FakeEmbedder())
    if ingest:
        build_ingestor(service).ingest_articles([ARTICLE])
    with TestClient(create_app(service, with_ui=False)) as client:
        yield client
    service.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    yield from _client(settings)


def test_answer_returns_citations_whose_offsets_slice_the_stored_text(client: TestClient) -> None:
    response = client.post("/v1/answer", json={"question": "초대 공동의장사는 어디인가?"})
    assert response.status_code == 200
    body = response.json()
    assert body["refused"] is False
    assert set(body) >= {"answer", "refused", "citations", "timings_ms"}
    assert body["citations"], body
    for citation in body["citations"]:
        assert f"[{citation['n']}]" in body["answer"]
        assert ARTICLE.text[citation["start"] : citation["end"]] == citation["quote"]
        assert citation["doc_id"] == "alliance" and citation["url"] == ARTICLE.url and citation["date"] == "2024-04-20"
    markers = {int(n) for n in __import__("re").findall(r"\[(\d+)\]", body["answer"])}
    assert markers <= {c["n"] for c in body["citations"]}


def test_search_returns_hits_with_metadata(client: TestClient) -> None:
    response = client.post("/v1/search", json={"query": "공동감사", "top_k": 3})
    assert response.status_code == 200
    hits = response.json()["hits"]
    assert hits and set(hits[0]) == {"doc_id", "chunk_id", "title", "url", "date", "text", "score"}
    assert hits[0]["doc_id"] == "alliance"


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"question": ""},
        {"question": "   "},
        {"question": 42},
        {"question": "x", "top_k": 0},
        {"question": "x", "top_k": "many"},
        {"question": "x", "filters": {"date_from": "yesterday"}},
        {"question": "x", "filters": {"date_from": "2024-05-01", "date_to": "2024-01-01"}},
        {"question": "x", "filters": {"colour": "red"}},
        {"question": "x", "history": [{"role": "system", "content": "hi"}]},
        {"question": "x" * 5000},
        {"question": "🤔🤔 ?!"},
        {"question": "\u0000\u0001"},
        [],
        # values of the wrong kind are refused, not coerced: these used to mean 1970-01-01, 1970-01-02, 1, 5 and true
        {"question": "x", "filters": {"date_from": 0}},
        {"question": "x", "filters": {"date_to": "86400"}},
        {"question": "x", "top_k": True},
        {"question": "x", "top_k": "5"},
        {"question": "x", "stream": 1},
    ],
)
def test_malformed_requests_get_a_json_4xx_never_a_500(client: TestClient, body: object) -> None:
    response = client.post("/v1/answer", json=body)
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and error["message"]


def test_broken_json_is_a_4xx(client: TestClient) -> None:
    response = client.post("/v1/answer", content=b"{not json", headers={"content-type": "application/json"})
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_request" and "not valid JSON" in error["message"]


def test_a_body_that_is_not_json_says_what_to_send(client: TestClient) -> None:
    response = client.post("/v1/answer", content=b"question=hi", headers={"content-type": "text/plain"})
    assert response.status_code == 422
    assert "Content-Type: application/json" in response.json()["error"]["message"]
    undecodable = client.post(
        "/v1/answer", content=b'{"question": "\xff\xfe"}', headers={"content-type": "application/json"}
    )
    assert undecodable.status_code in (400, 422) and undecodable.json()["error"]["code"] == "invalid_request"


def test_a_bad_date_says_how_to_write_one(client: TestClient) -> None:
    response = client.post("/v1/answer", json={"question": "x", "filters": {"date_from": "yesterday"}})
    assert "YYYY-MM-DD" in response.json()["error"]["message"]


def test_a_blank_search_query_is_refused_like_a_blank_question(client: TestClient) -> None:
    for query in ("   ", "🙂"):
        response = client.post("/v1/search", json={"query": query})
        assert response.status_code == 422 and response.json()["error"]["code"] == "invalid_request"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/v1/answer", 405),
        ("PUT", "/v1/search", 405),
        ("DELETE", "/v1/ingest", 405),
        ("POST", "/v1/unknown", 404),
        ("POST", "/V1/answer", 404),
        ("POST", "/healthz", 405),
    ],
)
def test_wrong_methods_and_unknown_api_paths_get_the_error_shape(
    settings: Settings, method: str, path: str, status: int
) -> None:
    # with the chat page mounted at "/", these used to fall through to Gradio's {"detail": "Not Found"}
    service = RagService(settings, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=True)) as client:
        response = client.request(method, path, json={"question": "x"})
        assert response.status_code == status
        assert set(response.json()["error"]) == {"code", "message"}
        if status == 405:
            assert response.headers["allow"]
    service.close()


def test_a_trailing_slash_and_head_reach_the_route(client: TestClient) -> None:
    assert client.post("/v1/search/", json={"query": "공동감사"}).status_code == 200
    assert client.head("/healthz").status_code == 200
    assert client.head("/readyz").status_code == 200


def test_a_body_over_the_cap_is_refused_before_it_is_parsed(settings: Settings) -> None:
    small = settings.model_copy(update={"api": ApiSettings(max_request_mb=0.01)})
    for client in _client(small, ingest=False):
        response = client.post("/v1/answer", json={"question": "x", "pad": "y" * 20_000})
        assert response.status_code == 413
        assert "RAG_API_MAX_REQUEST_MB" in response.json()["error"]["message"]

        def chunked() -> Iterator[bytes]:  # no Content-Length: counted as it arrives
            yield b'{"question": "x", "pad": "'
            for _ in range(30):
                yield b"y" * 1000
            yield b'"}'

        streamed = client.post("/v1/answer", content=chunked(), headers={"content-type": "application/json"})
        assert streamed.status_code == 413


def test_missing_collection_is_a_clear_404(settings: Settings) -> None:
    for client in _client(settings, ingest=False):
        response = client.post("/v1/answer", json={"question": "anything"})
        assert response.status_code == 404
        assert "ingest" in response.json()["error"]["message"]


def test_api_key_is_required_when_configured(settings: Settings) -> None:
    secured = settings.model_copy(update={"api": ApiSettings(key=SecretStr("s3cret"))})
    for client in _client(secured):
        assert client.post("/v1/answer", json={"question": "q"}).status_code == 401
        wrong = client.post("/v1/answer", json={"question": "q"}, headers={"Authorization": "Bearer nope"})
        assert wrong.status_code == 401 and wrong.json()["error"]["code"] == "unauthorized"
        ok = client.post("/v1/answer", json={"question": "공동의장사"}, headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200
        assert client.get("/healthz").status_code == 200  # health stays open
        # the key is checked before the body is read: an anonymous caller learns nothing about the API
        assert client.post("/v1/answer", content=b"{broken").status_code == 401
        for header in ("Bearer sécret".encode(), "Bearer 비밀".encode()):
            # non-ASCII keys used to reach secrets.compare_digest as str and raise: a 500 before auth
            response = client.post("/v1/answer", json={"question": "q"}, headers={"Authorization": header})
            assert response.status_code == 401


def test_a_non_ascii_api_key_works(settings: Settings) -> None:
    secured = settings.model_copy(update={"api": ApiSettings(key=SecretStr("비밀"))})
    for client in _client(secured):
        header = "Bearer 비밀".encode()  # HTTP headers travel as bytes
        assert (
            client.post("/v1/answer", json={"question": "공동의장사"}, headers={"Authorization": header}).status_code
            == 200
        )


def test_health_and_readiness(client: TestClient) -> None:
    assert client.get("/healthz").json() == {"status": "ok"}
    assert client.get("/readyz").json()["status"] == "ready"


def test_upload_ingests_through_the_running_app(client: TestClient) -> None:
    files = {
        "files": ("rail.txt", "철도 안전 대책\n\n국토교통부는 철도 안전 강화 대책을 발표했다.".encode(), "text/plain")
    }
    response = client.post("/v1/ingest", files=files)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 1
    hits = client.post("/v1/search", json={"query": "철도 안전 강화 대책"}).json()["hits"]
    assert any("철도" in hit["text"] for hit in hits)


@pytest.mark.parametrize("name", ["..", "../", "sub/..", "a" * 300 + ".txt", "가" * 100 + ".txt", "bad\u0000name.txt"])
def test_odd_upload_names_are_stored_safely(client: TestClient, settings: Settings, name: str) -> None:
    files = {"files": (name, "철도 안전 대책\n\n국토교통부는 철도 안전 강화 대책을 발표했다.".encode(), "text/plain")}
    response = client.post("/v1/ingest", files=files)
    assert response.status_code == 200, response.text
    assert response.json()["added"] == 1
    stored = _kept_uploads(settings)
    assert len(stored) == 1 and stored[0].parent == settings.api.upload_dir
    assert len(stored[0].name.encode()) <= 255


def _kept_uploads(settings: Settings) -> list[Path]:
    """The files kept in the upload folder (not the hidden folder where requests save theirs meanwhile)."""
    return sorted(p for p in settings.api.upload_dir.iterdir() if not p.name.startswith("."))


def test_two_uploads_with_one_name_are_refused(client: TestClient) -> None:
    files = [
        ("files", ("dup.txt", b"first text here.", "text/plain")),
        ("files", ("dup.txt", b"second.", "text/plain")),
    ]
    response = client.post("/v1/ingest", files=files)
    assert response.status_code == 422
    assert "dup.txt" in response.json()["error"]["message"]


def test_rejected_uploads_are_not_kept(client: TestClient, settings: Settings) -> None:
    files = [
        ("files", ("junk.txt", b"\x00\x01\x02" * 100, "text/plain")),
        ("files", ("ok.txt", "좋은 기사 본문이다.".encode(), "text/plain")),
    ]
    response = client.post("/v1/ingest", files=files)
    assert response.status_code == 200
    assert [f["path"].endswith("junk.txt") for f in response.json()["failed"]] == [True]
    assert [p.name for p in _kept_uploads(settings)] == ["ok.txt"]


def test_streaming_answer_sends_tokens_then_the_answer(settings: Settings) -> None:
    from tests.doubles import ScriptedLLM

    service = RagService(
        settings, embedder=FakeEmbedder(), llm=ScriptedLLM("LG CNS와 이큐브랩이 공동의장사로 선임됐다 [1].")
    )
    build_ingestor(service).ingest_articles([ARTICLE])
    with TestClient(create_app(service, with_ui=False)) as client:
        response = client.post("/v1/answer", json={"question": "공동의장사는?", "stream": True})
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [block for block in response.text.split("\n\n") if block.strip()]
        assert events[0].startswith("event: token")
        assert events[-1].startswith("event: answer")
        final = __import__("json").loads(events[-1].split("data: ", 1)[1])
        assert final["citations"] and final["refused"] is False
    service.close()


def test_chat_page_is_served_at_root(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=True)) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert "gradio" in response.text.lower()
        assert client.get("/healthz").status_code == 200
    service.close()


def test_a_large_upload_is_ingested_in_turns_and_reported_as_one(client: TestClient) -> None:
    count = 17
    files = [
        ("files", (f"n{i}.txt", f"소식 {i}\n\n항만 {i}번 부두가 확장됐다.".encode(), "text/plain"))
        for i in range(count)
    ]
    files.append(("files", ("empty.txt", b"", "text/plain")))
    body = client.post("/v1/ingest", files=files).json()
    assert body["added"] == count and [f["path"].rsplit("/", 1)[-1] for f in body["failed"]] == ["empty.txt"]


def test_a_bug_is_a_json_500_logged_once(
    settings: Settings, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    service = RagService(settings, embedder=FakeEmbedder())

    def broken(*_: object, **__: object) -> None:
        raise RuntimeError("a bug")

    monkeypatch.setattr(service, "retrieve", broken)
    with TestClient(create_app(service, with_ui=False)) as client, caplog.at_level("ERROR"):
        response = client.post("/v1/search", json={"query": "공동감사"})
    service.close()
    assert response.status_code == 500
    assert response.json() == {
        "error": {"code": "internal_error", "message": "unexpected server error; see the server log"}
    }
    errors = [record for record in caplog.records if record.levelname == "ERROR"]
    assert len(errors) == 1 and "POST /v1/search" in errors[0].getMessage() and errors[0].exc_info


@pytest.fixture
def failing_llm_endpoint() -> Iterator[str]:
    """A loopback OpenAI-compatible endpoint that fails the way real ones do: a 500 with an HTML page that
    echoes a secret."""

    class Failing(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers.get("content-length", 0)))
            body = ERROR_PAGE.encode()
            self.send_response(500)
            self.send_header("content-type", "text/html")
            self.send_header("content-length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Failing)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def test_an_upstream_llm_failure_reaches_users_as_a_short_generic_message(
    settings: Settings, failing_llm_endpoint: str, caplog: pytest.LogCaptureFixture
) -> None:
    llm = OpenAICompatibleLLM(failing_llm_endpoint, "qwen", None, timeout_s=10, max_retries=0)
    service = RagService(settings, embedder=FakeEmbedder(), llm=llm)
    build_ingestor(service).ingest_articles([ARTICLE])
    generic = "the language model service failed; try again later"
    with TestClient(create_app(service, with_ui=False)) as client, caplog.at_level("ERROR"):
        plain = client.post("/v1/answer", json={"question": "공동의장사는 어디인가?"})
        streamed = client.post("/v1/answer", json={"question": "공동의장사는 어디인가?", "stream": True})
        page = ChatPage(service, FeedbackStore(settings.feedback.path), gr.update)
        shown_on_page = list(
            page.ask("공동의장사는 어디인가?", [], "ko", date_from="", date_to="", source="", passages=5)
        )
        conversation = shown_on_page[-1][0]
    service.close()
    for shown in (plain.text, streamed.text, conversation):
        assert SECRET not in shown and "<html>" not in shown
    assert plain.status_code == 502
    assert plain.json() == {"error": {"code": "llm_unavailable", "message": generic}}
    error_event = next(block for block in streamed.text.split("\n\n") if block.startswith("event: error"))
    assert json.loads(error_event.split("data: ", 1)[1]) == {"code": "llm_unavailable", "message": generic}
    assert generic in conversation
    # the details are in the log, once for each failure
    assert sum(SECRET in record.getMessage() for record in caplog.records) == 3
