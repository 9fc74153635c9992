"""Builds the pieces from Settings; the one object the CLI, the app, ingest and eval use.

Heavy parts (the embedding model, the store) load on first use, so `python -m rag config` and
`--help` stay instant, and tests can hand in fakes.
"""

from __future__ import annotations

import logging
import time
from functools import cached_property

from rag.answer import EvidenceSelector, ExtractiveAnswerer, refusal
from rag.config import Settings
from rag.embeddings import Embedder, SentenceTransformerEmbedder
from rag.sparse import ANALYZER_VERSION, SparseEncoder
from rag.store import CollectionSpec, QdrantStore
from rag.retrieve import Retriever
from rag.types import Answer, ChatTurn, Hit, SearchFilters

logger = logging.getLogger(__name__)


class RagService:
    def __init__(self, settings: Settings, *, embedder: Embedder | None = None, store: QdrantStore | None = None) -> None:
        self.settings = settings
        self._embedder = embedder
        self._store = store
        self._collection_checked = False

    # ---- components ------------------------------------------------------------------------------

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None:
            from rag.models import configure_offline_environment

            configure_offline_environment()
            started = time.perf_counter()
            self._embedder = SentenceTransformerEmbedder(
                self.settings.embedding_model_location(),
                query_prefix=self.settings.models.query_prefix,
                passage_prefix=self.settings.models.passage_prefix,
                batch_size=self.settings.models.embedding_batch_size,
                threads=self.settings.models.threads,
            )
            logger.info("embedding model loaded in %.1f s", time.perf_counter() - started)
        return self._embedder

    @property
    def store(self) -> QdrantStore:
        if self._store is None:
            self._store = QdrantStore(self.settings.qdrant, self.settings.collection)
        return self._store

    @cached_property
    def sparse(self) -> SparseEncoder:
        return SparseEncoder()

    @cached_property
    def retriever(self) -> Retriever:
        return Retriever(self.store, self.embedder, self.sparse, self.settings.retrieval)

    @cached_property
    def answerer(self) -> ExtractiveAnswerer:
        selector = EvidenceSelector(self.embedder, self.sparse.analyzer)
        return ExtractiveAnswerer(selector, self.settings.answer)

    def collection_spec(self) -> CollectionSpec:
        """The settings that shape vectors; a collection built with others is not reused."""
        embedder = self.embedder
        chunking = self.settings.chunking
        fingerprint = (
            f"{embedder.model_id}|dim={embedder.dimension}|chunk={chunking.max_tokens}/{chunking.overlap_sentences}"
            f"|sparse={ANALYZER_VERSION}"
        )
        return CollectionSpec(dimension=embedder.dimension, fingerprint=fingerprint)

    def open_for_writing(self) -> CollectionSpec:
        spec = self.collection_spec()
        self.store.ensure_collection(spec)
        return spec

    def open_for_reading(self) -> None:
        if self._collection_checked:
            return
        self.store.require_collection()
        self.store.check_spec(self.collection_spec())
        self._collection_checked = True

    # ---- operations --------------------------------------------------------------------------------

    def search(self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None) -> list[Hit]:
        self.open_for_reading()
        return self.retriever.retrieve(query, top_k=top_k, filters=filters).hits

    def answer(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        history: list[ChatTurn] | None = None,
    ) -> Answer:
        started = time.perf_counter()
        self.open_for_reading()
        retrieval = self.retriever.retrieve(question, top_k=top_k, filters=filters)
        if not retrieval.hits:
            result = refusal(question, retrieval.timings_ms)
        else:
            result = self.answerer.answer(question, retrieval.query_vector, retrieval.hits, retrieval.timings_ms)
        result.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
        return result

    def is_ready(self) -> bool:
        """Store reachable and models loaded (loads them on the first call)."""
        try:
            _ = self.embedder
            self.store.exists()
        except Exception:
            logger.warning("service not ready", exc_info=True)
            return False
        return True

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
