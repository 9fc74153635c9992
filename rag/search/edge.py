"""Qdrant Edge (`qdrant-edge-py`, Qdrant's own Rust engine in process) behind the qdrant-client calls the store
makes, so rag/search/store.py stays one store front over three engines: a server, qdrant-client's local mode, and Edge.

Why an adapter and not a second store: the store's rules (the article record written last as a commit marker,
DBSF weights as repeated prefetches, the collection fingerprint) must be the same on every engine. Edge has its
own API (one shard per collection, no collection metadata, explicit flush and optimize), so this module speaks
the small subset of qdrant-client's API the store uses and translates it; nothing else imports qdrant_edge.

Layout under the store folder (`RAG_QDRANT_PATH`): `edge/NAME/` is the shard of collection NAME (segments and
write-ahead log), `edge/NAME.json` its metadata, written last when a collection is created, so a collection
without it was never completed. `edge/.lock` is held for the client's lifetime: Edge itself refuses a second
opener of a shard, but only when the shard is first touched; the folder lock makes a second process fail at
start-up with the same message as local mode.

What was measured of qdrant-edge-py 0.9.0 and shapes this module (docs/scaling.md):
- Every call holds Python's GIL for its whole run; optimize (building HNSW and the sparse index) therefore
  stalls every other Python thread of the process. Optimize runs only when the store is told to
  (`QdrantStore.optimize`: at the end of `python -m ingest` and at app start-up), never on the query path.
- An acknowledged update survives `kill -9` (it is in the write-ahead log, replayed at load). Edge never
  flushes on its own, so the log grows and is replayed at every open: writes flush at most every
  FLUSH_INTERVAL_S, and closing flushes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import os
import shutil
import threading
import time
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import qdrant_edge as edge

if TYPE_CHECKING:
    from qdrant_client import models

EDGE_FOLDER = "edge"
LOCK_FILE = ".lock"
METADATA_SUFFIX = ".json"
# no vector of its own: Edge needs at least one vector name per shard, so article records get an unused one
NO_VECTOR = "none"
FLUSH_INTERVAL_S = 5.0  # Qdrant server's own default flush interval

# keyed by qdrant-client's enum values (its enums are strings)
_DISTANCES = {"Cosine": edge.Distance.Cosine, "Dot": edge.Distance.Dot}
_SCHEMAS = {
    "keyword": edge.PayloadSchemaType.Keyword,
    "integer": edge.PayloadSchemaType.Integer,
    "datetime": edge.PayloadSchemaType.Datetime,
}


def _models() -> Any:
    # qdrant-client takes about a second to import; `python -m rag config` and --help do without it
    from qdrant_client import models

    return models


class EdgeFolderLockedError(RuntimeError):
    """Another process holds the Edge folder."""


@dataclass(frozen=True)
class EdgeTuning:
    """How new Edge collections store and index dense vectors (see QdrantSettings)."""

    quantization: str = "none"  # "int8": scalar-quantised copies in memory, originals on disk for rescoring
    indexing_threshold_kb: int | None = None  # None: Qdrant's default


@dataclass(frozen=True)
class _Config:
    metadata: dict[str, Any]


@dataclass(frozen=True)
class CollectionInfo:
    """What the store reads of `get_collection`: `info.config.metadata`."""

    config: _Config


@dataclass(frozen=True)
class CountResult:
    count: int


@dataclass(frozen=True)
class FacetHit:
    value: Any
    count: int


@dataclass(frozen=True)
class FacetResult:
    hits: list[FacetHit]


@dataclass(frozen=True)
class Point:
    """A record or scored point: ids as strings, as qdrant-client's local mode returns them."""

    id: str
    payload: dict[str, Any] | None
    vector: dict[str, Any] | None
    score: float = 0.0


@dataclass(frozen=True)
class QueryResult:
    points: list[Point] = field(default_factory=list)


class EdgeClient:
    """The qdrant-client calls rag/search/store.py makes, against Edge shards in `folder`."""

    def __init__(self, folder: Path, tuning: EdgeTuning | None = None) -> None:
        self.folder = folder
        self.tuning = tuning or EdgeTuning()
        folder.mkdir(parents=True, exist_ok=True)
        self._lock_file = _hold_folder_lock(folder / LOCK_FILE)
        self._shards: dict[str, edge.EdgeShard] = {}
        self._shards_lock = threading.Lock()
        self._last_flush: dict[str, float] = {}

    # ---- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        with self._shards_lock:
            shards, self._shards = self._shards, {}
        for shard in shards.values():
            shard.close()  # flushes
        if not self._lock_file.closed:
            self._lock_file.close()  # releases the folder lock

    def collection_exists(self, name: str) -> bool:
        return self._metadata_path(name).is_file()

    def create_collection(
        self,
        name: str,
        vectors_config: dict[str, models.VectorParams],
        sparse_vectors_config: dict[str, models.SparseVectorParams] | None = None,
        metadata: dict[str, Any] | None = None,
        **_cluster: Any,
    ) -> None:
        """A new shard; the metadata file last (a folder without one is a creation cut short, redone here)."""
        shard_path = self._shard_path(name)
        if shard_path.exists():
            shutil.rmtree(shard_path)
        dense = {vector: self._dense_params(params) for vector, params in vectors_config.items()}
        sparse = {
            vector: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf if params.modifier else None)
            for vector, params in (sparse_vectors_config or {}).items()
        }
        if not dense and not sparse:
            sparse = {NO_VECTOR: edge.EdgeSparseVectorParams()}
        optimizers = edge.EdgeOptimizersConfig(indexing_threshold=self.tuning.indexing_threshold_kb)
        config = edge.EdgeConfig(vectors=dense or None, sparse_vectors=sparse or None, optimizers=optimizers)
        shard = edge.EdgeShard.create(str(shard_path), config)
        with self._shards_lock:
            self._shards[name] = shard
        _write_json_atomically(self._metadata_path(name), metadata or {})

    def get_collection(self, name: str) -> CollectionInfo:
        metadata = json.loads(self._metadata_path(name).read_text(encoding="utf-8"))
        return CollectionInfo(config=_Config(metadata=metadata))

    def delete_collection(self, name: str) -> None:
        with self._shards_lock:
            shard = self._shards.pop(name, None)
        if shard is not None:
            shard.close()
        self._metadata_path(name).unlink(missing_ok=True)
        shutil.rmtree(self._shard_path(name), ignore_errors=True)

    def create_payload_index(self, name: str, field_name: str, field_schema: models.PayloadSchemaType) -> None:
        self._update(name, edge.UpdateOperation.create_field_index(field_name, _SCHEMAS[field_schema]))

    def optimize(self, name: str) -> bool:
        """Build the HNSW and sparse indexes over what was written (blocks, GIL held: see the module docstring);
        True when something was optimised."""
        shard = self._shard(name)
        optimized = bool(shard.optimize())
        shard.flush()
        return optimized

    # ---- writes ----------------------------------------------------------------------------------

    def upsert(self, name: str, points: Sequence[models.PointStruct], wait: bool = True) -> None:
        self._update(name, edge.UpdateOperation.upsert_points([_edge_point(point) for point in points]))

    def delete(self, name: str, points_selector: Any) -> None:
        if isinstance(points_selector, _models().FilterSelector):
            selected = _edge_filter(points_selector.filter)
            if selected is None:
                raise TypeError("Edge adapter: a delete by filter needs a filter")
            operation = edge.UpdateOperation.delete_points_by_filter(selected)
        else:
            operation = edge.UpdateOperation.delete_points([str(pid) for pid in points_selector])
        self._update(name, operation)

    def _update(self, name: str, operation: Any) -> None:
        shard = self._shard(name)
        shard.update(operation)
        now = time.monotonic()
        if now - self._last_flush.setdefault(name, now) >= FLUSH_INTERVAL_S:
            # bounds the write-ahead log replayed at the next open; durability against a killed process does
            # not depend on it (the log has every acknowledged write), against a power cut it does
            shard.flush()
            self._last_flush[name] = now

    # ---- reads -----------------------------------------------------------------------------------

    def retrieve(
        self, name: str, ids: Sequence[Any], with_payload: Any = True, with_vectors: Any = False
    ) -> list[Point]:
        records = self._shard(name).retrieve(
            [str(pid) for pid in ids], _edge_with_payload(with_payload), _edge_with_vectors(with_vectors)
        )
        return [_point(record) for record in records]

    def scroll(
        self, name: str, limit: int, offset: Any = None, with_payload: Any = True, with_vectors: Any = False
    ) -> tuple[list[Point], str | None]:
        request = edge.ScrollRequest(
            offset=str(offset) if offset is not None else None,
            limit=limit,
            with_payload=_edge_with_payload(with_payload),
            with_vector=_edge_with_vectors(with_vectors),
        )
        records, next_offset = self._shard(name).scroll(request)
        return [_point(record) for record in records], str(next_offset) if next_offset is not None else None

    def facet(self, name: str, key: str, limit: int = 10, exact: bool = False) -> FacetResult:
        response = self._shard(name).facet(edge.FacetRequest(key=key, limit=limit, exact=exact))
        return FacetResult(hits=[FacetHit(value=hit.value, count=int(hit.count)) for hit in response.hits])

    def count(self, name: str, exact: bool = True) -> CountResult:
        return CountResult(count=int(self._shard(name).count(edge.CountRequest(exact=exact))))

    def query_points(
        self,
        name: str,
        *,
        query: Any,
        prefetch: Sequence[models.Prefetch] | None = None,
        using: str | None = None,
        query_filter: models.Filter | None = None,
        limit: int = 10,
        with_payload: Any = True,
        with_vectors: Any = False,
    ) -> QueryResult:
        request = edge.QueryRequest(
            limit=limit,
            query=_edge_query(query, using),
            prefetches=[self._edge_prefetch(p) for p in prefetch] if prefetch else None,
            filter=_edge_filter(query_filter),
            with_payload=_edge_with_payload(with_payload),
            with_vector=_edge_with_vectors(with_vectors),
            params=self._search_params(query),
        )
        return QueryResult(points=[_point(scored) for scored in self._shard(name).query(request)])

    def _edge_prefetch(self, prefetch: models.Prefetch) -> edge.Prefetch:
        return edge.Prefetch(
            limit=prefetch.limit or 10,
            query=_edge_query(prefetch.query, prefetch.using),
            filter=_edge_filter(prefetch.filter),
            params=self._search_params(prefetch.query),
        )

    def _search_params(self, query: Any) -> edge.SearchParams | None:
        """With int8 vectors, dense candidates are found on the quantised copies (twice as many as asked for)
        and rescored on the originals, so the scores are exact cosines."""
        if self.tuning.quantization != "int8" or not isinstance(query, list):
            return None
        return edge.SearchParams(quantization=edge.QuantizationSearchParams(rescore=True, oversampling=2.0))

    # ---- shards ----------------------------------------------------------------------------------

    def _shard(self, name: str) -> edge.EdgeShard:
        with self._shards_lock:
            shard = self._shards.get(name)
            if shard is None:
                shard = edge.EdgeShard.load(str(self._shard_path(name)))
                self._shards[name] = shard
            return shard

    def _shard_path(self, name: str) -> Path:
        return self.folder / name

    def _metadata_path(self, name: str) -> Path:
        return self.folder / (name + METADATA_SUFFIX)

    def _dense_params(self, params: models.VectorParams) -> edge.EdgeVectorParams:
        if self.tuning.quantization == "int8":
            # the int8 copies (a quarter of the size) stay in memory and are searched; the originals stay on disk
            # and rescore the best candidates, so scores are the exact cosine
            return edge.EdgeVectorParams(
                size=params.size,
                distance=_DISTANCES[params.distance],
                memory=edge.Memory.Cold,
                quantization_config=edge.ScalarQuantizationConfig(
                    type=edge.ScalarType.Int8, quantile=0.99, memory=edge.Memory.Pinned
                ),
            )
        return edge.EdgeVectorParams(size=params.size, distance=_DISTANCES[params.distance])


# ---- translation -------------------------------------------------------------------------------------


def _edge_point(point: models.PointStruct) -> edge.Point:
    m = _models()
    vectors = point.vector if isinstance(point.vector, dict) else {}
    converted: dict[str, Any] = {}
    for vector_name, value in vectors.items():
        if isinstance(value, m.SparseVector):
            converted[vector_name] = edge.SparseVector(list(value.indices), list(value.values))
        else:
            converted[vector_name] = value
    return edge.Point(str(point.id), converted, point.payload)


def _edge_query(query: Any, using: str | None) -> Any:
    m = _models()
    if isinstance(query, m.FusionQuery):
        return edge.Fusion.Dbsf() if query.fusion == m.Fusion.DBSF else edge.Fusion.Rrf(k=60)
    if isinstance(query, m.RrfQuery):
        return edge.Fusion.Rrf(k=query.rrf.k or 60, weights=query.rrf.weights)
    if isinstance(query, m.SparseVector):
        return edge.Query.Nearest(edge.SparseVector(list(query.indices), list(query.values)), using=using)
    return edge.Query.Nearest(list(query), using=using)


def _edge_filter(query_filter: models.Filter | None) -> edge.Filter | None:
    if query_filter is None:
        return None
    return edge.Filter(must=[_edge_condition(condition) for condition in _as_list(query_filter.must)])


def _edge_condition(condition: Any) -> Any:
    m = _models()
    if not isinstance(condition, m.FieldCondition):
        raise TypeError(f"Edge adapter: unsupported filter condition {type(condition).__name__}")
    if condition.match is not None:
        if not isinstance(condition.match, m.MatchValue):
            raise TypeError(f"Edge adapter: unsupported match {type(condition.match).__name__}")
        return edge.FieldCondition(key=condition.key, match=edge.MatchValue(condition.match.value))
    bounds = condition.range
    if isinstance(bounds, m.DatetimeRange):
        return edge.FieldCondition(
            key=condition.key,
            range=edge.RangeDateTime(
                gte=_iso(bounds.gte), gt=_iso(bounds.gt), lte=_iso(bounds.lte), lt=_iso(bounds.lt)
            ),
        )
    if isinstance(bounds, m.Range):
        return edge.FieldCondition(
            key=condition.key, range=edge.RangeFloat(gte=bounds.gte, gt=bounds.gt, lte=bounds.lte, lt=bounds.lt)
        )
    raise TypeError(f"Edge adapter: unsupported condition on {condition.key}")


def _iso(moment: dt.datetime | dt.date | None) -> str | None:
    if moment is None:
        return None
    if isinstance(moment, dt.datetime):
        return moment.isoformat()
    return dt.datetime.combine(moment, dt.time(0, 0), tzinfo=dt.UTC).isoformat()


def _edge_with_payload(selector: Any) -> Any:
    m = _models()
    if isinstance(selector, m.PayloadSelectorExclude):
        return edge.PayloadSelector.Exclude(list(selector.exclude))
    if isinstance(selector, m.PayloadSelectorInclude):
        return edge.PayloadSelector.Include(list(selector.include))
    return selector


def _edge_with_vectors(selector: Any) -> Any:
    return list(selector) if isinstance(selector, list | tuple) else bool(selector)


def _point(record: Any) -> Point:
    return Point(
        id=str(record.id),
        payload=record.payload,
        vector=record.vector if isinstance(record.vector, dict) else None,
        score=float(getattr(record, "score", 0.0)),
    )


def _as_list(conditions: Any) -> list[Any]:
    if conditions is None:
        return []
    return list(conditions) if isinstance(conditions, Iterable) else [conditions]


def _hold_folder_lock(path: Path) -> IO[str]:
    handle = path.open("a", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise EdgeFolderLockedError(f"{path.parent} is held by another process") from exc
    return handle


def _write_json_atomically(path: Path, value: Any) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(json.dumps(value, ensure_ascii=False), encoding="utf-8")
    os.replace(temporary, path)
