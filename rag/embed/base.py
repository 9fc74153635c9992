"""Dense embeddings: the protocol every backend meets, and what the backends share (prompt prefixes, identity).

An embedder also counts tokens in its own tokenizer: chunk budgets must be measured in the tokens the
model actually sees (docs/architecture.md, trap 1), not in tiktoken's. The backends: rag/embed/torch_embedder.py,
rag/embed/onnx_embedder.py, rag/embed/fake.py; rag/embed/factory.py picks one.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, Protocol, runtime_checkable

import numpy as np

from rag.embed.folder import load_tokenizer

Matrix = np.ndarray
SMALL_CALL_TEXTS = 8  # calls this small (questions, a few sentences) run on `query_threads`


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


TokenCounter = Callable[[str], int]


@runtime_checkable
class PortableTokenCounting(Protocol):
    """An embedder that can hand its `count_tokens` to other processes (ingest's chunking workers)."""

    def token_counter(self) -> TokenCounter | None:
        """`count_tokens` as a small picklable function; None when it cannot leave this process."""
        ...


class TokenizerFileCounter:
    """Counts a passage's tokens with a model folder's tokenizer.json, prefix and special tokens included, as
    the model's own tokenizer does: picklable (the tokenizer loads on first use), so worker processes count
    without loading the model."""

    def __init__(self, model_folder: Path, prefix: str) -> None:
        self.model_folder = model_folder
        self.prefix = prefix
        self._tokenizer: Any = None

    def __call__(self, text: str) -> int:
        if self._tokenizer is None:
            self._tokenizer = load_tokenizer(self.model_folder)  # untruncated: counts are for chunk budgets
        return len(self._tokenizer.encode(self.prefix + text).ids)

    def __getstate__(self) -> dict[str, Any]:
        return {"model_folder": self.model_folder, "prefix": self.prefix, "_tokenizer": None}


def folder_token_counter(folder: Path, prefix: str) -> TokenCounter | None:
    return TokenizerFileCounter(folder, prefix) if (folder / "tokenizer.json").is_file() else None


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


def model_identity(path: Path) -> str:
    """Identity that changes when the weights change: folder name + provenance hash if present."""
    provenance = path / "provenance.json"
    if provenance.exists():
        digest = hashlib.sha256(provenance.read_bytes()).hexdigest()[:12]
        return f"{path.name}@{digest}"
    return path.name
