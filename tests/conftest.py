"""Shared fixtures: settings isolated in tmp_path, fakes for the fast suite, real models for `slow`."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from rag.cli import limit_native_threads

limit_native_threads()

from rag.calibration import E5_EMBEDDING  # noqa: E402
from rag.config import AnswerSettings, QdrantSettings, Settings  # noqa: E402
from rag.embed.fake import FakeEmbedder  # noqa: E402
from rag.service import RagService  # noqa: E402

PROJECT_ROOT = Path(__file__).resolve().parents[1]
SAMPLE_ARTICLE = PROJECT_ROOT / "data" / "smartcity_alliance_launch.txt"


def shared_data_dir() -> Path:
    """../shared/data beside the checkout (RAG_SHARED_DATA overrides)."""
    return Path(os.environ.get("RAG_SHARED_DATA", PROJECT_ROOT.parent / "shared" / "data"))


def models_dir() -> Path:
    return Path(os.environ.get("RAG_MODELS_DIR", PROJECT_ROOT / "models"))


@pytest.fixture(autouse=True)
def _isolated_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """A developer's RAG_* variables or .env must not leak into tests."""
    for name in list(os.environ):
        if name.startswith("RAG_") and name not in ("RAG_SHARED_DATA", "RAG_MODELS_DIR"):
            monkeypatch.delenv(name)


def make_settings(tmp_path: Path, **changes: object) -> Settings:
    base = Settings(
        _env_file=None,  # type: ignore[call-arg]
        collection="test",
        qdrant=QdrantSettings(path=tmp_path / "qdrant"),
        allowed_origins=["http://testserver"],  # the Host name FastAPI's TestClient sends
    )
    base.models.dir = models_dir()
    # the slow suite's real model is the small one (quick to ingest into each test's collection); the default,
    # EmbeddingGemma, has its own end-to-end tests (tests/test_embeddinggemma.py)
    base.models.embedding = E5_EMBEDDING
    base.api.upload_dir = tmp_path / "uploads"
    base.feedback.path = tmp_path / "feedback.sqlite3"
    return base.model_copy(update=changes)


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    # the fake embedder's similarities are on another scale than e5's
    return make_settings(
        tmp_path,
        answer=AnswerSettings(
            min_evidence_score_korean=0.05, min_evidence_score_other=0.05, min_evidence_score_english=0.05
        ),
    )


@pytest.fixture
def fake_service(settings: Settings) -> Iterator[RagService]:
    service = RagService(settings, embedder=FakeEmbedder())
    yield service
    service.close()


@pytest.fixture(scope="session")
def real_model_path() -> Path:
    from rag.offline import configure_offline_environment
    from rag.provision.e5 import ensure_embedding_model

    configure_offline_environment()
    return ensure_embedding_model(models_dir())


@pytest.fixture(scope="session")
def real_embedder(real_model_path: Path):  # type: ignore[no-untyped-def]
    from rag.embed.torch_embedder import SentenceTransformerEmbedder

    return SentenceTransformerEmbedder(real_model_path, threads=2)


@pytest.fixture(scope="session")
def gemma_model_path() -> Path:
    """EmbeddingGemma-300M, provisioned as `python -m rag models --embedding embeddinggemma-300m` does
    (`make test` runs that first; here it is a cheap check)."""
    from rag.offline import configure_offline_environment
    from rag.provision.gemma import ensure_embeddinggemma

    configure_offline_environment()
    return ensure_embeddinggemma(models_dir())


@pytest.fixture(scope="session")
def local_llm(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The local GGUF model, loaded once for every `llm` test that can share it (`make test` provisions it)."""
    from rag.answer.llm import create_llm

    settings = make_settings(tmp_path_factory.mktemp("llm"))
    settings.llm.backend = "local"
    return create_llm(settings)
