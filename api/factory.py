"""`create_app(service)`: the API and the chat page over one RagService, behind the access checks."""

from __future__ import annotations

from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

from fastapi import FastAPI
from starlette.middleware.sessions import SessionMiddleware

from api.access import Credentials, OriginCheck, OriginPolicy, session_secret
from api.admission import Admission
from api.chat_completions import chat_completions_router
from api.chat_page import mount_chat_page
from api.errors import install_error_handlers
from api.guard import ApiGuard, UnexpectedErrors
from api.login import load_users, sign_in_router
from api.metrics import Metrics, MetricsMiddleware
from api.routes import api_router
from api.uploads import Upload, ingest_uploads
from api.workers import Workers
from ingest.pipeline import IngestReport
from rag.config import get_settings
from rag.service import RagService

SESSION_COOKIE = "rag_session"


def create_app(service: RagService | None = None, *, with_ui: bool = True) -> FastAPI:
    service = service or RagService(get_settings())
    settings = service.settings
    limits = settings.api
    key = limits.key_bytes()
    users = load_users(limits.users_file) if limits.users_file else {}

    admission = Admission(limits.max_inflight, limits.queue_depth, what="answers and searches")
    ingest_admission = Admission(1, limits.queue_depth, what="uploads")  # one ingest at a time: it fills the cores
    metrics = Metrics(admission, ingest_admission)

    def rejected(reason: str) -> None:
        metrics.rejections.labels(reason).inc()

    workers = Workers(admission, timeout_s=limits.request_timeout_s, on_rejection=rejected)
    ingest_workers = Workers(ingest_admission, timeout_s=None, name="rag-ingest", on_rejection=rejected)

    async def ingest_in_line(uploads: Sequence[Upload]) -> IngestReport:
        """POST /v1/ingest and the page's upload alike: on the one ingest worker, in one line (503 past its
        queue), each to its end even if its client leaves (the files it reads close with the request)."""
        report = await ingest_workers.run(None, lambda token: ingest_uploads(service, uploads))
        metrics.observe_ingest(report.to_json())
        if report.added or report.updated:
            service.store.index_soon()  # Qdrant Edge: indexed beside the serving store, questions go on meanwhile
        return report

    @asynccontextmanager
    async def lifespan(_: FastAPI) -> AsyncIterator[None]:
        yield
        workers.close()
        ingest_workers.close()

    app = FastAPI(
        title="Policy news QA",
        version="0.1.0",
        description="Answers with citations to exact sentences.",
        lifespan=lifespan,
    )
    app.state.service = service
    install_error_handlers(app)
    app.include_router(api_router(service, workers, ingest_in_line, metrics))
    app.include_router(chat_completions_router(service, workers, metrics.observe_answer))
    app.include_router(sign_in_router(key, users))

    # each middleware wraps the ones added before it: the last added sees a request first
    app.add_middleware(  # body caps, methods, unknown /v1 paths, before a route reads anything
        ApiGuard,
        max_request_bytes=int(limits.max_request_mb * (1 << 20)),
        max_upload_bytes=int(limits.max_upload_mb * (1 << 20)),
    )
    app.add_middleware(Credentials, api_key=key, users=users)
    if key is not None:
        app.add_middleware(
            SessionMiddleware,
            secret_key=session_secret(key),
            session_cookie=SESSION_COOKIE,
            max_age=int(limits.session_hours * 3600),
            same_site="strict",
        )
    app.add_middleware(OriginCheck, policy=OriginPolicy.build(settings.host, settings.allowed_origins))
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # counts the refusals of the layers inside it
    app.add_middleware(UnexpectedErrors)  # outermost: it also covers the guards

    if with_ui:  # behind the same guards: with a key set, the page and its uploads need a sign-in
        app = mount_chat_page(app, service, ingest=ingest_in_line)
    return app
