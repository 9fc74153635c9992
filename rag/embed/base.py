"""Dense embeddings: one small protocol, a sentence-transformers backend, and a deterministic fake.

The embedder also counts tokens in its own tokenizer: chunk budgets must be measured in the tokens the
model actually sees (FINDINGS.md #1), not in tiktoken's.
"""

from __future__ import annotations

import hashlib
import logging
import re
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, runtime_checkable

import numpy as np

from rag.errors import ModelProvisioningError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from rag.embed.onnx_embedder import OnnxEmbedder

logger = logging.getLogger(__name__)

Matrix = np.ndarray
SMALL_CALL_TEXTS = 8  # calls this small (questions, a few sentences) run on `query_threads`
_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"active": 0, "previous": 0}


@runtime_checkable
class Embedder(Protocol):
    model_id: str
    dimension: int

    def embed_query(self, text: str) -> np.ndarray:
        """Unit-length vector for a question."""
        ...

    def embed_queries(self, texts: list[str]) -> Matrix:
        """Unit-length vectors for several questions (or sentences compared to questions)."""
        ...

    def embed_documents(self, texts: list[str]) -> Matrix:
        """Unit-length vectors for passages, one row each."""
        ...

    def count_tokens(self, text: str) -> int:
        """Tokens the model sees for `text` as a passage, prefix and special tokens included."""
        ...


def prompt_prefixes(
    prompts: Mapping[str, str], query_prefix: str | None, passage_prefix: str | None
) -> tuple[str, str]:
    """The question and passage prefixes: as given, else the model folder's own prompts (`query`; `document` or
    `passage`). e5 and EmbeddingGemma each lose quality without theirs, and they differ."""
    query = query_prefix if query_prefix is not None else prompts.get("query", "")
    passage = passage_prefix if passage_prefix is not None else prompts.get("document", prompts.get("passage", ""))
    return query, passage


class PrefixedEmbedder:
    """The Embedder methods around one `_encode(texts)`: question and passage prefixes are added here, not by
    callers, so every backend adds the same ones."""

    query_prefix: str = ""
    passage_prefix: str = ""

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_queries([text])[0]

    def embed_queries(self, texts: list[str]) -> Matrix:
        return self._encode([self.query_prefix + t for t in texts])

    def embed_documents(self, texts: list[str]) -> Matrix:
        return self._encode([self.passage_prefix + t for t in texts])

    def _encode(self, texts: list[str]) -> Matrix:
        raise NotImplementedError


class SentenceTransformerEmbedder(PrefixedEmbedder):
    """Any sentence-transformers folder, run by torch; prefixes unset are the folder's prompts."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        query_threads: int | None = 1,
    ) -> None:
        self.model_id = str(model_path)
        self.query_threads = query_threads
        self.batch_size = batch_size
        self._model = _load_sentence_transformer(model_path, threads)
        prompts: dict[str, str] = dict(getattr(self._model, "prompts", None) or {})
        self.query_prefix, self.passage_prefix = prompt_prefixes(prompts, query_prefix, passage_prefix)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self.max_tokens = int(self._model.max_seq_length or 512)
        self.model_id = model_identity(Path(model_path)) if Path(model_path).exists() else str(model_path)

    def count_tokens(self, text: str) -> int:
        tokenizer = self._model.tokenizer
        return len(tokenizer(self.passage_prefix + text, add_special_tokens=True, truncation=False)["input_ids"])

    def _encode(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        if self.query_threads and len(texts) <= SMALL_CALL_TEXTS:
            with _torch_threads(self.query_threads):
                return self._encode_now(texts)
        return self._encode_now(texts)

    def _encode_now(self, texts: list[str]) -> Matrix:
        # sentence-transformers sorts by length inside one call, so long calls waste little on padding
        vectors = self._model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)


@contextmanager
def _torch_threads(count: int) -> Iterator[None]:
    """Run a small encode on `count` torch threads. A single question is too small to split across cores,
    and when the other core is busy (an ingest, the LLM) torch's spinning workers stall it: measured on 2
    cores under load, query embedding p50 1,964 ms with 2 threads vs 88 ms with 1. Concurrent small calls
    share the setting; the last one out restores the previous thread count."""
    import torch

    with _THREADS_LOCK:
        if _THREADS_STATE["active"] == 0:
            _THREADS_STATE["previous"] = torch.get_num_threads()
            torch.set_num_threads(count)
        _THREADS_STATE["active"] += 1
    try:
        yield
    finally:
        with _THREADS_LOCK:
            _THREADS_STATE["active"] -= 1
            if _THREADS_STATE["active"] == 0:
                torch.set_num_threads(_THREADS_STATE["previous"])


def _load_sentence_transformer(model_path: Path | str, threads: int | None) -> SentenceTransformer:
    import torch
    from sentence_transformers import SentenceTransformer

    if threads:
        torch.set_num_threads(threads)
    path = Path(model_path)
    try:
        return SentenceTransformer(str(model_path), device="cpu", local_files_only=path.exists())
    except (OSError, ValueError) as exc:
        raise ModelProvisioningError(
            f"cannot load the embedding model {model_path} ({exc}); provision it with `python -m rag models` "
            "(`make models`) or point RAG_MODELS_EMBEDDING at a sentence-transformers folder"
        ) from exc


def model_identity(path: Path) -> str:
    """Identity that changes when the weights change: folder name + provenance hash if present."""
    provenance = path / "provenance.json"
    if provenance.exists():
        digest = hashlib.sha256(provenance.read_bytes()).hexdigest()[:12]
        return f"{path.name}@{digest}"
    return path.name


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
        from rag.embed.onnx_embedder import OnnxEmbedder

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
    from rag.provision.onnx_export import is_exported

    return folder.is_dir() and is_exported(folder)


class FakeEmbedder:
    """Deterministic, dependency-free embedder for fast tests.

    Hashes character trigrams (and words) into a fixed number of buckets, so texts that share wording get
    similar vectors: retrieval tests can assert real outcomes in milliseconds.
    """

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension
        self.model_id = f"fake-{dimension}"

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_queries(self, texts: list[str]) -> Matrix:
        return self.embed_documents(texts)

    def embed_documents(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text)) + 2

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        lowered = re.sub(r"\s+", " ", text.lower())
        features = [lowered[i : i + 3] for i in range(max(len(lowered) - 2, 1))] + lowered.split()
        for feature in features:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dimension] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector
