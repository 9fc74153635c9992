"""Test doubles for the library's service interfaces and the servers it talks to (the fake embedder is a
supported setting and ships in rag/embed/fake.py)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

from rag.answer.llm import Message


class ScriptedLLM:
    """An LLM that answers with `reply(messages)` (or a fixed string), in small pieces like a real stream."""

    def __init__(self, reply: str | Callable[[list[Message]], str]) -> None:
        self.name = "scripted"
        self._reply = reply
        self.calls: list[list[Message]] = []

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        self.calls.append(messages)
        text = self._reply(messages) if callable(self._reply) else self._reply
        for start in range(0, len(text), 7):
            yield text[start : start + 7]


class FakeEmbeddingServer:
    """An OpenAI-compatible `/v1/embeddings` server on a free local port, in a thread, that embeds what it is sent
    with `embedder` (the local model's vectors, or the fake embedder's) and records every request.

    Scripted trouble: `failures` (status code and Retry-After header answered before the real replies, in order),
    `reported_model` (the `model` field of replies) and `dimension_cut` (vectors shortened to that size).
    """

    def __init__(self, embed: Callable[[list[str]], Any], *, served_model: str, delay_s: float = 0.0) -> None:
        import uvicorn

        self.embed = embed
        self.reported_model = served_model
        self.failures: list[tuple[int, str | None]] = []
        self.dimension_cut: int | None = None
        self.delay_s = delay_s
        self.requests: list[dict[str, Any]] = []
        self.headers: list[dict[str, str]] = []
        self.arrivals: list[float] = []  # time.monotonic() of each request
        self.in_flight = 0
        self.max_in_flight = 0
        self._lock = threading.Lock()
        app = FastAPI()

        @app.post("/v1/embeddings")
        def embeddings(body: dict[str, Any], request: Request) -> Any:  # sync: runs on a thread pool
            with self._lock:
                self.requests.append(body)
                self.headers.append(dict(request.headers))
                self.arrivals.append(time.monotonic())
                failure = self.failures.pop(0) if self.failures else None
                self.in_flight += 1
                self.max_in_flight = max(self.max_in_flight, self.in_flight)
            try:
                time.sleep(self.delay_s)
                if failure is not None:
                    status, retry_after = failure
                    headers = {"Retry-After": retry_after} if retry_after is not None else {}
                    return JSONResponse({"error": {"message": "busy"}}, status_code=status, headers=headers)
                vectors = self.embed(list(body["input"]))
                data = [
                    {"object": "embedding", "index": i, "embedding": [float(x) for x in row[: self.dimension_cut]]}
                    for i, row in enumerate(vectors)
                ]
                usage = {"prompt_tokens": 0, "total_tokens": 0}
                return {"object": "list", "model": self.reported_model, "data": data, "usage": usage}
            finally:
                with self._lock:
                    self.in_flight -= 1

        with socket.socket() as probe:
            probe.bind(("127.0.0.1", 0))
            self.port = probe.getsockname()[1]
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port, log_level="warning"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def batch_sizes(self) -> list[int]:
        return [len(body["input"]) for body in self.requests]

    def __enter__(self) -> FakeEmbeddingServer:
        self._thread.start()
        deadline = time.monotonic() + 30  # generous: only detects a server that never starts
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError("the fake embedding server did not start")
            time.sleep(0.01)
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=10)


class TopicEmbedder:
    """An embedder whose similarities are known by hand: one axis per topic word, a text's vector the unit-length
    sum of the axes of the topic words it contains (the extra axis 0 when it contains none). Two texts about the
    same topics score 1, a one-topic text against a two-topic text sharing one 1/√2, texts sharing none 0."""

    def __init__(self, *topics: str) -> None:
        self.topics = topics
        self.dimension = len(topics) + 1
        self.model_id = "topics-" + "-".join(topics)

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_queries(self, texts: list[str]) -> np.ndarray:
        return self.embed_documents(texts)

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(text) for text in texts])

    def count_tokens(self, text: str) -> int:
        return len(text.split()) + 2

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        axes = [axis for axis, topic in enumerate(self.topics, start=1) if topic in text] or [0]
        vector[axes] = 1.0
        return vector / np.linalg.norm(vector)
