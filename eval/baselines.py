"""The plain llama-index pipeline a user would write first, as a retrieval baseline.

`VectorStoreIndex.from_documents` with the default `SentenceSplitter` (1024 tiktoken tokens, 200 overlap),
the default in-memory `SimpleVectorStore`, the default embedding batch of 10 texts, and the same embedding
model as ours (EmbeddingGemma by default, e5 in the figures of docs/benchmarks.md) behind a small `BaseEmbedding`
adapter (llama-index-embeddings-huggingface is not a dependency).

Prefixes: `HuggingFaceEmbedding(model_name="intfloat/multilingual-e5-small")` adds no instruction for e5
(llama-index only knows instructions for BGE and Instructor models and overrides the model's own prompts
with ""), so the adapter embeds raw text too. That is the pipeline as plainly written, the starting
point of docs/architecture.md's measured traps; it is not the best llama-index can do.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

from eval.metrics import distinct_top_k
from rag.embed.base import Embedder
from rag.offline import configure_offline_environment
from rag.types import Article


def without_prefixes(embedder: Embedder) -> Embedder:
    """The same model (shared, not reloaded) with the e5 `query: ` / `passage: ` prefixes turned off."""
    plain = copy.copy(embedder)
    for attribute in ("query_prefix", "passage_prefix"):
        if hasattr(plain, attribute):
            setattr(plain, attribute, "")
    return plain


@lru_cache(maxsize=1)
def embedding_adapter_class() -> type[Any]:
    """Built on first use: importing llama_index.core takes seconds."""
    # llama-index (the `eval` extra) is slow to import and only the baseline needs it
    from llama_index.core.bridge.pydantic import PrivateAttr
    from llama_index.core.embeddings import BaseEmbedding

    class EmbedderAdapter(BaseEmbedding):
        """Our `Embedder` as a llama-index embedding model."""

        _embedder: Any = PrivateAttr()

        def __init__(self, embedder: Embedder, **kwargs: Any) -> None:
            super().__init__(model_name=embedder.model_id, **kwargs)
            self._embedder = embedder

        @classmethod
        def class_name(cls) -> str:
            return "EmbedderAdapter"

        def _get_query_embedding(self, query: str) -> list[float]:
            return [float(x) for x in self._embedder.embed_queries([query])[0]]

        async def _aget_query_embedding(self, query: str) -> list[float]:
            return self._get_query_embedding(query)

        def _get_text_embedding(self, text: str) -> list[float]:
            return self._get_text_embeddings([text])[0]

        def _get_text_embeddings(self, texts: list[str]) -> list[list[float]]:
            return self._embedder.embed_documents(list(texts)).tolist()

    return EmbedderAdapter


def llama_documents(articles: Sequence[Article]) -> list[Any]:
    """One llama-index Document per article; the title as metadata, as a user loading a corpus would do."""
    # llama-index (the `eval` extra) is slow to import and only the baseline needs it
    from llama_index.core import Document

    return [Document(text=a.text, id_=a.id, metadata={"title": a.title} if a.title else {}) for a in articles]


class LlamaIndexRanking:
    """Retrieval through a default llama-index VectorStoreIndex; nodes mapped back to their document ids."""

    name = "llamaindex"

    def __init__(self, retriever: Any, max_docs: int, info: dict[str, Any]) -> None:
        self._retriever, self.max_docs = retriever, max_docs
        self.info = info  # nodes, build seconds, nodes longer than the model window (docs/architecture.md, trap 1)

    @classmethod
    def build(
        cls, articles: Sequence[Article], embedder: Embedder, *, depth: int, max_docs: int, prefixes: bool = False
    ) -> LlamaIndexRanking:
        configure_offline_environment()  # SentenceSplitter counts tiktoken tokens: the cache must be local
        # llama-index (the `eval` extra) is slow to import and only the baseline needs it
        from llama_index.core import VectorStoreIndex
        from llama_index.core.node_parser import SentenceSplitter

        plain = embedder if prefixes else without_prefixes(embedder)
        model = embedding_adapter_class()(plain)
        started = time.perf_counter()
        index = VectorStoreIndex.from_documents(
            llama_documents(articles), embed_model=model, transformations=[SentenceSplitter()], show_progress=True
        )
        info: dict[str, Any] = {"nodes": len(index.docstore.docs), "build_s": round(time.perf_counter() - started, 1)}
        info["nodes_over_model_window"] = _nodes_over_window(index, plain)
        return cls(index.as_retriever(similarity_top_k=depth), max_docs, info)

    def rank(self, question: str) -> tuple[list[str], float]:
        started = time.perf_counter()
        results = self._retriever.retrieve(question)
        elapsed = round((time.perf_counter() - started) * 1000, 2)
        ids = [str(r.node.ref_doc_id) for r in results if r.node.ref_doc_id is not None]
        return distinct_top_k(ids, self.max_docs), elapsed


def _nodes_over_window(index: Any, embedder: Embedder) -> int | None:
    """Nodes whose embedded text is longer than the model reads: their tails were never embedded."""
    window = getattr(embedder, "max_tokens", None)
    if window is None:
        return None
    # llama-index (the `eval` extra) is slow to import and only the baseline needs it
    from llama_index.core.schema import MetadataMode

    texts = [node.get_content(metadata_mode=MetadataMode.EMBED) for node in index.docstore.docs.values()]
    return sum(1 for text in texts if embedder.count_tokens(text) > window)
