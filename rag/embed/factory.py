"""The embedder for a model folder and backend: the one place that chooses between the engines."""

from __future__ import annotations

from pathlib import Path

from rag.embed.base import Embedder
from rag.embed.onnx_embedder import OnnxEmbedder, is_exported
from rag.embed.torch_embedder import SentenceTransformerEmbedder
from rag.errors import ModelProvisioningError

EMBEDDING_BACKENDS = ("auto", "torch", "onnx")


def load_embedder(
    location: str,
    *,
    backend: str = "auto",
    query_prefix: str | None = None,
    passage_prefix: str | None = None,
    batch_size: int = 32,
    threads: int | None = None,
    query_threads: int | None = None,
) -> Embedder:
    """The embedder for a model folder (or hub id) and backend: `onnx` runs the folder's ONNX export
    (rag/embed/onnx_embedder.py), `torch` sentence-transformers; `auto` takes the export when the folder holds one.
    `query_threads` None: one for torch, `threads` for ONNX Runtime (see ModelSettings.query_threads)."""
    if backend not in EMBEDDING_BACKENDS:
        choices = ", ".join(EMBEDDING_BACKENDS)
        raise ModelProvisioningError(f"unknown embedding backend {backend!r}; use one of {choices}")
    engine: type[SentenceTransformerEmbedder] | type[OnnxEmbedder] = SentenceTransformerEmbedder
    if backend == "onnx" or (backend == "auto" and _has_onnx_export(Path(location))):
        engine = OnnxEmbedder
    if query_threads is None:  # torch's workers spin and stall under load; ONNX Runtime's are told not to
        query_threads = 1 if engine is SentenceTransformerEmbedder else threads
    return engine(
        location,
        query_prefix=query_prefix,
        passage_prefix=passage_prefix,
        batch_size=batch_size,
        threads=threads,
        query_threads=query_threads,
    )


def _has_onnx_export(folder: Path) -> bool:
    return folder.is_dir() and is_exported(folder)
