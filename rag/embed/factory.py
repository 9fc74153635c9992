"""The embedder for the settings: the one place that chooses between the engines."""

from __future__ import annotations

from pathlib import Path

from rag.calibration import FAKE_EMBEDDING, SERVED_MODEL_NAMES
from rag.config import Settings
from rag.embed.base import Embedder
from rag.embed.choice import AUTO, OPENAI, choose_engine
from rag.embed.engine_record import LOCAL_ENGINES, ONNX_FP32, ONNX_INT8, TORCH
from rag.embed.fake import FakeEmbedder
from rag.embed.onnx_embedder import VARIANTS, OnnxEmbedder
from rag.embed.openai_embedder import OpenAIEmbedder
from rag.embed.torch_embedder import SentenceTransformerEmbedder
from rag.errors import ConfigurationError, ModelProvisioningError

EMBEDDING_BACKENDS = (AUTO, TORCH, ONNX_INT8, ONNX_FP32, OPENAI)


def create_embedder(settings: Settings) -> Embedder:
    """The embedder `settings` describe (their model already resolved: rag/embed/choice.py)."""
    models = settings.models
    if models.embedding == FAKE_EMBEDDING:
        return FakeEmbedder()
    if models.embedding_backend == OPENAI:
        return _server_embedder(settings)
    return load_embedder(
        settings.embedding_model_location(),
        backend=models.embedding_backend,
        query_prefix=models.query_prefix,
        passage_prefix=models.passage_prefix,
        batch_size=models.embedding_batch_size,
        threads=models.threads,
        query_threads=models.query_threads,
    )


def load_embedder(
    location: str,
    *,
    backend: str = AUTO,
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    query_threads: int | None = None,
) -> Embedder:
    """A local engine for a model folder (or hub id): `onnx` runs the folder's 8-bit ONNX export, `onnx-fp32` its
    full-precision one (rag/embed/onnx_embedder.py), `torch` sentence-transformers; `auto` the engine measured
    fastest on this CPU (rag/embed/choice.py). `query_threads` None: one for torch, `threads` for ONNX Runtime
    (see ModelSettings.query_threads)."""
    if backend not in (AUTO, *LOCAL_ENGINES):
        choices = ", ".join(EMBEDDING_BACKENDS)
        raise ModelProvisioningError(f"unknown embedding backend {backend!r}; use one of {choices}")
    engine = choose_engine(Path(location), backend).engine
    if engine == TORCH:
        # torch's workers spin and stall under load; ONNX Runtime's are told not to
        return SentenceTransformerEmbedder(
            location,
            query_prefix=query_prefix,
            passage_prefix=passage_prefix,
            batch_size=batch_size,
            threads=threads,
            query_threads=1 if query_threads is None else query_threads,
        )
    return OnnxEmbedder(
        location,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        batch_size=batch_size,
        threads=threads,
        query_threads=threads if query_threads is None else query_threads,
        variant=VARIANTS[engine],
    )


def _server_embedder(settings: Settings) -> OpenAIEmbedder:
    models = settings.models
    location = Path(settings.embedding_model_location())
    served = models.embedding_server_model or SERVED_MODEL_NAMES.get(location.name)
    if not models.embedding_server_url or not served:
        raise ConfigurationError(
            "RAG_MODELS_EMBEDDING_BACKEND=openai needs RAG_MODELS_EMBEDDING_SERVER_URL, and "
            f"RAG_MODELS_EMBEDDING_SERVER_MODEL for a model other than {', '.join(SERVED_MODEL_NAMES)}"
        )
    key = models.embedding_server_api_key
    return OpenAIEmbedder(
        location,
        base_url=models.embedding_server_url,
        served_model=served,
        api_key=key.get_secret_value() if key else None,
        batch_size=models.embedding_batch_size,
        concurrency=models.embedding_server_concurrency,
        timeout_s=models.embedding_server_timeout_s,
        retries=models.embedding_server_retries,
        query_prefix=models.query_prefix,
        passage_prefix=models.passage_prefix,
    )
