"""Builds the pieces from Settings; the one object the CLI, the app, ingest and eval use.

Heavy parts (the embedding model, the store) load on first use, so `python -m rag config` and
`--help` stay instant, and tests can hand in fakes.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import cached_property

from rag.answer.answerer import Answerer, AnswerEvent, refusal
from rag.answer.claims import ClaimChecker
from rag.answer.evidence import EvidenceSelector
from rag.answer.followup import rewrite_follow_up
from rag.answer.llm import LLM, create_llm
from rag.calibration import AUTO_EMBEDDING
from rag.config import Settings
from rag.embed.base import Embedder
from rag.embed.choice import ModelChoice, model_of_fingerprint, resolve_settings, with_model
from rag.embed.factory import create_embedder
from rag.offline import configure_offline_environment
from rag.search.retrieve import Retrieval, Retriever
from rag.search.sparse import SparseEncoder
from rag.search.store import CollectionSpec, QdrantStore
from rag.text.analyzer import ANALYZER_VERSION
from rag.text.lexicon import Lexicon, load_lexicon
from rag.text.stopwords import ENGLISH_STOPWORDS
from rag.types import Answer, Article, ChatTurn, Hit, SearchFilters

logger = logging.getLogger(__name__)


@contextmanager
def closing_iterator(iterator: Iterator[AnswerEvent]) -> Iterator[None]:
    """Close a generator when the block ends, also when it ends early (GeneratorExit, an error)."""
    try:
        yield
    finally:
        close = getattr(iterator, "close", None)
        if close is not None:
            close()


class RagService:
    def __init__(
        self,
        settings: Settings,
        *,
        embedder: Embedder | None = None,
        store: QdrantStore | None = None,
        llm: LLM | None = None,
        consult_collection: bool = True,
    ) -> None:
        """`consult_collection` False: under RAG_MODELS_EMBEDDING=auto the model is chosen without looking at the
        configured collection (eval's fresh collections, named after the model, never open it)."""
        self._requested = settings
        self._settings: Settings | None = None
        self._model_choice: ModelChoice | None = None
        self._consult_collection = consult_collection
        self._embedder = embedder
        self._store = store
        self._llm = llm
        self._llm_resolved = llm is not None
        self._collection_checked = False
        # requests arrive on several threads; a model must still load once (the first two questions after
        # start-up would otherwise load two copies)
        self._loading = threading.RLock()

    # ---- components ------------------------------------------------------------------------------

    @property
    def settings(self) -> Settings:
        """The settings with RAG_MODELS_EMBEDDING=auto resolved to a model (rag/embed/choice.py), on first use: the
        model a given embedder runs, else the one the existing collection was built with, else the one measured
        fast enough on this machine. Everything that depends on the model (its engine, refusal cut-offs, side
        weights) reads it from here."""
        if self._settings is None:
            with self._loading:  # resolved once, also when the first requests arrive together
                if self._settings is None:
                    self._settings = self._resolve_model()
        return self._settings

    @property
    def model_choice(self) -> ModelChoice | None:
        """How `auto` was resolved (None when a model was named or an embedder handed in)."""
        _ = self.settings
        return self._model_choice

    def _resolve_model(self) -> Settings:
        requested = self._requested
        if requested.models.embedding != AUTO_EMBEDDING:
            return requested
        if self._embedder is not None:  # the model is the embedder's
            return with_model(requested, model_of_fingerprint(self._embedder.model_id) or AUTO_EMBEDDING)
        collection_model = self._collection_model() if self._consult_collection else None
        settings, self._model_choice = resolve_settings(requested, collection_model=collection_model)
        return settings

    def _collection_model(self) -> str | None:
        """The model the configured collection was built with, if it exists (an embedded store folder that does
        not exist yet is not created for the question). A store that cannot be read now answers None: opening
        it for the operation itself reports the problem."""
        qdrant = self._requested.qdrant
        if not qdrant.url and not qdrant.path.exists():
            return None
        try:
            return model_of_fingerprint(self.store.stored_fingerprint() if self.store.exists() else None)
        except Exception as exc:  # StoreError, or a server's own errors: the operation itself will report them
            logger.debug("could not read the collection's model: %s", exc)
            return None

    @property
    def embedder(self) -> Embedder:
        if self._embedder is not None:
            return self._embedder
        with self._loading:
            if self._embedder is None:
                configure_offline_environment()
                started = time.perf_counter()
                self._embedder = create_embedder(self.settings)
                logger.info(
                    "embedding model %s (%s) loaded in %.1f s",
                    self.settings.models.embedding,
                    getattr(self._embedder, "engine", "fake"),
                    time.perf_counter() - started,
                )
        return self._embedder

    @property
    def store(self) -> QdrantStore:
        if self._store is None:
            with self._loading:
                if self._store is None:
                    self._store = QdrantStore(self._requested.qdrant, self._requested.collection)
        return self._store

    @cached_property
    def sparse(self) -> SparseEncoder:
        return SparseEncoder()

    @cached_property
    def lexicon(self) -> Lexicon:
        """English → Korean translations: a retrieval side, and how the claim check reads an English answer's
        words over Korean evidence."""
        return load_lexicon(self.settings.lexicon_path(), ENGLISH_STOPWORDS)

    @cached_property
    def retriever(self) -> Retriever:
        retrieval = self.settings.retrieval_settings()
        lexicon = self.lexicon if retrieval.translation_weight() > 0 else None
        return Retriever(self.store, self.embedder, self.sparse, retrieval, lexicon)

    @property
    def llm(self) -> LLM | None:
        """The configured LLM backend (None for extractive answers), loaded on first use."""
        if self._llm_resolved:
            return self._llm
        with self._loading:
            if not self._llm_resolved:
                started = time.perf_counter()
                self._llm = create_llm(self.settings)
                self._llm_resolved = True
                if self._llm is not None:
                    logger.info("LLM %s ready in %.1f s", self._llm.name, time.perf_counter() - started)
        return self._llm

    @cached_property
    def answerer(self) -> Answerer:
        selector = EvidenceSelector(self.embedder, self.sparse.analyzer)
        return Answerer(
            selector,
            self.settings.answer_settings(),
            self.llm,
            self.sparse.analyzer,
            temperature=self.settings.llm.temperature,
            checker=ClaimChecker(self.sparse.analyzer, self.lexicon if self.llm is not None else None),
        )

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
        return self.retrieve(query, top_k=top_k, filters=filters).hits

    def retrieve(self, query: str, *, top_k: int | None = None, filters: SearchFilters | None = None) -> Retrieval:
        """Hits with the time each step took (`embed`, `search`)."""
        self.open_for_reading()
        return self.retriever.retrieve(query, top_k=top_k, filters=filters)

    def answer(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        history: list[ChatTurn] | None = None,
    ) -> Answer:
        final = None
        for event in self.answer_stream(question, top_k=top_k, filters=filters, history=history):
            if isinstance(event, Answer):
                final = event
        assert final is not None  # answer_stream always ends with an Answer
        return final

    def answer_stream(
        self,
        question: str,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        history: list[ChatTurn] | None = None,
    ) -> Iterator[AnswerEvent]:
        """Text pieces as the LLM writes them (none in extractive mode), then the validated Answer."""
        started = time.perf_counter()
        self.open_for_reading()
        timings: dict[str, float] = {}
        standalone = self.standalone_question(question, history or [], timings)
        retrieval = self.retriever.retrieve(standalone, top_k=top_k, filters=filters)
        timings.update(retrieval.timings_ms)
        if not retrieval.hits:
            events: Iterator[AnswerEvent] = iter([refusal(question, timings)])
        else:
            events = self.answerer.stream(standalone, retrieval.query_vector, retrieval.hits, timings)
        with closing_iterator(events):  # a caller that stops listening stops the LLM too
            for event in events:
                if isinstance(event, Answer):
                    event.timings_ms["total"] = round((time.perf_counter() - started) * 1000, 2)
                yield event

    def article(self, doc_id: str) -> Article | None:
        """The stored article that citations' `start`/`end` offsets refer to; None when it is not stored (any
        more)."""
        self.open_for_reading()
        stored = self.store.get_article(doc_id)
        return stored.article if stored else None

    def sources(self) -> list[str]:
        """The distinct sources in the collection (for a source filter); none before anything is ingested."""
        return self.store.sources()

    def standalone_question(self, question: str, history: list[ChatTurn], timings: dict[str, float]) -> str:
        """Follow-ups ("and who audits it?") rewritten with the conversation so retrieval sees the subject
        (rag/answer/followup.py); the time it took goes into `timings`."""
        if not any(turn.content.strip() for turn in history):
            return question
        started = time.perf_counter()
        rewritten = rewrite_follow_up(question, history, self.llm)
        timings["rewrite"] = round((time.perf_counter() - started) * 1000, 2)
        logger.debug("rewrote %r as %r", question, rewritten)
        return rewritten

    def warm_up(self) -> None:
        """Load everything the first question would otherwise wait for: the embedding model, the LLM, the
        Korean analyser (kiwi loads in ~2 s) and the embedded store's search index."""
        _ = self.embedder, self.llm
        self.sparse.analyzer.terms("준비")  # loads kiwi
        self.store.warm_up()

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
