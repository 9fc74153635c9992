"""`python -m rag doctor`: is this installation able to answer? One line per check, each failure with what to do.

Checks, in order: the settings; the embedding model (loaded, as the first question would load it); the keyword
lexicon; the LLM's file or endpoint (not loaded: 1.1 GB); the store (opened, as the app would open it); the
collection (present, built with these settings, and every chunk belonging to a committed article).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from rag.calibration import FAKE_EMBEDDING
from rag.config import Settings, mask_url
from rag.errors import CollectionMismatchError, RagError
from rag.search.store import QdrantStore
from rag.service import RagService

Status = Literal["ok", "warn", "fail"]


@dataclass(frozen=True)
class Check:
    name: str
    status: Status
    detail: str


def run_checks(settings: Settings) -> list[Check]:
    """Every check, in order; a check that needs what an earlier one found broken says it was not run."""
    service = RagService(settings)
    try:
        return [_settings(settings), *_models(service), *_store(service)]
    finally:
        service.close()


def report(checks: list[Check]) -> dict[str, Any]:
    return {"ok": not any(check.status == "fail" for check in checks), "checks": [asdict(check) for check in checks]}


def format_checks(checks: list[Check]) -> str:
    width = max((len(check.name) for check in checks), default=0)
    label = {"ok": "ok  ", "warn": "warn", "fail": "FAIL"}
    return "".join(f"{label[check.status]}  {check.name:<{width}}  {check.detail}\n" for check in checks)


def _settings(settings: Settings) -> Check:
    where = mask_url(settings.qdrant.url) if settings.qdrant.url else f"embedded store {settings.qdrant.path}"
    return Check("settings", "ok", f"collection '{settings.collection}', {where}, models in {settings.models.dir}")


def _models(service: RagService) -> Iterator[Check]:
    settings = service.settings
    try:
        embedder = service.embedder
    except Exception as exc:  # a model that will not load is this check's finding, whatever raised
        yield Check("embedding", "fail", f"{_message(exc)}; provision it with `python -m rag models`")
    else:
        fake = " (the test embedder: no search quality)" if settings.models.embedding == FAKE_EMBEDDING else ""
        engine_name = getattr(embedder, "engine", None)
        engine = f" through {engine_name}" if isinstance(engine_name, str) else ""
        chosen = f"; {service.model_choice.summary()}" if service.model_choice else ""
        yield Check("embedding", "ok", f"{embedder.model_id}{engine}, {embedder.dimension} dimensions{fake}{chosen}")
    yield _lexicon(settings)
    yield _llm(settings)


def _lexicon(settings: Settings) -> Check:
    path = settings.lexicon_path()
    if settings.retrieval_settings().translation_weight() == 0:
        return Check("lexicon", "ok", "not used (RAG_RETRIEVAL_SPARSE_WEIGHT_TRANSLATION=0)")
    if path.is_file():
        return Check("lexicon", "ok", str(path))
    return Check(
        "lexicon",
        "warn",
        f"{path} is missing: English questions over Korean articles go without translated keywords; "
        "build it with `python -m rag models`",
    )


def _llm(settings: Settings) -> Check:
    backend = settings.llm.backend
    if backend == "none":
        return Check("llm", "ok", "none: answers quote the best evidence sentences (RAG_LLM_BACKEND)")
    if backend == "openai":
        return Check("llm", "ok", f"{settings.openai.model} at {mask_url(settings.openai.base_url or '')} (not called)")
    path = settings.llm_model_path()
    if not path.is_file():
        return Check("llm", "fail", f"{path} is missing; assemble it with `python -m rag models --llm`")
    if not Path(f"{path}.sha256").is_file():
        return Check("llm", "warn", f"{path} has no checksum marker; `python -m rag models --llm` verifies it")
    return Check("llm", "ok", f"{path} (verified when provisioned)")


def _store(service: RagService) -> Iterator[Check]:
    settings = service.settings
    if not settings.qdrant.url and not settings.qdrant.path.exists():
        yield Check("store", "warn", f"{settings.qdrant.path} does not exist yet; `python -m ingest PATH` creates it")
        return
    try:
        store = service.store
    except RagError as exc:
        yield Check("store", "fail", exc.message)
        return
    yield Check("store", "ok", f"opened {_where(settings)}")
    try:
        if not store.exists():
            yield Check(
                "collection", "warn", f"'{store.collection}' does not exist yet; ingest with `python -m ingest PATH`"
            )
            return
        yield _spec(service, store)
        yield _contents(store)
    except RagError as exc:
        yield Check("collection", "fail", exc.message)


def _spec(service: RagService, store: QdrantStore) -> Check:
    try:
        spec = service.collection_spec()
    except Exception:  # reported by the embedding check already
        return Check("collection", "warn", f"'{store.collection}': settings not compared (no embedding model)")
    try:
        store.check_spec(spec)
    except CollectionMismatchError as exc:
        return Check("collection", "fail", exc.message)
    return Check("collection", "ok", f"'{store.collection}' was built with the current settings")


def _contents(store: QdrantStore) -> Check:
    articles = list(store.iter_articles())
    chunks = store.count_chunks()
    committed = sum(stored.chunk_count for stored in articles)
    summary = f"{len(articles):,} articles, {chunks:,} chunks"
    if chunks != committed:
        return Check(
            "contents",
            "warn",
            f"{summary}, but the articles' records account for {committed:,} chunks: an ingest was interrupted "
            "or failed part-way (a full disk?); run it again to finish it",
        )
    return Check("contents", "ok", summary)


def _where(settings: Settings) -> str:
    if settings.qdrant.url:
        return f"Qdrant at {mask_url(settings.qdrant.url)}"
    return f"{settings.qdrant.path} (engine {settings.qdrant.engine})"


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, RagError) else f"{type(exc).__name__}: {exc}"
