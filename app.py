"""HTTP API (`/v1/...`) and the chat page (`/`), both thin over one RagService.

`create_app(service)` builds the app (tests hand in a service with fakes); `main()` runs it with the
host and port from settings.
"""

from __future__ import annotations

from rag.cli import limit_native_threads

limit_native_threads()

import asyncio  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from collections.abc import Iterator  # noqa: E402
from typing import Any  # noqa: E402

from fastapi import FastAPI, Request, UploadFile  # noqa: E402
from fastapi.exceptions import RequestValidationError  # noqa: E402
from fastapi.responses import JSONResponse, StreamingResponse  # noqa: E402
from pydantic import BaseModel, ConfigDict, Field, field_validator  # noqa: E402
from starlette.exceptions import HTTPException as StarletteHTTPException  # noqa: E402

from api.chat_page import mount_chat_page  # noqa: E402
from api.uploads import ingest_uploads  # noqa: E402
from rag.cli import configure_logging  # noqa: E402
from rag.config import get_settings  # noqa: E402
from rag.errors import InputError, RagError  # noqa: E402
from rag.fair_lock import FairLock  # noqa: E402
from rag.http_guard import ApiGuard, BodyTooLarge, UnexpectedErrors, error_body  # noqa: E402
from rag.service import RagService  # noqa: E402
from rag.types import Answer, ChatTurn, Hit, SearchFilters  # noqa: E402

logger = logging.getLogger("app")

# ---- request and response bodies ---------------------------------------------------------------------


class AnswerRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    question: str = Field(min_length=1, max_length=2000)
    # strict: `true` is no count and `1` no yes (pydantic would read them as 1 and true)
    top_k: int | None = Field(None, ge=1, le=100, strict=True)
    filters: SearchFilters | None = None
    history: list[ChatTurn] = Field(default_factory=list, max_length=50)
    stream: bool = Field(False, strict=True, description="Server-sent events: `token` pieces, then one `answer` event.")

    @field_validator("question")
    @classmethod
    def _has_words(cls, value: str) -> str:
        return _require_words(value, "question")


class SearchRequest(BaseModel):
    model_config = ConfigDict(extra="ignore")

    query: str = Field(min_length=1, max_length=2000)
    top_k: int | None = Field(None, ge=1, le=100, strict=True)
    filters: SearchFilters | None = None

    @field_validator("query")
    @classmethod
    def _has_words(cls, value: str) -> str:
        return _require_words(value, "query")


def _require_words(value: str, field: str) -> str:
    """Blank text, or text with no letter or digit at all (only emoji, punctuation or control characters),
    cannot be searched for meaningfully: refusing it beats a confident answer to nothing."""
    if not value.strip():
        raise ValueError(f"{field} is blank")
    if not any(ch.isalnum() for ch in value):
        raise ValueError(f"{field} has no letters or digits; ask in words")
    return value


class SearchHit(BaseModel):
    doc_id: str
    chunk_id: str
    title: str | None
    url: str | None
    date: str | None
    text: str
    score: float

    @classmethod
    def from_hit(cls, hit: Hit) -> SearchHit:
        chunk = hit.chunk
        return cls(
            doc_id=chunk.article_id,
            chunk_id=chunk.id,
            title=chunk.title,
            url=chunk.url,
            date=chunk.date.isoformat() if chunk.date else None,
            text=chunk.text,
            score=hit.score,
        )


class SearchResponse(BaseModel):
    hits: list[SearchHit]


# ---- the app -----------------------------------------------------------------------------------------


def create_app(service: RagService | None = None, *, with_ui: bool = True) -> FastAPI:
    service = service or RagService(get_settings())
    settings = service.settings
    # one request at a time reaches the models and the embedded store: 2 cores, one file lock. Handed out in
    # the order asked for, so a question asked during a long upload waits for one of its turns, not for all
    service_lock = FairLock()
    app = FastAPI(title="Policy news QA", version="0.1.0", description="Answers with citations to exact sentences.")
    app.state.service = service

    # the API key, body caps, methods and unknown /v1 paths are checked before a route sees the request
    app.add_middleware(
        ApiGuard,
        api_key=settings.api.key.get_secret_value() if settings.api.key else None,
        max_request_bytes=int(settings.api.max_request_mb * (1 << 20)),
        max_upload_bytes=int(settings.api.max_upload_mb * (1 << 20)),
    )
    app.add_middleware(UnexpectedErrors)  # added last, so outermost: it also covers the guard
    _install_error_handlers(app)

    # the probes are async (they run on the event loop, not behind busy worker threads) and take no lock:
    # a long ingest must not make a load balancer think the process is dead
    @app.api_route("/healthz", methods=["GET", "HEAD"])
    async def healthz() -> dict[str, str]:
        return {"status": "ok"}

    @app.api_route("/readyz", methods=["GET", "HEAD"])
    async def readyz() -> JSONResponse:
        # asyncio's own executor, not the worker pool that a burst of answers can fill
        if await asyncio.to_thread(service.is_ready):
            return JSONResponse({"status": "ready"})
        return JSONResponse(error_body("not_ready", "store or models not loaded yet"), status_code=503)

    @app.post("/v1/answer", response_model=Answer)
    def answer(request: AnswerRequest) -> Any:
        if request.stream:
            return StreamingResponse(_answer_events(request), media_type="text/event-stream")
        with service_lock:
            return service.answer(
                request.question, top_k=request.top_k, filters=request.filters, history=request.history
            )

    def _answer_events(request: AnswerRequest) -> Iterator[str]:
        with service_lock:
            try:
                for event in service.answer_stream(
                    request.question, top_k=request.top_k, filters=request.filters, history=request.history
                ):
                    if isinstance(event, Answer):
                        yield _sse("answer", event.model_dump(mode="json"))
                    else:
                        yield _sse("token", {"text": event})
            except RagError as exc:
                yield _sse("error", error_body(exc.code, exc.message)["error"])

    @app.post("/v1/search", response_model=SearchResponse)
    def search(request: SearchRequest) -> SearchResponse:
        with service_lock:
            hits = service.search(request.query, top_k=request.top_k, filters=request.filters)
        return SearchResponse(hits=[SearchHit.from_hit(hit) for hit in hits])

    @app.post("/v1/ingest")
    def ingest_upload(files: list[UploadFile]) -> dict[str, Any]:
        """Ingest uploaded files through the running app (the embedded store allows one process); their
        articles live in a namespace of their own (api/uploads.py)."""
        uploads = [(upload.filename, upload.file) for upload in files]
        return ingest_uploads(service, uploads, turn=service_lock).to_json()

    if with_ui:
        # with RAG_API_KEY set, adding articles takes the key (POST /v1/ingest); the page, which no key guards
        # yet, offers uploads only on a keyless app (loopback by default)
        mount_chat_page(app, service, allow_upload=settings.api.key is None)
    return app


def _sse(event: str, data: dict[str, Any]) -> str:
    return f"event: {event}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(RequestValidationError)
    async def invalid_request(_: Request, exc: RequestValidationError) -> JSONResponse:
        return JSONResponse(error_body("invalid_request", _describe_validation(exc)), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def http_error(_: Request, exc: StarletteHTTPException) -> JSONResponse:
        code = {401: "unauthorized", 404: "not_found", 405: "method_not_allowed"}.get(exc.status_code, "http_error")
        message = str(exc.detail)
        if isinstance(exc.__cause__, BodyTooLarge):  # FastAPI wraps any error while reading the body in a 400
            return JSONResponse(error_body("payload_too_large", exc.__cause__.message), status_code=413)
        if exc.status_code == 400:
            # FastAPI's own words for a body it could not decode at all
            code = "invalid_request"
            message = "the request body could not be read; send UTF-8 JSON (multipart/form-data for /v1/ingest)"
        return JSONResponse(error_body(code, message), status_code=exc.status_code, headers=exc.headers)

    @app.exception_handler(RagError)
    async def rag_error(_: Request, exc: RagError) -> JSONResponse:
        status = exc.http_status if not isinstance(exc, InputError) else 422
        return JSONResponse(error_body(exc.code, exc.message), status_code=status)


def _describe_validation(exc: RequestValidationError) -> str:
    """Pydantic's findings, each with the field it concerns and, where its wording does not say it, what to
    send instead."""
    problems = []
    for error in exc.errors()[:5]:
        kind = str(error.get("type", ""))
        loc = tuple(error.get("loc", ()))
        location = ".".join(str(part) for part in loc if part != "body") or "body"
        if kind == "json_invalid":
            position = f" at character {loc[-1]}" if loc and isinstance(loc[-1], int) else ""
            problems.append(f"the request body is not valid JSON{position}; send a JSON object")
            continue
        if loc == ("body",) and kind in {"model_attributes_type", "dict_type", "missing"}:
            problems.append("the request body must be a JSON object sent with Content-Type: application/json")
            continue
        if "files" in loc:
            problems.append("files: send the documents as multipart/form-data file fields named 'files'")
            continue
        message = str(error.get("msg", "invalid"))
        if kind.startswith("date"):
            message += " (write dates as YYYY-MM-DD)"
        problems.append(f"{location}: {message}")
    return "; ".join(dict.fromkeys(problems))


def main() -> int:
    import uvicorn

    try:
        settings = get_settings()
    except RagError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 2
    configure_logging(settings.log_level)
    service = RagService(settings)
    try:
        service.warm_up()  # load models, analyser and search index before the first request, not during it
    except RagError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1
    app = create_app(service)
    logger.info("serving the chat page on http://%s:%d/ (API under /v1, docs at /docs)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
