"""`python app.py`: serve the chat page and the API with the host and port from settings."""

from __future__ import annotations

import logging
import sys

import uvicorn

from api.access import LOOPBACK_NAMES, WILDCARD_BINDS
from api.factory import create_app
from rag.cli import configure_logging
from rag.config import Settings, get_settings
from rag.errors import RagError
from rag.service import RagService

logger = logging.getLogger("app")


def main() -> int:
    try:
        settings = get_settings()
    except RagError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 2
    configure_logging(settings.log_level)
    warn_about_exposure(settings)
    service = RagService(settings)
    try:
        service.warm_up()  # load models, analyser and search index before the first request, not during it
        app = create_app(service)
    except RagError as exc:
        sys.stderr.write(f"error: {exc.message}\n")
        return 1
    logger.info("serving the chat page on http://%s:%d/ (API under /v1, docs at /docs)", settings.host, settings.port)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level=settings.log_level.lower())
    return 0


def warn_about_exposure(settings: Settings) -> None:
    """Say plainly who can reach the app. The default address is loopback; another is the operator's choice."""
    host = settings.host.strip().lower()
    where = f"{settings.host}:{settings.port}"
    if settings.api.key is None:
        reach = "this machine" if host in LOOPBACK_NAMES else f"anyone who can reach {where}"
        logger.warning(
            "RAG_API_KEY is not set: the chat page and the API (questions, uploads) are open to %s; "
            "set RAG_API_KEY to require a key",
            reach,
        )
    if host in WILDCARD_BINDS and not settings.allowed_origins:
        logger.warning(
            "listening on every interface, but only requests naming localhost are accepted (403 otherwise); "
            "list the address clients use in RAG_ALLOWED_ORIGINS, e.g. http://10.0.0.5:%d",
            settings.port,
        )
