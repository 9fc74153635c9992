"""Qdrant Edge (`qdrant-edge-py`, Qdrant's own Rust engine in process) behind the qdrant-client calls the store
makes, so rag/search/store.py stays one store front over three engines: a server, qdrant-client's local mode, and Edge.

Why an adapter and not a second store: the store's rules (the article record written last as a commit marker,
DBSF weights as repeated prefetches, the collection fingerprint) must be the same on every engine. Edge has its
own API (one shard per collection, no collection metadata, explicit flush and optimize), so this module speaks
the small subset of qdrant-client's API the store uses and translates it; nothing else imports qdrant_edge
but the optimiser it starts as a child process (rag/search/edge_optimize.py).

Layout under the store folder (`RAG_QDRANT_PATH`): `edge/NAME/` is the shard of collection NAME (segments and
write-ahead log), `edge/NAME.json` its metadata, written last when a collection is created, so a collection
without it was never completed. After an optimisation beside the serving shard, the shard is `edge/NAME@HEX/`
and `edge/NAME.shard` names it (written in one rename: before it, the old folder is the shard; after, the new);
a folder of the collection that the pointer does not name is what an interrupted swap left, removed at open.
`edge/.lock` is held for the client's lifetime: Edge itself refuses a second opener of a shard, but only when
the shard is first touched; the folder lock makes a second process fail at start-up with the same message as
local mode.

What was measured of qdrant-edge-py 0.9.0 and shapes this module (docs/scaling.md):
- Every call holds Python's GIL for its whole run; optimize (building HNSW and the sparse index) therefore
  stalls every other Python thread of the process. Optimize runs only when the store is told to, never on the
  query path: in process where no question waits (end of `python -m ingest`, app start-up), and beside the
  serving shard while the app serves (`optimize_beside`: a copy is optimised by a child process, writes made
  meanwhile are replayed onto it, and it replaces the serving shard in one swap).
- An acknowledged update survives `kill -9` (it is in the write-ahead log, replayed at load). Edge never
  flushes on its own, so the log grows and is replayed at every open: writes flush at most every
  FLUSH_INTERVAL_S, and closing flushes.
"""

from __future__ import annotations

import datetime as dt
import fcntl
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

import qdrant_edge as edge

if TYPE_CHECKING:
    from qdrant_client import models

logger = logging.getLogger(__name__)

EDGE_FOLDER = "edge"
LOCK_FILE = ".lock"
METADATA_SUFFIX = ".json"
POINTER_SUFFIX = ".shard"  # names the shard folder once an optimisation beside the serving shard has replaced it
COPY_MARK = "@"  # NAME@HEX: a shard folder made by such an optimisation (collection names cannot hold "@")
OPTIMIZER_MODULE = "rag.search.edge_optimize"
# no vector of its own: Edge needs at least one vector name per shard, so article records get an unused one
NO_VECTOR = "none"
DEFAULT_INDEXING_THRESHOLD_KB = 10_000  # Qdrant's, when a collection sets none
SHARD_CONFIG = "edge_config.json"  # in a shard folder: the configuration Edge wrote at creation
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


class EdgeOptimizeError(RuntimeError):
    """The child process that optimised a copy of a shard failed; the serving shard is unchanged."""


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
        _remove_abandoned_copies(folder)
        self._shards: dict[str, edge.EdgeShard] = {}
        # shard calls take turns (shards are not documented as safe to share between threads); the lock is held
        # for each call only, so an optimisation beside the serving shard leaves reads and writes running
        self._calls = threading.RLock()
        # writes wait only while a shard is copied for an optimisation beside it, and while the copy takes over
        self._writes = threading.Lock()
        self._optimizing = threading.Lock()  # one optimisation beside the serving shards at a time
        # per collection being optimised beside: the writes made since its copy, replayed onto the copy
        self._replay: dict[str, list[Any]] = {}
        self._optimizer: subprocess.Popen[str] | None = None  # the child optimising a copy, stopped at close
        self._closed = False
        self._last_flush: dict[str, float] = {}

    # ---- lifecycle -------------------------------------------------------------------------------

    def close(self) -> None:
        optimizer = self._optimizer
        if optimizer is not None:
            optimizer.kill()  # its copy is removed by optimize_beside, or at the next open
        with self._calls:
            self._closed = True
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
        with self._calls:  # what a creation cut short, or a collection dropped half-way, left behind
            shutil.rmtree(self._shard_path(name), ignore_errors=True)
            self._pointer_path(name).unlink(missing_ok=True)
            shutil.rmtree(self.folder / name, ignore_errors=True)
        dense = {vector: self._dense_params(params) for vector, params in vectors_config.items()}
        sparse = {
            vector: edge.EdgeSparseVectorParams(modifier=edge.Modifier.Idf if params.modifier else None)
            for vector, params in (sparse_vectors_config or {}).items()
        }
        if not dense and not sparse:
            sparse = {NO_VECTOR: edge.EdgeSparseVectorParams()}
        optimizers = edge.EdgeOptimizersConfig(indexing_threshold=self.tuning.indexing_threshold_kb)
        config = edge.EdgeConfig(vectors=dense or None, sparse_vectors=sparse or None, optimizers=optimizers)
        with self._calls:
            self._shards[name] = edge.EdgeShard.create(str(self.folder / name), config)
        _write_json_atomically(self._metadata_path(name), metadata or {})

    def get_collection(self, name: str) -> CollectionInfo:
        metadata = json.loads(self._metadata_path(name).read_text(encoding="utf-8"))
        return CollectionInfo(config=_Config(metadata=metadata))

    def delete_collection(self, name: str) -> None:
        with self._writes, self._calls:
            shard = self._shards.pop(name, None)
            if shard is not None:
                shard.close()
            shard_path = self._shard_path(name)
            self._metadata_path(name).unlink(missing_ok=True)
            self._pointer_path(name).unlink(missing_ok=True)
            shutil.rmtree(shard_path, ignore_errors=True)

    def create_payload_index(self, name: str, field_name: str, field_schema: models.PayloadSchemaType) -> None:
        self._update(name, edge.UpdateOperation.create_field_index(field_name, _SCHEMAS[field_schema]))

    def optimize(self, name: str) -> bool:
        """Build the HNSW and sparse indexes over what was written, in this process (blocks every thread, GIL
        held: see the module docstring); True when something was optimised."""
        with self._using(name) as shard:
            optimized = bool(shard.optimize())
            shard.flush()
        return optimized

    def optimize_beside(self, name: str, optimizer: Sequence[str] | None = None) -> bool:
        """Optimise a copy of the shard in a child process while this process keeps answering and writing, then
        let the copy take over; True when something was optimised. Writes wait while the shard is copied (it
        must not change under the copy) and while the copy takes over; reads wait only for the take-over
        (opening the copy). `optimizer`: the child's command line before the copy's path (tests hold it).
        Raises EdgeOptimizeError when the child fails; the serving shard is then unchanged."""
        with self._optimizing:
            copy = self.folder / f"{name}{COPY_MARK}{uuid.uuid4().hex[:12]}"
            with self._writes:
                with self._using(name) as serving_shard:
                    serving_shard.flush()  # the segments and the log on disk hold every acknowledged write
                    serving = self._shard_path(name)
                shutil.copytree(serving, copy)
                self._replay[name] = []
            try:
                optimized = self._optimize_in_child(copy, list(optimizer or [sys.executable, "-m", OPTIMIZER_MODULE]))
                self._take_over(name, copy, serving_shard)
            except BaseException:
                with self._writes:
                    self._replay.pop(name, None)
                shutil.rmtree(copy, ignore_errors=True)
                raise
        shutil.rmtree(serving, ignore_errors=True)
        return optimized

    def _take_over(self, name: str, copy: Path, serving_shard: edge.EdgeShard) -> None:
        """Replay onto the optimised copy what was written meanwhile, then serve it instead of `serving_shard`.
        Raises EdgeOptimizeError, nothing changed, if the store was closed or the collection dropped or
        recreated meanwhile."""
        with self._writes:
            optimized_shard = edge.EdgeShard.load(str(copy))
            try:
                for operation in self._replay.pop(name):
                    optimized_shard.update(operation)
                optimized_shard.flush()
                with self._calls:
                    if self._closed or self._shards.get(name) is not serving_shard:
                        raise EdgeOptimizeError(f"{name} was closed or replaced while a copy was being optimised")
                    _write_text_atomically(self._pointer_path(name), copy.name)  # the swap, on disk
                    self._shards[name] = optimized_shard
            except BaseException:
                optimized_shard.close()
                raise
        try:  # no call can reach it any more: each takes its shard under self._calls
            serving_shard.close()
        except Exception:  # the copy serves already; the old folder is removed all the same
            logger.warning("closing the replaced shard of %s failed", name, exc_info=True)

    def _optimize_in_child(self, shard: Path, command: list[str]) -> bool:
        """Run the optimiser (rag/search/edge_optimize.py) on `shard` in a process of its own, so that this
        process's GIL stays free. Its last line of output says whether something was optimised."""
        with subprocess.Popen(
            [*command, str(shard)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        ) as child:
            self._optimizer = child
            try:
                output, errors = child.communicate()
            finally:
                self._optimizer = None
        if child.returncode != 0:
            detail = (errors or output).strip().splitlines()[-3:]
            raise EdgeOptimizeError(
                f"optimising a copy of {shard.name} failed (exit {child.returncode}): {' | '.join(detail)}"
            )
        lines = output.strip().splitlines()
        return bool(lines) and lines[-1].strip() == "optimized"

    def points_worth_indexing(self, name: str) -> int:
        """Unindexed points from which optimising builds an index: Edge indexes a segment once its dense vectors
        pass the collection's indexing threshold (kilobytes of float32 vectors); a smaller one stays
        brute-force."""
        try:
            config = json.loads((self._shard_path(name) / SHARD_CONFIG).read_text(encoding="utf-8"))
            threshold_kb = config["optimizers"].get("indexing_threshold") or DEFAULT_INDEXING_THRESHOLD_KB
            dimension = max(int(vector["size"]) for vector in config["vectors"].values())
        except (OSError, ValueError, KeyError, TypeError):  # a shard format this module does not know
            threshold_kb, dimension = DEFAULT_INDEXING_THRESHOLD_KB, 384
        return max(1, math.ceil(threshold_kb * 1024 / (4 * dimension)))

    def unindexed_vectors(self, name: str, vectors_per_point: int) -> int:
        """Vectors without their index yet: Edge counts each of a point's vectors apart, and a sparse vector is
        indexed as it is written, so for points with one dense and one sparse vector this is the number whose
        dense vector waits for HNSW (searched by brute force meanwhile)."""
        with self._using(name) as shard:
            info = shard.info()
        return max(0, vectors_per_point * info.points_count - info.indexed_vectors_count)

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
        with self._writes, self._using(name) as shard:
            shard.update(operation)
            if name in self._replay:
                self._replay[name].append(operation)
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
        with self._using(name) as shard:
            records = shard.retrieve(
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
        with self._using(name) as shard:
            records, next_offset = shard.scroll(request)
        return [_point(record) for record in records], str(next_offset) if next_offset is not None else None

    def facet(self, name: str, key: str, limit: int = 10, exact: bool = False) -> FacetResult:
        with self._using(name) as shard:
            response = shard.facet(edge.FacetRequest(key=key, limit=limit, exact=exact))
        return FacetResult(hits=[FacetHit(value=hit.value, count=int(hit.count)) for hit in response.hits])

    def count(self, name: str, exact: bool = True) -> CountResult:
        with self._using(name) as shard:
            return CountResult(count=int(shard.count(edge.CountRequest(exact=exact))))

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
        with self._using(name) as shard:
            scored_points = shard.query(request)
        return QueryResult(points=[_point(scored) for scored in scored_points])

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

    @contextmanager
    def _using(self, name: str) -> Iterator[edge.EdgeShard]:
        """The collection's shard (opened on first use), for one call; no other call runs meanwhile."""
        with self._calls:
            shard = self._shards.get(name)
            if shard is None:
                if not self.collection_exists(name):  # as qdrant-client's local mode says it
                    raise ValueError(f"Collection {name} not found")
                shard = edge.EdgeShard.load(str(self._shard_path(name)))
                self._shards[name] = shard
            yield shard

    def _shard_path(self, name: str) -> Path:
        return shard_folder(self.folder, name)

    def _pointer_path(self, name: str) -> Path:
        return self.folder / (name + POINTER_SUFFIX)

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


def shard_folder(folder: Path, name: str) -> Path:
    """The folder of collection `name`'s shard under the Edge folder `folder` (see the module docstring)."""
    pointer = folder / (name + POINTER_SUFFIX)
    try:
        return folder / pointer.read_text(encoding="utf-8").strip()
    except FileNotFoundError:
        return folder / name


def _remove_abandoned_copies(folder: Path) -> None:
    """Shard folders no collection names: a copy whose optimisation was cut short, or the folder a copy replaced
    when the process died before removing it."""
    for candidate in folder.iterdir():
        name = candidate.name.split(COPY_MARK, 1)[0]
        made_by_a_swap = COPY_MARK in candidate.name or (folder / (name + POINTER_SUFFIX)).is_file()
        if made_by_a_swap and candidate.is_dir() and shard_folder(folder, name) != candidate:
            shutil.rmtree(candidate, ignore_errors=True)


def _hold_folder_lock(path: Path) -> IO[str]:
    handle = path.open("a", encoding="utf-8")
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as exc:
        handle.close()
        raise EdgeFolderLockedError(f"{path.parent} is held by another process") from exc
    return handle


def _write_json_atomically(path: Path, value: Any) -> None:
    _write_text_atomically(path, json.dumps(value, ensure_ascii=False))


def _write_text_atomically(path: Path, text: str) -> None:
    temporary = path.with_name(f".{path.name}.{uuid.uuid4().hex}")
    temporary.write_text(text, encoding="utf-8")
    os.replace(temporary, path)
