"""Dense embeddings through sentence-transformers on torch: any sentence-transformers folder (or hub id).

The embedder also counts tokens in its own tokenizer: chunk budgets must be measured in the tokens the
model actually sees (docs/architecture.md, trap 1), not in tiktoken's.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from rag.embed.base import (
    SMALL_CALL_TEXTS,
    Matrix,
    PrefixedEmbedder,
    TokenCounter,
    folder_token_counter,
    model_identity,
    prompt_prefixes,
)
from rag.errors import ModelProvisioningError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

logger = logging.getLogger(__name__)

_THREADS_LOCK = threading.Lock()
_THREADS_STATE = {"active": 0, "previous": 0}


class SentenceTransformerEmbedder(PrefixedEmbedder):
    """Any sentence-transformers folder, run by torch; prefixes unset are the folder's prompts."""

    engine = "torch"

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
        self._folder = Path(model_path)
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

    def token_counter(self) -> TokenCounter | None:
        return folder_token_counter(self._folder, self.passage_prefix)

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
    import torch  # loaded on first use: a heavy import that the ONNX and fake embedders never need

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
    # loaded on first use: torch and sentence-transformers take seconds to import
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
