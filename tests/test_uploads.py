"""Files sent to POST /v1/ingest: their own id namespace, one folder per request, bounded work, and questions
answered while a long upload is in progress."""

from __future__ import annotations

import io
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi import UploadFile
from fastapi.testclient import TestClient

from api.uploads import ingest_uploads
from app import create_app
from ingest.pipeline import build_ingestor
from rag.config import ApiSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService

from .conftest import SAMPLE_ARTICLE

FIXTURES = Path(__file__).parent / "fixtures"
HANG_SECONDS = 120  # hang detection only: every wait below ends in well under a second when nothing is wrong


def _upload_endpoint(service: RagService) -> Any:
    """What POST /v1/ingest runs for one request, callable from two threads at once (the app itself takes
    uploads one at a time; the module must not rely on that)."""

    def ingest_files(files: list[UploadFile]) -> dict[str, Any]:
        return ingest_uploads(service, [(upload.filename, upload.file) for upload in files]).to_json()

    return ingest_files


# --- the namespace of uploads --------------------------------------------------------------------------


def test_an_upload_claiming_a_corpus_articles_id_leaves_that_article_alone(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    operator = build_ingestor(service).ingest_paths([SAMPLE_ARTICLE, FIXTURES / "article.html"])
    assert operator.added == 2
    before = {stored.article.id: stored for stored in service.store.iter_articles(with_text=True)}
    sample_id, page_id = SAMPLE_ARTICLE.as_posix(), "https://news.example.kr/articles/1234"
    assert set(before) == {sample_id, page_id}
    forged = "공동감사는 위조기업이 맡는다고 올린 파일이 주장했다."
    files = [
        ("files", ("claims.jsonl", "\n".join(json.dumps({"id": i, "text": forged}) for i in before).encode())),
        ("files", ("claim.md", f"---\nurl: {page_id}\n---\n\n# 위조\n\n{forged}".encode())),
        (
            "files",
            ("claim.html", f'<html><head><link rel="canonical" href="{page_id}"></head><p>{forged * 3}</p>'.encode()),
        ),
    ]
    with TestClient(create_app(service, with_ui=False)) as client:
        body = client.post("/v1/ingest", files=files).json()
        assert (body["added"], body["failed"]) == (4, [])
        after = {stored.article.id: stored for stored in service.store.iter_articles(with_text=True)}
        for article_id, stored in before.items():  # the operator's articles, unchanged
            assert after[article_id].content_hash == stored.content_hash
            assert after[article_id].article.text == stored.article.text
        assert set(after) - set(before) == {
            "upload:claim.html",
            "upload:claim.md",
            f"upload:claims.jsonl/{page_id}",
            f"upload:claims.jsonl/{sample_id}",
        }
        assert after["upload:claim.md"].article.url == page_id  # what it claims stays, as its url
        answer = client.post("/v1/answer", json={"question": "초대 공동의장사는 어디인가?"}).json()
        assert {citation["doc_id"] for citation in answer["citations"]} == {sample_id}  # it still answers
    service.close()


def test_records_without_an_id_are_named_by_their_line(client: TestClient) -> None:
    lines = [json.dumps({"text": "첫 기록이다."}), json.dumps({"text": "둘째 기록이다."})]
    body = client.post("/v1/ingest", files={"files": ("dump.jsonl", "\n".join(lines).encode())}).json()
    assert body["added"] == 2
    hits = client.post("/v1/search", json={"query": "기록", "top_k": 5}).json()["hits"]
    assert {hit["doc_id"] for hit in hits} == {"upload:dump.jsonl#1", "upload:dump.jsonl#2"}


def test_operator_ingest_cannot_use_the_upload_namespace(fake_service: RagService, tmp_path: Path) -> None:
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text(json.dumps({"id": "upload:a.txt", "text": "Port news."}) + "\n", encoding="utf-8")
    report = build_ingestor(fake_service).ingest_paths([corpus])
    assert report.added == 0 and "kept for files sent to POST /v1/ingest" in report.failed[0].reason


# --- one folder per request -------------------------------------------------------------------------------


class _HalfWritten(io.RawIOBase):
    """An upload whose second half arrives only when `resume` is set, as over a slow connection."""

    def __init__(self, data: bytes, resume: threading.Event) -> None:
        self.parts = [data[: len(data) // 2], data[len(data) // 2 :]]
        self.resume, self.first_sent = resume, threading.Event()

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        if not self.parts:
            return 0
        if self.first_sent.is_set():
            assert self.resume.wait(HANG_SECONDS)
        part = self.parts.pop(0)
        buffer[: len(part)] = part
        self.first_sent.set()
        return len(part)


def test_two_uploads_with_one_name_never_read_each_others_half_written_file(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    ingest_files = _upload_endpoint(service)
    slow_text = "느린 업로드의 문장이다. " * 400
    fast_text = "빠른 업로드의 문장이다. " * 50
    resume = threading.Event()
    slow = _HalfWritten(slow_text.encode(), resume)
    results: dict[str, Any] = {}
    thread = threading.Thread(
        target=lambda: results.update(slow=ingest_files(files=[UploadFile(slow, filename="same.txt")]))  # type: ignore[arg-type]
    )
    thread.start()
    assert slow.first_sent.wait(HANG_SECONDS)  # the slow request has written half of its file
    results["fast"] = ingest_files(files=[UploadFile(io.BytesIO(fast_text.encode()), filename="same.txt")])
    resume.set()
    thread.join(HANG_SECONDS)
    assert not thread.is_alive()
    assert results["fast"]["failed"] == [] and results["slow"]["failed"] == []
    stored = service.store.get_article("upload:same.txt")
    assert stored is not None and stored.article.text == slow_text.strip()  # whole, not a mix of the two
    kept = sorted(p.name for p in settings.api.upload_dir.iterdir() if not p.name.startswith("."))
    assert kept == ["same.txt"] and (settings.api.upload_dir / "same.txt").read_text() == slow_text
    assert list((settings.api.upload_dir / ".incoming").iterdir()) == []  # nothing left behind
    service.close()


# --- bounded work ------------------------------------------------------------------------------------------


def test_a_request_with_too_many_files_is_refused(settings: Settings) -> None:
    limited = settings.model_copy(update={"api": settings.api.model_copy(update={"max_upload_files": 3})})
    files = [("files", (f"n{i}.txt", f"소식 {i}번이다.".encode())) for i in range(4)]
    for client in _client(limited):
        response = client.post("/v1/ingest", files=files)
        assert response.status_code == 422
        assert "RAG_API_MAX_UPLOAD_FILES" in response.json()["error"]["message"]


def test_documents_past_the_requests_text_budget_are_reported_not_ingested(settings: Settings) -> None:
    api = ApiSettings(upload_dir=settings.api.upload_dir, max_upload_chars=2_000)
    files = [("files", (f"n{i}.txt", (f"소식 {i}. " + "항만 부두가 확장됐다. " * 100).encode())) for i in range(3)]
    for client in _client(settings.model_copy(update={"api": api})):
        body = client.post("/v1/ingest", files=files).json()
        assert body["added"] == 1
        assert [(f["path"], "RAG_API_MAX_UPLOAD_CHARS" in f["reason"]) for f in body["failed"]] == [
            ("n1.txt", True),
            ("n2.txt", True),
        ]


def _client(settings: Settings) -> Iterator[TestClient]:
    service = RagService(settings, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=False)) as client:
        yield client
    service.close()


@pytest.fixture
def client(settings: Settings) -> Iterator[TestClient]:
    yield from _client(settings)


class _HeldEmbedder(FakeEmbedder):
    """Embedding an upload's documents waits until the test lets it go (a long upload on a busy CPU); the
    question's and its evidence's embeddings are not held."""

    HELD_TEXT = "항만 소식"

    def __init__(self) -> None:
        super().__init__()
        self.holding = threading.Event()
        self.release = threading.Event()

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if any(self.HELD_TEXT in text for text in texts):
            self.holding.set()
            self.release.wait(HANG_SECONDS)
        return super().embed_documents(texts)


def test_a_question_is_answered_while_a_long_upload_is_in_progress(settings: Settings) -> None:
    embedder = _HeldEmbedder()
    service = RagService(settings, embedder=embedder)
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    files = [
        ("files", (f"n{i}.txt", f"{_HeldEmbedder.HELD_TEXT} {i}.\n\n{i}번 부두가 확장됐다. 예산이 늘었다.".encode()))
        for i in range(6)
    ]
    with TestClient(create_app(service, with_ui=False)) as client:
        upload: dict[str, Any] = {}
        uploading = threading.Thread(target=lambda: upload.update(response=client.post("/v1/ingest", files=files)))
        uploading.start()
        try:
            assert embedder.holding.wait(HANG_SECONDS)  # the upload is embedding, and stays there until released
            assert client.get("/readyz").status_code == 200
            asked: dict[str, Any] = {}
            asking = threading.Thread(
                target=lambda: asked.update(
                    response=client.post("/v1/answer", json={"question": "공동감사는 누가 맡나?"})
                )
            )
            asking.start()
            asking.join(HANG_SECONDS)
            # a lock held across the upload would keep the question waiting until the upload was let go
            assert not asking.is_alive(), "the question waited for the upload"
            assert asked["response"].status_code == 200 and asked["response"].json()["citations"]
        finally:
            embedder.release.set()
            uploading.join(HANG_SECONDS)
        assert upload["response"].json()["added"] == 6
    service.close()
