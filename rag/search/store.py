"""The only module that talks to Qdrant.

Two collections per logical collection NAME:
- `NAME`: one point per chunk, named vectors `dense` (cosine) and `sparse` (BM25 terms, IDF by Qdrant).
- `NAME__articles`: one point per article holding the stored text that citation offsets refer to, its
  content hash and origin. The article record is written *last*, after all its chunks, so it doubles as a
  commit marker: an article whose record is missing or stale is re-ingested in full (resumable ingest).

A new version of an article is written beside the one being served: its chunks take the other of two sets of
point ids (`Chunk.generation`), so a write that fails half-way (a full disk) is rolled back and the previous
version stays whole; only then are the old chunks deleted and the record replaced.

Three engines behind this one front: a Qdrant server (`RAG_QDRANT_URL`), and two embedded ones in
`RAG_QDRANT_PATH` (`RAG_QDRANT_ENGINE`): qdrant-client's local mode (`local`), and Qdrant Edge (`edge`,
Qdrant's own engine in process, reached through rag/search/edge.py, which speaks the qdrant-client calls made
here).

Hybrid search is one Qdrant query (dense + keyword prefetch, fused by DBSF or weighted RRF) against a
server or Edge. Local mode scores the same way in process instead (rag/search/in_process_index.py): it scores
sparse vectors in pure Python, far too slow for interactive use, while the fusion itself is qdrant-client's own
function in both cases, so the deployments rank alike.

The collection remembers the fingerprint of the settings that shaped its vectors (embedding model,
dimension, chunking, sparse analyser); opening it with other settings raises CollectionMismatchError
instead of silently mixing incomparable vectors.
"""

from __future__ import annotations

import errno
import functools
import json
import logging
import pickle
import sqlite3
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from rag.config import QdrantSettings, mask_url
from rag.errors import (
    CollectionMismatchError,
    CollectionNotFoundError,
    ConfigurationError,
    DiskFullError,
    StoreCorruptError,
    StoreError,
    StoreLockedError,
)
from rag.search.background_indexing import BackgroundIndexer
from rag.search.edge import EDGE_FOLDER, EdgeClient, EdgeFolderLockedError, EdgeTuning
from rag.search.in_process_index import IndexedPoint, InProcessIndex
from rag.search.payloads import (
    StoredArticle,
    article_payload,
    build_filter,
    chunk_from_payload,
    chunk_payload,
    parse_date,
    stored_article,
)
from rag.search.sparse import SparseVector
from rag.types import Article, Chunk, Hit, SearchFilters, article_point_id, chunk_point_id

logger = logging.getLogger(__name__)

DENSE = "dense"
SPARSE = "sparse"
ARTICLES_SUFFIX = "__articles"
RRF_K = 60
SCROLL_BATCH = 1024
MAX_SOURCES = 1000  # distinct sources listed for the chat page's filter
STALE_WINDOW = 64  # chunk ids looked up at once when dropping an article's stale chunks
COVERAGE_CANDIDATES = 100  # keyword matches checked for the share of a question's words one chunk holds

FusionMethod = Literal["dbsf", "rrf"]


@dataclass(frozen=True)
class CollectionSpec:
    """What shapes the vectors of a collection; stored with it and checked on every open."""

    dimension: int
    fingerprint: str


class QdrantStore:
    """Chunk and article storage with hybrid search, over embedded (local) or server Qdrant."""

    def __init__(self, settings: QdrantSettings, collection: str, *, in_process_scoring: bool | None = None) -> None:
        """`in_process_scoring`: None (default) scores in process exactly when the store is embedded; False
        forces Qdrant's own query API even then (how tests check that both rank alike)."""
        self.settings = settings
        self.collection = collection
        self.articles_collection = collection + ARTICLES_SUFFIX
        client = _connect(settings)
        self._edge = isinstance(client, EdgeClient)
        # embedded Qdrant (local mode) keeps its points in plain dicts and arrays that a write resizes: a read
        # during a write can fail or see half a point, so its calls take turns; Edge's client makes its own calls
        # take turns (so that an optimisation beside the serving shard does not hold them); a server client is
        # thread-safe
        self._client = client if settings.url or self._edge else _OneCallAtATime(client)
        self._optimize_every: int | None = None  # chunks; set by batch writers (optimize_while_writing)
        self._written_since_optimized = 0
        self._indexer = BackgroundIndexer(
            self.unindexed_chunks, lambda: self.optimize(while_serving=True), self._chunks_worth_indexing
        )
        # qdrant-client takes about a second to import; `python -m rag config` and --help do without it
        from qdrant_client import models

        self._m = models
        # embedded Qdrant is exclusive to this process, so every write passes here and can invalidate
        local_mode = not settings.url and settings.engine == "local"
        self._in_process = local_mode if in_process_scoring is None else in_process_scoring and local_mode
        self._index: InProcessIndex | None = None
        self._index_lock = threading.Lock()
        # writes in progress, and a count bumped as each begins and ends: an index built meanwhile is not kept
        self._write_state = threading.Lock()
        self._writers = 0
        self._generation = 0

    # ---- lifecycle -------------------------------------------------------------------------------

    def __enter__(self) -> QdrantStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def close(self) -> None:
        self._indexer.close()
        try:
            self._client.close()
        except Exception:  # closing twice or during interpreter shutdown is harmless
            logger.debug("closing Qdrant client failed", exc_info=True)

    def exists(self) -> bool:
        return bool(self._client.collection_exists(self.collection))

    def optimize(self, *, while_serving: bool = False, optimizer: Sequence[str] | None = None) -> None:
        """Index what was written. Only Qdrant Edge needs telling: a server optimises in the background and
        local mode has no index. In process, Edge blocks every thread meanwhile (rag/search/edge.py): right at
        the end of an ingest run and at app start-up, where no question waits. `while_serving`: a child process
        optimises a copy that then takes over, and this process keeps answering and writing meanwhile
        (`optimizer`: that child's command, tests hold it)."""
        if self._edge and self.exists():
            started = time.perf_counter()
            for name in (self.collection, self.articles_collection):
                if while_serving:
                    self._client.optimize_beside(name, optimizer)
                else:
                    self._client.optimize(name)
            self._written_since_optimized = 0
            logger.info("indexed collection %s in %.1f s", self.collection, time.perf_counter() - started)

    def optimize_while_writing(self, every_chunks: int | None) -> None:
        """Batch writers with no question waiting (`python -m ingest`, bench-scale): optimise in process each
        time `every_chunks` chunks were written since the last time (Edge only; None: only when told). Edge holds
        unindexed points in memory-backed segments, so a long run that optimised only at its end would grow
        without bound; indexed segments live in files."""
        self._optimize_every = every_chunks if self._edge else None
        self._written_since_optimized = 0

    def unindexed_chunks(self) -> int:
        """Chunks Edge searches by brute force until the next optimisation (0 on the other engines)."""
        if not self._edge or not self.exists():
            return 0
        return int(self._client.unindexed_vectors(self.collection, vectors_per_point=2))  # dense and sparse

    def _chunks_worth_indexing(self) -> int:
        return int(self._client.points_worth_indexing(self.collection))

    def index_soon(self) -> None:
        """After writes while serving: have Edge index them on a thread and in a process of their own, once
        enough wait (rag/search/background_indexing.py). Returns at once; nothing to do on other engines."""
        if self._edge:
            self._indexer.request()

    @property
    def indexer(self) -> BackgroundIndexer:
        return self._indexer

    def ensure_collection(self, spec: CollectionSpec) -> None:
        """Create the collections if missing; refuse to reuse ones built with other vector settings."""
        if self.exists():
            self.check_spec(spec)
            return
        m = self._m
        cluster: dict[str, Any] = {}
        if self.settings.url:
            if self.settings.shard_number:
                cluster["shard_number"] = self.settings.shard_number
            if self.settings.replication_factor:
                cluster["replication_factor"] = self.settings.replication_factor
        metadata = {"fingerprint": spec.fingerprint, "dimension": spec.dimension}
        try:
            if not self._client.collection_exists(self.articles_collection):
                self._client.create_collection(
                    self.articles_collection, vectors_config={}, metadata=metadata, **cluster
                )
            self._client.create_collection(
                self.collection,
                vectors_config={DENSE: m.VectorParams(size=spec.dimension, distance=m.Distance.COSINE)},
                sparse_vectors_config={SPARSE: m.SparseVectorParams(modifier=m.Modifier.IDF)},
                metadata=metadata,
                **cluster,
            )
        except Exception:
            # ingest shards starting together against one server race to create the collection: the loser
            # finds it there and checks it like any existing one
            if not self.exists():
                raise
            self.check_spec(spec)
            return
        self._create_payload_indexes()
        logger.info("created collection %s (dimension %d)", self.collection, spec.dimension)

    def check_spec(self, spec: CollectionSpec) -> None:
        stored = self.stored_fingerprint()
        if stored is not None and stored != spec.fingerprint:
            raise CollectionMismatchError(
                f"collection '{self.collection}' was built with other embedding/chunking settings "
                f"({stored}) than the current ones ({spec.fingerprint}); set RAG_MODELS_EMBEDDING back to the "
                "model it names (the default changed from multilingual-e5-small to embeddinggemma-300m in "
                "2026-11), use another collection name (--collection / RAG_COLLECTION), or delete it and ingest again"
            )

    def copy_into(self, target: QdrantStore, progress: Callable[[int], None] | None = None) -> tuple[int, int]:
        """Every chunk point (vectors and payload as stored), then every article record, into `target`, which is
        created with this collection's fingerprint: a move between engines without embedding again. Articles
        last, as in replace_article, so a copy cut short is completed by running it again (deterministic ids,
        upserts). Returns the chunks and articles copied."""
        self.require_collection()
        metadata = self._client.get_collection(self.collection).config.metadata or {}
        target.ensure_collection(CollectionSpec(int(metadata["dimension"]), str(metadata["fingerprint"])))
        target._index = None
        chunks = self._copy_points(self.collection, target, target.collection, [DENSE, SPARSE], progress)
        articles = self._copy_points(self.articles_collection, target, target.articles_collection, False, progress)
        target.optimize()
        return chunks, articles

    def _copy_points(
        self, name: str, target: QdrantStore, target_name: str, vectors: Any, progress: Callable[[int], None] | None
    ) -> int:
        m = self._m
        copied = 0
        offset = None
        while True:
            records, offset = self._client.scroll(
                name, limit=SCROLL_BATCH, offset=offset, with_payload=True, with_vectors=vectors
            )
            points = [
                m.PointStruct(id=str(r.id), vector=_portable_vectors(m, r.vector), payload=r.payload) for r in records
            ]
            if points:
                target._client.upsert(target_name, points=points, wait=True)
            copied += len(points)
            if progress is not None:
                progress(len(points))
            if offset is None:
                return copied

    def stored_fingerprint(self) -> str | None:
        info = self._client.get_collection(self.collection)
        metadata = info.config.metadata or {}
        value = metadata.get("fingerprint")
        return str(value) if value is not None else None

    def require_collection(self) -> None:
        if self.exists():
            return
        other = self._other_engine_holding_it()
        if other:
            raise CollectionNotFoundError(
                f"collection '{self.collection}' is not in the {self.settings.engine} engine's store, but the "
                f"{other} engine's store in {self.settings.path} holds one of that name: set RAG_QDRANT_ENGINE="
                f"{other}, or ingest into this engine (`python -m ingest data/`; docs/scaling.md, moving a collection)"
            )
        raise CollectionNotFoundError(
            f"collection '{self.collection}' does not exist yet; ingest documents first (`python -m ingest data/`)"
        )

    def _other_engine_holding_it(self) -> str | None:
        """The other embedded engine, when its files for this collection are in the folder (a changed setting)."""
        if self.settings.url:
            return None
        if self.settings.engine == "edge":
            local_files = self.settings.path / "collection" / self.collection  # qdrant-client local mode's layout
            return "local" if local_files.is_dir() else None
        edge_files = self.settings.path / EDGE_FOLDER / (self.collection + ".json")
        return "edge" if edge_files.is_file() else None

    def drop(self) -> None:
        with self._writing():
            for name in (self.collection, self.articles_collection):
                if self._client.collection_exists(name):
                    self._client.delete_collection(name)

    @contextmanager
    def _writing(self) -> Iterator[None]:
        """Mark a write: the in-process index goes stale now, and one built while the write ran is dropped."""
        with self._write_state:
            self._writers += 1
            self._generation += 1
            self._index = None
        try:
            yield
        finally:
            with self._write_state:
                self._writers -= 1
                self._generation += 1
                self._index = None

    def _create_payload_indexes(self) -> None:
        m = self._m
        indexes = {
            "article_id": m.PayloadSchemaType.KEYWORD,
            "generation": m.PayloadSchemaType.INTEGER,
            "source": m.PayloadSchemaType.KEYWORD,
            "date": m.PayloadSchemaType.DATETIME,
        }
        with warnings.catch_warnings():
            # local mode accepts payload indexes but ignores them (and says so); on a server they matter
            warnings.simplefilter("ignore")
            for name, schema in indexes.items():
                self._client.create_payload_index(self.collection, field_name=name, field_schema=schema)

    # ---- writes ----------------------------------------------------------------------------------

    def replace_article(
        self,
        article: Article,
        content_hash: str,
        chunks: Sequence[Chunk],
        dense: np.ndarray,
        sparse: Sequence[SparseVector],
    ) -> None:
        """Write an article's new chunks beside the served ones, delete the old ones, then commit the record.

        The new chunks take the other generation of point ids than the stored record names, so nothing served
        is overwritten: if writing them fails (DiskFullError, StoreError), the ones written are deleted again
        and the previous version is served as before. A kill at any point is safe too: until the record is
        written, a re-run sees the article as not ingested and redoes it into the same generation (the record
        has not changed), overwriting rather than duplicating.
        """
        with self._writing():
            self._replace_article(article, content_hash, chunks, dense, sparse)
        if self._optimize_every is not None:
            self._written_since_optimized += len(chunks)
            if self._written_since_optimized >= self._optimize_every:
                self.optimize()

    def _replace_article(
        self,
        article: Article,
        content_hash: str,
        chunks: Sequence[Chunk],
        dense: np.ndarray,
        sparse: Sequence[SparseVector],
    ) -> None:
        m = self._m
        previous = self._stored_version(article.id)
        generation = 0 if previous is None else 1 - previous[0]
        chunks = [chunk.model_copy(update={"generation": generation}) for chunk in chunks]
        points = [
            m.PointStruct(
                id=chunk.id,
                vector={DENSE: vector.tolist(), SPARSE: m.SparseVector(indices=sv.indices, values=sv.values)},
                payload=chunk_payload(chunk),
            )
            for chunk, vector, sv in zip(chunks, dense, sparse, strict=True)
        ]
        try:
            for batch in _batched(points, 256):
                self._write(functools.partial(self._client.upsert, self.collection, points=batch, wait=True))
        except StoreError:
            self._roll_back(article.id, generation)
            raise
        self._write(lambda: self._delete_superseded_chunks(article.id, generation, len(chunks), previous))
        record = m.PointStruct(
            id=article_point_id(article.id),
            vector={},
            payload=article_payload(article, content_hash, len(chunks), generation),
        )
        self._write(lambda: self._client.upsert(self.articles_collection, points=[record], wait=True))

    def delete_article(self, article_id: str) -> None:
        with self._writing():
            # chunks first: a kill in between leaves the record, so the next run deletes (or rewrites) the article
            # again, and a missing record always means no chunks of another generation are left
            self._write(lambda: self._delete_chunks(article_id))
            self._write(
                lambda: self._client.delete(self.articles_collection, points_selector=[article_point_id(article_id)])
            )

    def _delete_chunks(self, article_id: str, *, only_generation: int | None = None) -> None:
        """Delete an article's chunks: all, or only one generation's."""
        m = self._m
        must: list[Any] = [m.FieldCondition(key="article_id", match=m.MatchValue(value=article_id))]
        if only_generation is not None:
            must.append(m.FieldCondition(key="generation", match=m.MatchValue(value=only_generation)))
        self._client.delete(self.collection, points_selector=m.FilterSelector(filter=m.Filter(must=must)))

    def _delete_superseded_chunks(
        self, article_id: str, generation: int, count: int, previous: tuple[int, int] | None
    ) -> None:
        """Delete every chunk of the article but the `count` just written in `generation`: the previous version
        (`previous`: its generation and chunk count, from its record) and anything past `count` that an
        interrupted earlier attempt left.

        Found by id, a window at a time, not by a filter over the collection, which local mode evaluates point
        by point in Python: measured (make bench-scale), that made every article's write slower than the last, to
        5 chunks/s at 18,000 chunks. This relies on one thing: a generation's stored chunks are always numbered
        0…k-1 without a gap, because they are written in order and deleted from the end (ids here are deleted
        highest index first), whatever point a run was killed at.
        """
        stale = self._chunks_from(article_id, generation, count)
        if previous is not None:
            old_generation, old_count = previous
            stale += self._chunks_from(article_id, old_generation, old_count)
            stale += [chunk_point_id(article_id, index, old_generation) for index in range(old_count)]
        else:
            # no record: the other generation holds only what an interrupted attempt left
            stale += self._chunks_from(article_id, 1 - generation, 0)
        if stale:
            self._client.delete(self.collection, points_selector=list(reversed(stale)))

    def _chunks_from(self, article_id: str, generation: int, first: int) -> list[str]:
        """The stored ids of the article's chunks in `generation` numbered `first` and up, in index order."""
        found: list[str] = []
        start = first
        while True:
            ids = [chunk_point_id(article_id, index, generation) for index in range(start, start + STALE_WINDOW)]
            present = {str(record.id) for record in self._client.retrieve(self.collection, ids=ids, with_payload=False)}
            found += [point_id for point_id in ids if point_id in present]
            if len(present) < STALE_WINDOW:
                return found
            start += STALE_WINDOW

    def _roll_back(self, article_id: str, generation: int) -> None:
        """Best effort: delete the part of a new version written before a failure. If even that fails, the
        record still names the previous version, and the next run writes the new one into the same ids."""
        try:
            self._delete_chunks(article_id, only_generation=generation)
        except Exception:
            logger.warning("could not remove the partly written chunks of %s; a re-run replaces them", article_id)

    def _write(self, operation: Callable[[], object]) -> None:
        """Run a write; a full disk becomes DiskFullError, another failure StoreError, both naming the store."""
        try:
            operation()
        except Exception as exc:
            raise _write_error(exc, self._location()) from exc

    def _location(self) -> str:
        return (
            f"the Qdrant server {mask_url(self.settings.url)}"
            if self.settings.url
            else f"the store {self.settings.path}"
        )

    # ---- reads -----------------------------------------------------------------------------------

    def _stored_version(self, article_id: str) -> tuple[int, int] | None:
        """The generation of point ids the article's committed chunks use and their count; None when it has no
        record."""
        records = self._client.retrieve(
            self.articles_collection,
            ids=[article_point_id(article_id)],
            with_payload=["chunk_generation", "chunk_count"],
        )
        if not records:
            return None
        payload = records[0].payload or {}
        return int(payload.get("chunk_generation", 0)), int(payload.get("chunk_count", 0))

    def get_article(self, article_id: str) -> StoredArticle | None:
        records = self._client.retrieve(self.articles_collection, ids=[article_point_id(article_id)])
        return stored_article(records[0].payload or {}) if records else None

    def iter_articles(self, with_text: bool = False) -> Iterator[StoredArticle]:
        """Every committed article (text omitted unless asked: it is the bulk of the payload)."""
        offset = None
        selector: Any = True if with_text else self._m.PayloadSelectorExclude(exclude=["text"])
        while True:
            records, offset = self._client.scroll(
                self.articles_collection, limit=512, offset=offset, with_payload=selector
            )
            for record in records:
                yield stored_article(record.payload or {})
            if offset is None:
                return

    def sources(self) -> list[str]:
        """The distinct `source` values of the stored chunks, sorted (at most MAX_SOURCES of them).

        The embedded store reads them from its in-process index, which already holds every chunk's source;
        a server answers with a facet count over the indexed `source` field.
        """
        if not self.exists():
            return []
        if self._in_process:
            found = {str(source) for source in self._local_index().sources if source}
        else:
            response = self._client.facet(self.collection, key="source", limit=MAX_SOURCES, exact=True)
            found = {str(hit.value) for hit in response.hits if hit.value}
        return sorted(found)[:MAX_SOURCES]

    def count_chunks(self) -> int:
        return int(self._client.count(self.collection, exact=True).count)

    def count_articles(self) -> int:
        return int(self._client.count(self.articles_collection, exact=True).count)

    def search(
        self,
        dense_query: np.ndarray,
        keyword_sides: Sequence[tuple[SparseVector, float]],
        *,
        limit: int,
        candidates: int,
        fusion: FusionMethod = "dbsf",
        rrf_k: int = RRF_K,
        dense_weight: float = 1.0,
        filters: SearchFilters | None = None,
    ) -> list[Hit]:
        """Hybrid search: dense candidates and those of each keyword query (with its weight) fused by DBSF or
        weighted RRF.

        A side with weight 0 (or an empty keyword query) is left out. DBSF (Qdrant's distribution-based score
        fusion) has no weights of its own: each side is listed in proportion to its weight (see _repeats).
        Each hit also carries the cosine similarity of its dense vector to the query, which the answer layer
        uses to judge whether anything relevant was found at all.
        """
        keyword_sides = [(query, weight) for query, weight in keyword_sides if weight > 0 and not query.is_empty()]
        use_dense = dense_weight > 0 or not keyword_sides
        weights = ([dense_weight] if use_dense else []) + [weight for _, weight in keyword_sides]
        if self._in_process:
            return self._search_in_process(
                dense_query,
                keyword_sides,
                use_dense=use_dense,
                limit=limit,
                candidates=candidates,
                fusion=fusion,
                rrf_k=rrf_k,
                weights=weights,
                filters=filters,
            )
        m = self._m
        query_filter = build_filter(m, filters)
        prefetch = []
        if use_dense:
            dense_prefetch = m.Prefetch(query=dense_query.tolist(), using=DENSE, limit=candidates, filter=query_filter)
            prefetch += [dense_prefetch] * _repeats(fusion, dense_weight, weights)
        for sparse_query, weight in keyword_sides:
            sparse_prefetch = m.Prefetch(
                query=m.SparseVector(indices=sparse_query.indices, values=sparse_query.values),
                using=SPARSE,
                limit=candidates,
                filter=query_filter,
            )
            prefetch += [sparse_prefetch] * _repeats(fusion, weight, weights)
        query = (
            m.FusionQuery(fusion=m.Fusion.DBSF) if fusion == "dbsf" else m.RrfQuery(rrf=m.Rrf(k=rrf_k, weights=weights))
        )
        response = self._client.query_points(
            self.collection,
            prefetch=prefetch,
            query=query,
            query_filter=query_filter,
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE],
        )
        return [_hit(point, dense_query) for point in response.points]

    def search_dense(self, dense_query: np.ndarray, *, limit: int, filters: SearchFilters | None = None) -> list[Hit]:
        if self._in_process:
            index = self._local_index()
            ranked = index.dense_top(dense_query, limit, index.mask(filters))
            return self._hits(index, ranked, dense_query)
        return self._search_single(dense_query.tolist(), DENSE, limit, filters, dense_query)

    def search_sparse(
        self, sparse_query: SparseVector, *, limit: int, filters: SearchFilters | None = None
    ) -> list[Hit]:
        if sparse_query.is_empty():
            return []
        if self._in_process:
            index = self._local_index()
            ranked = index.sparse_top(sparse_query.indices, sparse_query.values, limit, index.mask(filters))
            return self._hits(index, ranked, None)
        query = self._m.SparseVector(indices=sparse_query.indices, values=sparse_query.values)
        return self._search_single(query, SPARSE, limit, filters, None)

    def keyword_coverage(self, term_ids: Sequence[int]) -> float | None:
        """Largest share of the distinct terms that one chunk holds; None when there are no terms."""
        if not term_ids:
            return None
        if self._in_process:
            return self._local_index().term_coverage(term_ids)
        return self._coverage_among_matches(term_ids)

    def _coverage_among_matches(self, term_ids: Sequence[int]) -> float:
        """The engine keeps its vocabulary to itself, so the chunks holding most of the terms are looked for
        among the best keyword matches of the terms themselves: a chunk holding more of them scores higher
        unless the others are much rarer, so the COVERAGE_CANDIDATES best are enough in practice (the parity
        tests compare it with the exact count of the in-process index)."""
        m = self._m
        terms = sorted({int(t) for t in term_ids})
        response = self._client.query_points(
            self.collection,
            query=m.SparseVector(indices=terms, values=[1.0] * len(terms)),
            using=SPARSE,
            limit=COVERAGE_CANDIDATES,
            with_payload=False,
            with_vectors=[SPARSE],
        )
        wanted = set(terms)
        held = [
            len(wanted.intersection(point.vector[SPARSE].indices))
            for point in response.points
            if isinstance(point.vector, dict) and SPARSE in point.vector
        ]
        return max(held, default=0) / len(terms)

    def warm_up(self) -> None:
        """Build what the first search would otherwise build: local mode's in-process index; Edge's indexes over
        points written since the last optimisation (uploads through the running app, an interrupted ingest)."""
        if self._in_process and self.exists():
            self._local_index()
        self.optimize()

    def _search_single(
        self, query: Any, using: str, limit: int, filters: SearchFilters | None, dense_query: np.ndarray | None
    ) -> list[Hit]:
        response = self._client.query_points(
            self.collection,
            query=query,
            using=using,
            query_filter=build_filter(self._m, filters),
            limit=limit,
            with_payload=True,
            with_vectors=[DENSE] if dense_query is not None else False,
        )
        return [_hit(point, dense_query) for point in response.points]

    # ---- embedded store: in-process scoring -------------------------------------------------------

    def _search_in_process(
        self,
        dense_query: np.ndarray,
        keyword_sides: Sequence[tuple[SparseVector, float]],
        *,
        use_dense: bool,
        limit: int,
        candidates: int,
        fusion: FusionMethod,
        rrf_k: int,
        weights: Sequence[float],
        filters: SearchFilters | None,
    ) -> list[Hit]:
        # qdrant-client takes about a second to import; `python -m rag config` and --help do without it
        from qdrant_client.hybrid.fusion import distribution_based_score_fusion, reciprocal_rank_fusion

        index = self._local_index()
        mask = index.mask(filters)
        sides: list[list[tuple[str, float]]] = []
        if use_dense:
            sides.append(index.dense_top(dense_query, candidates, mask))
        for sparse_query, _ in keyword_sides:
            sides.append(index.sparse_top(sparse_query.indices, sparse_query.values, candidates, mask))
        # fresh point objects per list: qdrant-client's DBSF normalises the scores in place
        responses = [
            [self._m.ScoredPoint(id=pid, version=0, score=score) for pid, score in side]
            for side, weight in zip(sides, weights, strict=True)
            for _ in range(_repeats(fusion, weight, weights))
        ]
        if fusion == "dbsf":
            fused = distribution_based_score_fusion(responses, limit=limit)
        else:
            fused = reciprocal_rank_fusion(responses, limit=limit, ranking_constant_k=rrf_k, weights=list(weights))
        return self._hits(index, [(str(point.id), float(point.score)) for point in fused], dense_query)

    def _hits(
        self, index: InProcessIndex, ranked: list[tuple[str, float]], dense_query: np.ndarray | None
    ) -> list[Hit]:
        """Payloads for in-process results; the dense similarity comes from the index that ranked them (it
        already holds the vectors), so Qdrant is asked for payloads only."""
        if not ranked:
            return []
        records = self._client.retrieve(self.collection, ids=[pid for pid, _ in ranked], with_payload=True)
        by_id = {str(record.id): record for record in records}
        hits = []
        for pid, score in ranked:
            record = by_id.get(pid)
            if record is not None:  # a point deleted since the index was built is left out
                dense_score = index.cosine(pid, dense_query) if dense_query is not None else None
                hits.append(Hit(chunk=chunk_from_payload(record.payload or {}), score=score, dense_score=dense_score))
        return hits

    def _local_index(self) -> InProcessIndex:
        index = self._index
        if index is not None:
            return index
        with self._index_lock:
            index = self._index
            if index is None:
                self.require_collection()
                with self._write_state:
                    generation = self._generation if self._writers == 0 else None
                index = self._build_index()
                with self._write_state:
                    if generation == self._generation:  # no write ran during the build, or began since
                        self._index = index
            return index

    def _build_index(self) -> InProcessIndex:
        points: list[IndexedPoint] = []
        offset = None
        dimension = 0
        while True:
            records, offset = self._client.scroll(
                self.collection,
                limit=SCROLL_BATCH,
                offset=offset,
                with_payload=["source", "date"],
                with_vectors=[DENSE, SPARSE],
            )
            for record in records:
                vectors = record.vector if isinstance(record.vector, dict) else {}
                dense = np.asarray(vectors.get(DENSE, []), dtype=np.float32)
                dimension = dimension or dense.size
                sparse = vectors.get(SPARSE)
                payload = record.payload or {}
                points.append(
                    IndexedPoint(
                        id=str(record.id),
                        dense=dense,
                        sparse_indices=list(sparse.indices) if sparse is not None else [],
                        sparse_values=list(sparse.values) if sparse is not None else [],
                        source=payload.get("source"),
                        date=parse_date(payload.get("date")),
                    )
                )
            if offset is None:
                break
        logger.info("in-process index of %s: %d chunks", self.collection, len(points))
        return InProcessIndex(points, dimension)


# ---- helpers -----------------------------------------------------------------------------------------


MAX_LISTINGS = 8  # each listing of a side is one more prefetch on a server


def _repeats(fusion: FusionMethod, weight: float, weights: Sequence[float]) -> int:
    """How often a side is listed for fusion. Qdrant's DBSF sums the normalised scores of its prefetches and
    takes no weights, so weights are expressed by listing each side in proportion, as the smallest whole
    numbers that keep the ratios, no side more than MAX_LISTINGS times (else the ratios are rounded), on a
    server and in process alike: 1 and 2 → once and twice; 1 and 0.5 → twice and once; 1 and 0.75 → four and
    three times. RRF takes real weights, so each side is listed once."""
    if fusion != "dbsf":
        return 1
    lightest = min((w for w in weights if w > 0), default=1.0)
    ratios = [w / lightest for w in weights if w > 0]
    exact = (
        m
        for m in range(1, MAX_LISTINGS + 1)
        if all(abs(r * m - round(r * m)) < 0.05 and round(r * m) <= MAX_LISTINGS for r in ratios)
    )
    return min(MAX_LISTINGS, max(1, round(weight / lightest * next(exact, 1))))


class _OneCallAtATime:
    """A client whose method calls take turns (see QdrantStore.__init__)."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self._lock = threading.RLock()

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if not callable(attribute):
            return attribute

        def call(*args: Any, **kwargs: Any) -> Any:
            with self._lock:
                return attribute(*args, **kwargs)

        return call


def _connect(settings: QdrantSettings) -> Any:
    # qdrant-client takes about a second to import; `python -m rag config` and --help do without it
    from qdrant_client import QdrantClient

    if settings.url:
        api_key = settings.api_key.get_secret_value() if settings.api_key else None
        try:
            return QdrantClient(url=settings.url, api_key=api_key, timeout=int(settings.timeout_s))
        except Exception as exc:
            raise StoreError(f"cannot reach Qdrant at {mask_url(settings.url)}: {mask_url(str(exc))}") from exc
    try:
        settings.path.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigurationError(
            f"RAG_QDRANT_PATH {settings.path} cannot be used as the store folder ({exc.strerror or exc}); "
            "point it at a writable folder"
        ) from exc
    missing_meta = _collections_without_meta(settings.path)
    if missing_meta:
        raise StoreCorruptError(_damaged_store_message(settings.path, missing_meta))
    try:
        if settings.engine == "edge":
            tuning = EdgeTuning(
                quantization=settings.edge_quantization, indexing_threshold_kb=settings.edge_indexing_threshold_kb
            )
            return EdgeClient(settings.path / EDGE_FOLDER, tuning)
        return QdrantClient(path=str(settings.path))
    except EdgeFolderLockedError as exc:
        raise _locked(settings) from exc
    except RuntimeError as exc:
        if "already accessed" in str(exc):
            raise _locked(settings) from exc
        raise StoreError(f"cannot open the embedded store {settings.path}: {exc}") from exc
    except OSError as exc:
        if exc.errno == errno.ENOSPC:
            raise DiskFullError(f"no space left on the device of the store {settings.path}; free space") from exc
        raise StoreError(f"cannot open the embedded store {settings.path}: {exc.strerror or exc}") from exc
    except _DAMAGE_ERRORS as exc:
        raise StoreCorruptError(
            _damaged_store_message(settings.path, describe_store_damage(settings.path) or str(exc))
        ) from exc


# What reading a damaged meta.json or SQLite file raises inside qdrant-client's local mode (JSON and Unicode
# errors are ValueErrors; a meta.json of the wrong shape gives attribute, type or key errors).
_DAMAGE_ERRORS = (
    ValueError,
    sqlite3.DatabaseError,
    pickle.UnpicklingError,
    EOFError,
    AttributeError,
    TypeError,
    KeyError,
)
META_FILE = "meta.json"


def _collections_without_meta(path: Path) -> str | None:
    """qdrant-client writes a fresh, empty meta.json where there is none: collections then look absent, and
    creating one anew would reuse or replace the folder of data it no longer knows about."""
    folders = path / "collection"
    if (path / META_FILE).exists() or not folders.is_dir() or not any(folders.iterdir()):
        return None
    return f"{META_FILE} is missing but collection/ holds data"


def describe_store_damage(path: Path) -> str | None:
    """What is wrong with an embedded store folder, read without qdrant-client: meta.json that is not a JSON
    object of collections, or a collection's storage.sqlite that SQLite will not read. None when both look fine."""
    missing = _collections_without_meta(path)
    if missing:
        return missing
    meta = path / META_FILE
    if meta.exists():
        try:
            data = json.loads(meta.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            return f"{META_FILE} cannot be read ({exc})"
        if not isinstance(data, dict) or not isinstance(data.get("collections", {}), dict):
            return f"{META_FILE} does not hold a list of collections"
    for database in sorted((path / "collection").glob("*/storage.sqlite")):
        problem = _sqlite_problem(database)
        if problem:
            return f"{database.relative_to(path)}: {problem}"
    return None


def _sqlite_problem(database: Path) -> str | None:
    try:
        connection = sqlite3.connect(f"file:{database}?mode=ro", uri=True)
        try:
            verdict = connection.execute("PRAGMA quick_check").fetchone()[0]
        finally:
            connection.close()
    except sqlite3.Error as exc:
        return str(exc)
    return None if verdict == "ok" else str(verdict)


def _damaged_store_message(path: Path, detail: str) -> str:
    return (
        f"the embedded store {path} is damaged and cannot be opened ({detail}). Restore the folder from a backup, "
        f"or move it aside (`mv {path} {path}.damaged`) and ingest the documents again (`python -m ingest PATH`); "
        "`python -m rag doctor` checks the store"
    )


def _write_error(exc: Exception, location: str) -> StoreError:
    """A failed write as a typed error: a full disk (ENOSPC, or SQLite's "database or disk is full", or a
    server saying so) gets its own error and advice; anything else is a StoreError naming the store."""
    text = mask_url(str(exc))
    full = (isinstance(exc, OSError) and exc.errno == errno.ENOSPC) or any(
        words in text.lower() for words in ("no space left", "disk is full", "disk full")
    )
    if full:
        return DiskFullError(
            f"no space left on the device while writing to {location}; the article being written keeps its "
            "previous version. Free disk space and run the same command again"
        )
    if isinstance(exc, StoreError):
        return exc
    return StoreError(f"writing to {location} failed ({type(exc).__name__}: {text})")


def _locked(settings: QdrantSettings) -> StoreLockedError:
    return StoreLockedError(
        f"the embedded store {settings.path} is in use by another process (embedded Qdrant allows "
        "one at a time; usually `python app.py`). Stop that process, or send the files to the running "
        "app with `POST /v1/ingest`, or run a Qdrant server and set RAG_QDRANT_URL"
    )


def _portable_vectors(m: Any, vectors: Any) -> dict[str, Any]:
    """A stored point's named vectors as qdrant-client models, whichever engine returned them."""
    if not isinstance(vectors, dict):
        return {}
    out: dict[str, Any] = {}
    for name, value in vectors.items():
        if hasattr(value, "indices"):
            out[name] = m.SparseVector(indices=list(value.indices), values=list(value.values))
        else:
            out[name] = list(value)
    return out


def _hit(point: Any, dense_query: np.ndarray | None) -> Hit:
    dense_score = None
    if dense_query is not None and isinstance(point.vector, dict) and DENSE in point.vector:
        dense_score = float(np.dot(np.asarray(point.vector[DENSE], dtype=np.float32), dense_query))
    return Hit(chunk=chunk_from_payload(point.payload or {}), score=float(point.score), dense_score=dense_score)


def _batched(items: Sequence[Any], size: int) -> Iterator[Sequence[Any]]:
    for start in range(0, len(items), size):
        yield items[start : start + size]
