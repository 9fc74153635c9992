"""The API's own routes: probes, `/v1/answer`, `/v1/search`, `/v1/ingest` and `/metrics`.

Thin over the service: each route validates its body, hands the blocking work to the workers (api/workers.py:
bounded, cancellable, never holding a thread while waiting) and shapes the result.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Iterator
from typing import Any

from fastapi import APIRouter, Request, UploadFile
from fastapi.responses import JSONResponse, Response, StreamingResponse

from api.guard import error_body
from api.metrics import Metrics
from api.schemas import AnswerRequest, SearchHit, SearchRequest, SearchResponse
from api.uploads import IngestUploads
from api.workers import KEEPALIVE, CancelToken, Workers, close_iterator, collect
from rag.errors import RagError
from rag.service import RagService
from rag.types import Answer


def api_router(service: RagService, workers: Workers, ingest: IngestUploads, metrics: Metrics) -> APIRouter:
    router = APIRouter()

    # the probes run on the event loop and take no worker: a long ingest or a full queue must not make a load
    # balancer think the process is dead
    @router.get("/healthz")
    @router.head("/healthz", include_in_schema=False)
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @router.get("/readyz")
    @router.head("/readyz", include_in_schema=False)
    async def readyz() -> JSONResponse:
        admission = workers.admission
        stuck = admission.stuck()
        if stuck is not None:
            overdue = time.monotonic() - stuck.deadline
            message = f"a request is still running {overdue:.0f} s past its deadline though told to stop; restart"
            return JSONResponse(error_body("stuck", message), status_code=503)
        # asyncio's own executor, not the workers that a burst of answers can fill
        if not await asyncio.to_thread(service.is_ready):
            return JSONResponse(error_body("not_ready", "store or models not loaded yet"), status_code=503)
        # busy is still ready: the queue and 503s handle load; a balancer may prefer a less busy replica
        return JSONResponse(
            {
                "status": "ready",
                "inflight": admission.running,
                "queued": admission.waiting,
                "saturated": admission.saturated(),
            }
        )

    @router.post("/v1/answer", response_model=Answer)
    async def answer(body: AnswerRequest, request: Request) -> Any:
        def events() -> Iterator[Any]:
            return service.answer_stream(body.question, top_k=body.top_k, filters=body.filters, history=body.history)

        if body.stream:
            stream = await workers.stream(lambda token: _observed(events(), metrics))
            return StreamingResponse(_answer_events(stream), media_type="text/event-stream")

        def work(token: CancelToken) -> Answer:
            answer: Answer = collect(events(), token)
            metrics.observe_answer(answer)
            return answer

        return await workers.run(request, work)

    @router.post("/v1/search", response_model=SearchResponse)
    async def search(body: SearchRequest, request: Request) -> SearchResponse:
        def work(token: CancelToken) -> SearchResponse:
            retrieval = service.retrieve(body.query, top_k=body.top_k, filters=body.filters)
            metrics.observe_stages(retrieval.timings_ms)
            return SearchResponse(hits=[SearchHit.from_hit(hit) for hit in retrieval.hits])

        return await workers.run(request, work)

    @router.post("/v1/ingest")
    async def ingest_upload(files: list[UploadFile]) -> dict[str, Any]:
        """Ingest uploaded files through the running app (the embedded store allows one process)."""
        report = await ingest([(upload.filename, upload.file) for upload in files])
        return report.to_json()

    @router.get("/metrics", include_in_schema=False)
    async def prometheus_metrics() -> Response:
        body, content_type = metrics.exposition()
        return Response(body, media_type=content_type)

    return router


def _observed(events: Iterator[Any], metrics: Metrics) -> Iterator[Any]:
    try:
        for event in events:
            if isinstance(event, Answer):
                metrics.observe_answer(event)
            yield event
    finally:
        close_iterator(events)


async def _answer_events(events: AsyncIterator[Any]) -> AsyncIterator[str]:
    try:
        async for event in events:
            if event is KEEPALIVE:
                yield ": keepalive\n\n"
            elif isinstance(event, Answer):
                yield _sse("answer", event.model_dump(mode="json"))
            else:
                yield _sse("token", {"text": event})
    except RagError as exc:
        yield _sse("error", error_body(exc.code, exc.message)["error"])


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"
