"""load → clean → chunk → embed → upsert, keeping the store in sync with the inputs.

Idempotent and resumable by construction:
- an article's content hash (text, metadata and the collection fingerprint) is stored in its record;
  an unchanged article is skipped without embedding anything;
- chunks are embedded across articles in large groups (sentence-transformers sorts each group by length,
  FINDINGS.md #2), then written article by article, the article record last (see store.replace_article).

Bounded: a document longer than RAG_INGEST_MAX_DOCUMENT_CHARS, or cut into more than
RAG_INGEST_MAX_CHUNKS_PER_DOCUMENT chunks, is reported as failed. Every use of the store and of the model runs
inside a `turn` (the app's lock; nothing for the command line), one embedding slice or one article at a time,
so a question asked during a long ingest waits for one turn, not for the ingest.

Ids starting with UPLOAD_ID_PREFIX belong to files sent to the app (api/uploads.py): only that path writes
them, and it writes no other id, so an upload can never replace or delete an article of the operator's corpus.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import time
from collections.abc import Iterable, Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ingest.chunking import CHUNKER_VERSION, ChunkingPlan, chunk_article, embedding_text
from ingest.loaders import CsvColumns, LoadFailure, iter_documents, too_long_reason
from rag.config import IngestSettings
from rag.embed.base import Embedder, Matrix
from rag.errors import DiskFullError, InputError, RagError
from rag.search.sparse import SOUND_KEYS_VERSION, SparseEncoder, SparseVector
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Article, Chunk, without_surrogates

logger = logging.getLogger(__name__)

EMBED_GROUP_CHUNKS = 256  # chunks gathered across articles before embedding: enough to sort by length well
EMBED_TURN_CHUNKS = 64  # chunks embedded per turn: what a question asked meanwhile may wait for
UPLOAD_ID_PREFIX = "upload:"

Turn = AbstractContextManager[Any]


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


@dataclass
class _Pending:
    article: Article
    content_hash: str
    chunks: list[Chunk]
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
        turn: Turn | None = None,
    ) -> None:
        self.store, self.embedder, self.sparse, self.plan = store, embedder, sparse, plan
        self.fingerprint = fingerprint
        self.limits = limits or IngestSettings()
        self.turn: Turn = turn if turn is not None else nullcontext()

    def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        sync: bool = False,
        csv_columns: CsvColumns | None = None,
        progress: Any = None,
    ) -> IngestReport:
        """Ingest files and folders; with `sync`, delete stored articles from these inputs that vanished.

        Raises InputError, before anything is written, when `sync` is asked for and a path is missing or
        cannot be read: its articles would all look vanished."""
        if sync:
            _check_sync_roots(paths)
        started = time.perf_counter()
        report = IngestReport()
        known = self._known_articles()
        documents = iter_documents(paths, csv_columns=csv_columns, max_document_chars=self.limits.max_document_chars)
        seen = self._ingest_stream(documents, known, report, progress, uploads=False)
        if sync and report.stopped is None:
            failed = [Path(_file_of(failure.path)).absolute() for failure in report.failed]
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
        self._ingest_stream(items, self._known_articles(), report, progress, uploads=uploads)
        report.seconds = time.perf_counter() - started
        return report

    def _known_articles(self) -> dict[str, Any]:
        with self.turn:
            return {stored.article.id: stored for stored in self.store.iter_articles()}

    def _ingest_stream(
        self,
        items: Iterable[Article | LoadFailure],
        known: dict[str, Any],
        report: IngestReport,
        progress: Any,
        *,
        uploads: bool,
    ) -> set[str]:
        seen: set[str] = set()
        pending: list[_Pending] = []
        try:
            for item in items:
                if progress is not None:
                    progress.update(1)
                if isinstance(item, LoadFailure):
                    report.failed.append(item)
                    continue
                try:
                    entry = self._plan_article(item, known, seen, report, uploads=uploads)
                except Exception as exc:  # one odd article (a bug of ours included) must not end the run
                    logger.warning("could not process %s", item.origin or item.id, exc_info=True)
                    report.failed.append(LoadFailure(item.origin or item.id, _unexpected(exc)))
                    continue
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
        self, article: Article, known: dict[str, Any], seen: set[str], report: IngestReport, *, uploads: bool
    ) -> _Pending | None:
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
        if not any(ch.isalnum() for ch in article.text):
            reason = "the text has no letters or digits (only symbols, punctuation or emoji); nothing to search"
            report.failed.append(LoadFailure(path=where, reason=reason))
            return None
        if len(article.text) > self.limits.max_document_chars:  # loaders check it too; articles handed in directly
            report.failed.append(LoadFailure(where, too_long_reason(len(article.text), self.limits.max_document_chars)))
            return None
        content_hash = self.content_hash(article)
        stored = known.get(article.id)
        if stored is not None and stored.content_hash == content_hash:
            report.unchanged += 1
            return None
        chunks = chunk_article(article, self.embedder.count_tokens, self.plan)
        if not chunks:
            report.failed.append(LoadFailure(path=where, reason="no text left after cleaning"))
            return None
        if len(chunks) > self.limits.max_chunks_per_document:
            report.failed.append(LoadFailure(where, self._too_many_chunks(len(chunks))))
            return None
        return _Pending(_with_absolute_origin(article), content_hash, chunks, is_update=stored is not None)

    def _too_many_chunks(self, count: int) -> str:
        return (
            f"is cut into {count:,} chunks, over the limit of {self.limits.max_chunks_per_document:,}; split it "
            "into smaller documents, or raise RAG_INGEST_MAX_CHUNKS_PER_DOCUMENT"
        )

    def content_hash(self, article: Article) -> str:
        material = json.dumps(
            [self.fingerprint, article.model_dump(mode="json", exclude={"origin"})], ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

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
                with self.turn:
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
        per_article = [[embedding_text(chunk) for chunk in entry.chunks] for entry in pending]
        texts = [text for article_texts in per_article for text in article_texts]
        started = time.perf_counter()
        dense = self._embed_in_turns(texts)
        report.embedding_seconds += time.perf_counter() - started
        return dense, [vector for article_texts in per_article for vector in self.sparse.encode_article(article_texts)]

    def _embed_in_turns(self, texts: list[str]) -> Matrix:
        """Embed in slices of EMBED_TURN_CHUNKS, each in a turn of its own. The texts are sorted by length
        first, so each slice holds texts of like length (little padding) as one big call would."""
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        slices = []
        for start in range(0, len(order), EMBED_TURN_CHUNKS):
            with self.turn:
                slices.append(
                    self.embedder.embed_documents([texts[i] for i in order[start : start + EMBED_TURN_CHUNKS]])
                )
        by_length = np.concatenate(slices) if slices else np.zeros((0, self.embedder.dimension), dtype=np.float32)
        dense = np.empty_like(by_length)
        dense[order] = by_length
        return dense

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
                with self.turn:
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


def _namespace_reason(article_id: str, uploads: bool) -> str:
    if uploads:  # api/uploads.py makes every id; this would be a bug of ours
        return f"id '{article_id}' is outside the namespace of uploaded files"
    return (
        f"id '{article_id}' starts with '{UPLOAD_ID_PREFIX}', which is kept for files sent to POST /v1/ingest; "
        "give this document another id"
    )


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


def build_ingestor(service: RagService, *, turn: Turn | None = None) -> Ingestor:
    """An Ingestor writing into the service's collection (created on first use). `turn`: held around each use
    of the store and the model (the app's lock); none by default."""
    turn = turn if turn is not None else nullcontext()
    with turn:
        service.open_for_writing()
    settings = service.settings
    plan = ChunkingPlan(max_tokens=settings.chunking.max_tokens, overlap_sentences=settings.chunking.overlap_sentences)
    fingerprint = content_fingerprint(service)
    return Ingestor(
        service.store, service.embedder, service.sparse, plan, fingerprint, limits=settings.ingest, turn=turn
    )


def content_fingerprint(service: RagService) -> str:
    """Everything that shapes an article's stored points: the collection's vector settings, the chunker and
    the keyword terms added since (an article whose points another version made is re-ingested)."""
    return f"{service.collection_spec().fingerprint}|{CHUNKER_VERSION}|{SOUND_KEYS_VERSION}"
