"""Prometheus metrics: requests by route and status, latency, per-stage timings, queue, refusals, ingest.

Each app has its own registry (tests build many apps in one process; the global registry would refuse the
second). Stage timings are the ones the service already records in an answer's `timings_ms`.
"""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Gauge, Histogram, generate_latest

from api.admission import Admission
from api.guard import ROUTES, ASGIApp, Message, Receive, Scope, Send
from rag.types import Answer

# answers take from milliseconds (extractive, warm) to tens of seconds (a CPU LLM)
LATENCY_BUCKETS = (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0)
STAGES = ("rewrite", "embed", "search", "evidence", "first_token", "generate", "total")
INGEST_OUTCOMES = ("added", "updated", "unchanged", "deleted")


class Metrics:
    def __init__(self, admission: Admission, ingest_admission: Admission) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "rag_http_requests",
            "HTTP requests by route, method and status.",
            ["route", "method", "status"],
            registry=self.registry,
        )
        self.latency = Histogram(
            "rag_http_request_duration_seconds",
            "Time to the end of the response, by route.",
            ["route"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.stages = Histogram(
            "rag_stage_duration_seconds",
            "Time spent in each step of a search or answer.",
            ["stage"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self.answers = Counter(
            "rag_answers",
            "Answers by outcome (answered, or refused for lack of evidence).",
            ["outcome"],
            registry=self.registry,
        )
        self.rejections = Counter(
            "rag_rejected_requests",
            "Requests not answered: overloaded (503), timeout (504), client_gone (disconnected first).",
            ["reason"],
            registry=self.registry,
        )
        self.ingest_documents = Counter(
            "rag_ingest_documents",
            "Documents uploaded (POST /v1/ingest or the chat page) by outcome.",
            ["outcome"],
            registry=self.registry,
        )
        self.ingest_chunks = Counter("rag_ingest_chunks", "Chunks written for uploads.", registry=self.registry)
        for name, help_text, value in (
            ("rag_queue_depth", "Answer and search requests waiting for a worker.", lambda: admission.waiting),
            ("rag_inflight", "Answer and search requests being worked on.", lambda: admission.running),
            ("rag_ingest_queue_depth", "Uploads waiting for the ingest worker.", lambda: ingest_admission.waiting),
        ):
            Gauge(name, help_text, registry=self.registry).set_function(value)

    def observe_stages(self, timings_ms: dict[str, float]) -> None:
        for stage in STAGES:
            if stage in timings_ms:
                self.stages.labels(stage).observe(timings_ms[stage] / 1000)

    def observe_answer(self, answer: Answer) -> None:
        self.observe_stages(answer.timings_ms)
        self.answers.labels("refused" if answer.refused else "answered").inc()

    def observe_ingest(self, report: dict[str, Any]) -> None:
        for outcome in INGEST_OUTCOMES:
            self.ingest_documents.labels(outcome).inc(int(report.get(outcome, 0)))
        self.ingest_documents.labels("failed").inc(len(report.get("failed", [])))
        self.ingest_chunks.inc(int(report.get("chunks", 0)))

    def exposition(self) -> tuple[bytes, str]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


def route_label(path: str) -> str:
    """A bounded set of labels: the API's routes by name, everything the chat page serves as `ui`."""
    route = path.rstrip("/") or "/"
    if route in ROUTES or route in ("/login", "/logout"):
        return route
    return "other" if route.lower().startswith("/v1") else "ui"


class MetricsMiddleware:
    """Counts every response, refusals by the guards included (it sits outside them)."""

    def __init__(self, app: ASGIApp, *, metrics: Metrics) -> None:
        self.app, self.metrics = app, metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status = 500  # an exception that escapes before a response started

        async def watched_send(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = int(message["status"])
            await send(message)

        try:
            await self.app(scope, receive, watched_send)
        finally:
            route = route_label(str(scope.get("path", "/")))
            self.metrics.requests.labels(route, scope.get("method", ""), str(status)).inc()
            self.metrics.latency.labels(route).observe(time.perf_counter() - started)
