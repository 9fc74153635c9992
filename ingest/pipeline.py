"""load → clean → chunk → embed → upsert, keeping the store in sync with the inputs.

Idempotent and resumable by construction:
- an article's content hash (text, metadata and the collection fingerprint) is stored in its record;
  an unchanged article is skipped without embedding anything;
- chunks are embedded across articles in large groups (sentence-transformers sorts each group by length,
  docs/architecture.md, trap 2), then written article by article, the article record last (see store.replace_article).

Bounded: a document longer than RAG_INGEST_MAX_DOCUMENT_CHARS, or cut into more than
RAG_INGEST_MAX_CHUNKS_PER_DOCUMENT chunks, is reported as failed. The store and the models are safe to share
with questions asked meanwhile (the running app answers during an upload): nothing here holds a lock across
an ingest, so a question never waits for one.

Ids starting with UPLOAD_ID_PREFIX belong to files sent to the app (api/uploads.py): only that path writes
them, and it writes no other id, so an upload can never replace or delete an article of the operator's corpus.

Two ways to spread the work (`python -m ingest --shard I/N --workers K`):
- a shard (ingest/sharding.py) keeps only its share of the articles, so N runs fill one collection;
- workers: the per-article work before embedding (reading single-document files, chunking, keyword analysis)
  runs in K processes while this one embeds and writes. Results come back in input order, so a run with
  workers stores and reports exactly what a run without them does.
"""

from __future__ import annotations

import hashlib
import json
import logging
import multiprocessing
import os
import time
from collections import deque
from collections.abc import Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ingest.chunking import CHUNKER_VERSION, ChunkingPlan, chunk_article, embedding_text
from ingest.loaders import (
    DEFAULT_MAX_DOCUMENT_CHARS,
    MULTI_DOCUMENT_SUFFIXES,
    CsvColumns,
    LoadFailure,
    discover_files,
    load_file,
    too_long_reason,
)
from ingest.sharding import WHOLE, Shard
from rag.config import IngestSettings
from rag.embed.base import Embedder, Matrix, PortableTokenCounting, TokenCounter
from rag.errors import DiskFullError, InputError, RagError
from rag.search.sparse import SOUND_KEYS_VERSION, SparseEncoder, SparseVector
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Article, Chunk, without_surrogates

logger = logging.getLogger(__name__)

EMBED_GROUP_CHUNKS = 256  # chunks gathered across articles before embedding: enough to sort by length well
ARTICLES_PER_TASK = 16  # articles of a JSONL/CSV file sent to a worker at once: fewer, larger messages
TASKS_IN_FLIGHT_PER_WORKER = 4  # enough queued to keep workers busy; bounded, so memory is too
UPLOAD_ID_PREFIX = "upload:"


@dataclass
class IngestReport:
    added: int = 0
    updated: int = 0
    unchanged: int = 0
    deleted: int = 0
    chunks: int = 0
    failed: list[LoadFailure] = field(default_factory=list)
    seconds: float = 0.0
    embedding_seconds: float = 0.0
    stopped: str | None = None  # why the run ended early (a full disk); the rest of its inputs were not read

    def to_json(self) -> dict[str, Any]:
        return {
            "added": self.added,
            "updated": self.updated,
            "unchanged": self.unchanged,
            "deleted": self.deleted,
            "chunks": self.chunks,
            "failed": [
                {"path": without_surrogates(f.path), "reason": without_surrogates(f.reason)} for f in self.failed
            ],
            "stopped": self.stopped,
            "seconds": round(self.seconds, 3),
            "embedding_seconds": round(self.embedding_seconds, 3),
        }

    @property
    def documents(self) -> int:
        return self.added + self.updated + self.unchanged

    def add(self, other: IngestReport) -> None:
        """Fold in the report of a later part of the same run."""
        self.added += other.added
        self.updated += other.updated
        self.unchanged += other.unchanged
        self.deleted += other.deleted
        self.chunks += other.chunks
        self.failed.extend(other.failed)
        self.stopped = self.stopped or other.stopped
        self.seconds += other.seconds
        self.embedding_seconds += other.embedding_seconds


@dataclass(frozen=True)
class Analysis:
    """The work on one article before embedding: its content hash and, unless it is unchanged or unusable, its
    chunks and their keyword vectors."""

    article: Article
    content_hash: str = ""
    chunks: list[Chunk] = field(default_factory=list)
    sparse: list[SparseVector] = field(default_factory=list)
    unchanged: bool = False
    failure: str | None = None


@dataclass(frozen=True)
class _OtherShards:
    """Articles read that belong to other shards (counted for the progress bar only)."""

    count: int


_Result = Analysis | LoadFailure | _OtherShards
_Task = Path | list[Article]  # a single-document file to load, or articles already loaded


@dataclass
class ArticleWork:
    """Everything the per-article work needs; picklable, so worker processes get a copy."""

    fingerprint: str
    plan: ChunkingPlan
    count_tokens: TokenCounter
    known_hashes: Mapping[str, str]
    shard: Shard = WHOLE
    csv_columns: CsvColumns | None = None
    max_document_chars: int = DEFAULT_MAX_DOCUMENT_CHARS
    max_chunks_per_document: int = IngestSettings.model_fields["max_chunks_per_document"].default
    sparse: SparseEncoder | None = None  # made where the work runs: kiwi does not cross processes

    def run(self, task: _Task) -> list[_Result]:
        if isinstance(task, Path):
            loaded = load_file(task, self.csv_columns, max_document_chars=self.max_document_chars)
            return [self._loaded(item) for item in loaded]
        return [self.analyse(article) for article in task]

    def _loaded(self, item: Article | LoadFailure) -> _Result:
        if isinstance(item, LoadFailure):
            return item
        return self.analyse(item) if self.shard.holds(item.id) else _OtherShards(1)

    def analyse(self, article: Article) -> Analysis:
        try:
            return self._analyse(article)
        except Exception as exc:  # one odd article (a bug of ours included) must not end the run
            logger.warning("could not process %s", article.origin or article.id, exc_info=True)
            return Analysis(article, failure=_unexpected(exc))

    def _analyse(self, article: Article) -> Analysis:
        if not any(ch.isalnum() for ch in article.text):
            reason = "the text has no letters or digits (only symbols, punctuation or emoji); nothing to search"
            return Analysis(article, failure=reason)
        if len(article.text) > self.max_document_chars:  # loaders check it too; articles handed in directly
            return Analysis(article, failure=too_long_reason(len(article.text), self.max_document_chars))
        digest = content_hash(article, self.fingerprint)
        if self.known_hashes.get(article.id) == digest:
            return Analysis(article, digest, unchanged=True)
        chunks = chunk_article(article, self.count_tokens, self.plan)
        if not chunks:
            return Analysis(article, digest, failure="no text left after cleaning")
        if len(chunks) > self.max_chunks_per_document:
            return Analysis(article, digest, failure=_too_many_chunks(len(chunks), self.max_chunks_per_document))
        if self.sparse is None:
            self.sparse = SparseEncoder()
        sparse = self.sparse.encode_article([embedding_text(chunk) for chunk in chunks])
        return Analysis(article, digest, chunks, sparse)

    def __getstate__(self) -> dict[str, Any]:
        return {**self.__dict__, "sparse": None}


@dataclass
class _Pending:
    article: Article
    content_hash: str
    chunks: list[Chunk]
    sparse: list[SparseVector]
    is_update: bool


class Ingestor:
    """Writes articles into one collection; built by the service, used by the CLI, the app and eval."""

    def __init__(
        self,
        store: QdrantStore,
        embedder: Embedder,
        sparse: SparseEncoder,
        plan: ChunkingPlan,
        fingerprint: str,
        *,
        limits: IngestSettings | None = None,
    ) -> None:
        self.store, self.embedder, self.sparse, self.plan = store, embedder, sparse, plan
        self.fingerprint = fingerprint
        self.limits = limits or IngestSettings()

    def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        sync: bool = False,
        csv_columns: CsvColumns | None = None,
        progress: Any = None,
        shard: Shard = WHOLE,
        workers: int = 1,
        sync_empty_folders: bool = False,
    ) -> IngestReport:
        """Ingest files and folders; with `sync`, delete stored articles from these inputs that vanished. With a
        `shard`, only that share of the articles (and of the deletions); with `workers` > 1, the work before
        embedding runs in that many processes.

        Raises InputError, before anything is written, when `sync` is asked for and a path is missing or
        cannot be read, or is a folder without files that stored articles came from (unless
        `sync_empty_folders`): its articles would all look vanished."""
        if sync:
            _check_sync_roots(paths)
        started = time.perf_counter()
        report = IngestReport()
        known = self._known(shard)
        if sync and not sync_empty_folders:
            _check_no_empty_sync_root(paths, known)
        problems: list[LoadFailure] = []
        work = self._work(known, shard, csv_columns)
        tasks = _file_tasks(paths, csv_columns, shard, self.limits.max_document_chars)
        results = _results(tasks, work, workers)
        seen = self._ingest_stream(results, known, report, progress, shard, problems, uploads=False)
        if sync and report.stopped is None:
            # a file that failed (to load, in any shard's share, or to be stored) keeps its stored articles
            failed = [Path(_file_of(failure.path)).absolute() for failure in [*problems, *report.failed]]
            report.deleted = self._delete_vanished(paths, known, seen, failed)
        report.seconds = time.perf_counter() - started
        return report

    def ingest_articles(self, articles: Iterable[Article], progress: Any = None) -> IngestReport:
        """Ingest already-loaded articles (evaluation corpora)."""
        return self.ingest_items(articles, progress=progress)

    def ingest_items(
        self, items: Iterable[Article | LoadFailure], *, progress: Any = None, uploads: bool = False
    ) -> IngestReport:
        """Ingest a stream of loaded articles and load failures. `uploads`: the stream comes from files sent
        to the app, every id must start with UPLOAD_ID_PREFIX (api/uploads.py makes them so); otherwise no
        id may."""
        started = time.perf_counter()
        report = IngestReport()
        known = self._known(WHOLE)
        tasks = (_Ready([item]) if isinstance(item, LoadFailure) else [item] for item in items)
        results = _results(tasks, self._work(known, WHOLE, None), 1)
        self._ingest_stream(results, known, report, progress, WHOLE, [], uploads=uploads)
        report.seconds = time.perf_counter() - started
        return report

    def _known(self, shard: Shard) -> dict[str, Any]:
        stored_articles = list(self.store.iter_articles())
        return {stored.article.id: stored for stored in stored_articles if shard.holds(stored.article.id)}

    def _work(self, known: Mapping[str, Any], shard: Shard, csv_columns: CsvColumns | None) -> ArticleWork:
        return ArticleWork(
            fingerprint=self.fingerprint,
            plan=self.plan,
            count_tokens=self.embedder.count_tokens,
            known_hashes={article_id: stored.content_hash for article_id, stored in known.items()},
            shard=shard,
            csv_columns=csv_columns,
            max_document_chars=self.limits.max_document_chars,
            max_chunks_per_document=self.limits.max_chunks_per_document,
            sparse=self.sparse,
        )

    def _ingest_stream(
        self,
        results: Iterable[_Result],
        known: dict[str, Any],
        report: IngestReport,
        progress: Any,
        shard: Shard,
        problems: list[LoadFailure],
        *,
        uploads: bool,
    ) -> set[str]:
        seen: set[str] = set()
        pending: list[_Pending] = []
        try:
            for result in results:
                if progress is not None:
                    progress.update(result.count if isinstance(result, _OtherShards) else 1)
                if isinstance(result, _OtherShards):
                    continue
                if isinstance(result, LoadFailure):
                    problems.append(result)
                    if shard.holds(result.path):
                        report.failed.append(result)
                    continue
                entry = self._plan_article(result, known, seen, report, uploads=uploads)
                if entry is None:
                    continue
                pending.append(entry)
                if sum(len(p.chunks) for p in pending) >= EMBED_GROUP_CHUNKS:
                    self._flush(pending, report)
                    pending = []
            self._flush(pending, report)
        except DiskFullError as exc:
            # every later write would fail the same way: stop, and say what was written before
            report.stopped = exc.message
        return seen

    def _plan_article(
        self, analysis: Analysis, known: dict[str, Any], seen: set[str], report: IngestReport, *, uploads: bool
    ) -> _Pending | None:
        article = analysis.article
        where = article.origin or article.id
        if article.id.startswith(UPLOAD_ID_PREFIX) != uploads:
            report.failed.append(LoadFailure(where, _namespace_reason(article.id, uploads)))
            return None
        if article.id in seen:
            report.failed.append(
                LoadFailure(path=where, reason=f"duplicate article id '{article.id}' in this run; kept the first")
            )
            return None
        seen.add(article.id)
        if analysis.failure is not None:
            report.failed.append(LoadFailure(path=where, reason=analysis.failure))
            return None
        if analysis.unchanged:
            report.unchanged += 1
            return None
        return _Pending(
            _with_absolute_origin(article),
            analysis.content_hash,
            analysis.chunks,
            analysis.sparse,
            is_update=article.id in known,
        )

    def content_hash(self, article: Article) -> str:
        return content_hash(article, self.fingerprint)

    def _flush(self, pending: list[_Pending], report: IngestReport) -> None:
        """Embed the group's chunks together, then store article by article. DiskFullError ends the run."""
        if not pending:
            return
        try:
            dense, sparse = self._vectors(pending, report)
        except Exception as exc:
            if len(pending) > 1:
                # something in the group broke embedding: retry article by article so only that one fails
                for entry in pending:
                    self._flush([entry], report)
                return
            entry = pending[0]
            logger.warning("could not embed %s", entry.article.origin or entry.article.id, exc_info=True)
            report.failed.append(LoadFailure(entry.article.origin or entry.article.id, _unexpected(exc)))
            return
        offset = 0
        for entry in pending:
            count = len(entry.chunks)
            try:
                self.store.replace_article(
                    entry.article,
                    entry.content_hash,
                    entry.chunks,
                    dense[offset : offset + count],
                    sparse[offset : offset + count],
                )
            except DiskFullError as exc:
                report.failed.append(LoadFailure(path=entry.article.origin or entry.article.id, reason=exc.message))
                raise
            except RagError as exc:
                report.failed.append(LoadFailure(path=entry.article.origin or entry.article.id, reason=exc.message))
                offset += count
                continue
            offset += count
            report.chunks += count
            if entry.is_update:
                report.updated += 1
            else:
                report.added += 1

    def _vectors(self, pending: list[_Pending], report: IngestReport) -> tuple[Matrix, list[SparseVector]]:
        texts = [embedding_text(chunk) for entry in pending for chunk in entry.chunks]
        started = time.perf_counter()
        dense = self.embedder.embed_documents(texts)
        report.embedding_seconds += time.perf_counter() - started
        return dense, [vector for entry in pending for vector in entry.sparse]

    def _delete_vanished(
        self, paths: Sequence[Path], known: dict[str, Any], seen: set[str], failed: Sequence[Path]
    ) -> int:
        """Delete stored articles whose file under `paths` is gone. An article under any path that failed to
        load (a file, or a folder that could not be read) is kept: it did not vanish, it could not be seen."""
        roots = [_resolved(Path(p)) for p in paths]
        unseen = [_resolved(path) for path in failed]
        deleted = 0
        for article_id, stored in known.items():
            origin = stored.article.origin
            if article_id in seen or origin is None or article_id.startswith(UPLOAD_ID_PREFIX):
                continue
            file = _resolved(Path(origin))
            if any(file.is_relative_to(root) for root in roots) and not any(file.is_relative_to(p) for p in unseen):
                self.store.delete_article(article_id)
                deleted += 1
        return deleted


def _check_sync_roots(paths: Sequence[Path]) -> None:
    """--sync deletes what it no longer sees under its paths: a path that is missing or unreadable (an unmounted
    share, a typo) would make all of its articles look deleted."""
    for path in paths:
        path = Path(path)
        if not path.exists():
            raise InputError(f"--sync: {path} does not exist; nothing was deleted. Check the path, or leave out --sync")
        try:
            if path.is_dir():
                with os.scandir(path) as entries:
                    next(entries, None)
            else:
                with path.open("rb"):
                    pass
        except OSError as exc:
            raise InputError(
                f"--sync: {path} cannot be read ({exc.strerror or exc}); nothing was deleted. "
                "Fix its permissions, or leave out --sync"
            ) from exc


def _check_no_empty_sync_root(paths: Sequence[Path], known: Mapping[str, Any]) -> None:
    """An unmounted share is usually an empty folder, not a missing one: --sync would take every article that
    came from it for deleted. A folder with no file at all, while stored articles came from it, stops the run."""
    for path in paths:
        path = Path(path)
        if not path.is_dir() or any(entry.is_file() for entry in path.rglob("*")):
            continue
        root = _resolved(path)
        stored = sum(
            1
            for stored in known.values()
            if stored.article.origin is not None and _resolved(Path(stored.article.origin)).is_relative_to(root)
        )
        if stored:
            raise InputError(
                f"--sync: {path} holds no files, but {stored} stored article(s) came from it (an unmounted share?); "
                "nothing was deleted. Mount or fill it, or add --sync-empty-folders to delete those articles"
            )


def _namespace_reason(article_id: str, uploads: bool) -> str:
    if uploads:  # api/uploads.py makes every id; this would be a bug of ours
        return f"id '{article_id}' is outside the namespace of uploaded files"
    return (
        f"id '{article_id}' starts with '{UPLOAD_ID_PREFIX}', which is kept for files sent to POST /v1/ingest; "
        "give this document another id"
    )


def _too_many_chunks(count: int, limit: int) -> str:
    return (
        f"is cut into {count:,} chunks, over the limit of {limit:,}; split it into smaller documents, or raise "
        "RAG_INGEST_MAX_CHUNKS_PER_DOCUMENT"
    )


def content_hash(article: Article, fingerprint: str) -> str:
    material = json.dumps(
        [fingerprint, article.model_dump(mode="json", exclude={"origin"})], ensure_ascii=False, sort_keys=True
    )
    return hashlib.sha256(material.encode("utf-8")).hexdigest()


# ---- the work before embedding, in order, here or in worker processes --------------------------------------


@dataclass(frozen=True)
class _Ready:
    """Results known without any work (problems found while reading), kept in their place in the order."""

    results: list[_Result]


_Item = _Task | _Ready


def _file_tasks(
    paths: Sequence[Path], csv_columns: CsvColumns | None, shard: Shard, max_document_chars: int
) -> Iterator[_Item]:
    """In input order: problems found while listing, single-document files (loaded where the work runs), and
    the articles of JSONL/CSV files in small groups (read here: one file cannot be split between workers)."""
    files, problems = discover_files(paths)
    if problems:
        yield _Ready(list(problems))
    for file in files:
        if file.suffix.lower() not in MULTI_DOCUMENT_SUFFIXES:
            yield file
            continue
        group: list[Article] = []
        elsewhere = 0
        for item in load_file(file, csv_columns, max_document_chars=max_document_chars):
            if isinstance(item, LoadFailure):
                if group:
                    yield group
                    group = []
                yield _Ready([item])
            elif shard.holds(item.id):
                group.append(item)
                if len(group) >= ARTICLES_PER_TASK:
                    yield group
                    group = []
            else:
                elsewhere += 1
        if group:
            yield group
        if elsewhere:
            yield _Ready([_OtherShards(elsewhere)])


def _results(items: Iterable[_Item], work: ArticleWork, workers: int) -> Iterator[_Result]:
    """Every item's results, in item order; with `workers` > 1 the tasks run in that many processes, at most
    TASKS_IN_FLIGHT_PER_WORKER each queued ahead."""
    if workers > 1:
        counter = _portable(work.count_tokens)
        if counter is None:
            logger.warning("the embedding model cannot count tokens in other processes; ingesting with one process")
        else:
            yield from _results_in_processes(items, replace(work, count_tokens=counter, sparse=None), workers)
            return
    for item in items:
        yield from _run_here(item, work)


def _run_here(item: _Item, work: ArticleWork) -> list[_Result]:
    return item.results if isinstance(item, _Ready) else work.run(item)


def _results_in_processes(items: Iterable[_Item], work: ArticleWork, workers: int) -> Iterator[_Result]:
    # spawn, not fork: a forked copy of this process would inherit kiwi's and the embedding model's threads
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_start_worker,
        initargs=(work,),
    )
    window: deque[tuple[_Item, Future[list[_Result]] | None]] = deque()
    broken = False
    try:
        for item in items:
            submitted = None if isinstance(item, _Ready) or broken else pool.submit(_run_in_worker, item)
            window.append((item, submitted))
            while len(window) > workers * TASKS_IN_FLIGHT_PER_WORKER:
                results, broken = _collect(*window.popleft(), work, broken)
                yield from results
        while window:
            results, broken = _collect(*window.popleft(), work, broken)
            yield from results
    finally:
        pool.shutdown(wait=True, cancel_futures=True)


def _collect(
    item: _Item, submitted: Future[list[_Result]] | None, work: ArticleWork, broken: bool
) -> tuple[list[_Result], bool]:
    if submitted is None:
        return _run_here(item, work), broken
    try:
        return submitted.result(), broken
    except BrokenProcessPool:
        # a worker died (out of memory, a crashing parser): the rest runs here, as a run without workers would
        logger.warning("a worker process stopped unexpectedly; going on in this process")
        return _run_here(item, work), True


def _portable(count_tokens: TokenCounter) -> TokenCounter | None:
    """The embedder's token counter in a form worker processes can receive, if it has one."""
    owner = getattr(count_tokens, "__self__", None)
    return owner.token_counter() if isinstance(owner, PortableTokenCounting) else None


_WORKER_WORK: ArticleWork | None = None


def _start_worker(work: ArticleWork) -> None:
    global _WORKER_WORK
    _WORKER_WORK = work


def _run_in_worker(task: _Task) -> list[_Result]:
    assert _WORKER_WORK is not None, "worker started without its work"
    return _WORKER_WORK.run(task)


def _with_absolute_origin(article: Article) -> Article:
    """The origin (the file an article came from) as an absolute path, so `--sync` from another working
    folder compares the same files (a relative "docs/a.txt" stored from one folder once made a sync from
    another delete it)."""
    if not article.origin:
        return article
    return article.model_copy(update={"origin": str(Path(article.origin).absolute())})


def _unexpected(exc: BaseException | None) -> str:
    return f"could not be processed ({type(exc).__name__}: {exc}); the rest of the run went on, please report this file"


def _file_of(failure_path: str) -> str:
    """`dir/file.jsonl:17` (a bad line) → `dir/file.jsonl`; a plain path stays as it is."""
    head, _, tail = failure_path.rpartition(":")
    return head if head and tail.isdigit() else failure_path


def _resolved(path: Path) -> Path:
    try:
        return path.resolve()
    except OSError:  # a symlink loop
        return path.absolute()


def build_ingestor(service: RagService) -> Ingestor:
    """An Ingestor writing into the service's collection (created on first use)."""
    service.open_for_writing()
    settings = service.settings
    plan = ChunkingPlan(max_tokens=settings.chunking.max_tokens, overlap_sentences=settings.chunking.overlap_sentences)
    fingerprint = content_fingerprint(service)
    return Ingestor(service.store, service.embedder, service.sparse, plan, fingerprint, limits=settings.ingest)


def content_fingerprint(service: RagService) -> str:
    """Everything that shapes an article's stored points: the collection's vector settings, the chunker and
    the keyword terms added since (an article whose points another version made is re-ingested)."""
    return f"{service.collection_spec().fingerprint}|{CHUNKER_VERSION}|{SOUND_KEYS_VERSION}"
