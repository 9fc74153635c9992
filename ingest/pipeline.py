"""load → clean → chunk → embed → upsert, keeping the store in sync with the inputs.

Idempotent and resumable by construction:
- an article's content hash (text, metadata and the collection fingerprint) is stored in its record;
  an unchanged article is skipped without embedding anything;
- chunks are embedded across articles in large groups (sentence-transformers sorts each group by length,
  FINDINGS.md #2), then written article by article, the article record last (see store.replace_article).
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ingest.chunking import CHUNKER_VERSION, ChunkingPlan, chunk_article, embedding_text
from ingest.loaders import CsvColumns, LoadFailure, iter_documents
from rag.embed.base import Embedder, Matrix
from rag.errors import RagError
from rag.search.sparse import SOUND_KEYS_VERSION, SparseEncoder, SparseVector
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Article, Chunk, without_surrogates

logger = logging.getLogger(__name__)

EMBED_GROUP_CHUNKS = 256  # chunks embedded per encode call: big enough to sort by length well


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
    ) -> None:
        self.store, self.embedder, self.sparse, self.plan = store, embedder, sparse, plan
        self.fingerprint = fingerprint

    def ingest_paths(
        self,
        paths: Sequence[Path],
        *,
        sync: bool = False,
        csv_columns: CsvColumns | None = None,
        progress: Any = None,
    ) -> IngestReport:
        """Ingest files and folders; with `sync`, delete stored articles from these inputs that vanished."""
        started = time.perf_counter()
        report = IngestReport()
        known = {stored.article.id: stored for stored in self.store.iter_articles()}
        seen = self._ingest_stream(iter_documents(paths, csv_columns=csv_columns), known, report, progress)
        if sync:
            failed_origins = {str(Path(_file_of(failure.path)).absolute()) for failure in report.failed}
            report.deleted = self._delete_vanished(paths, known, seen, failed_origins)
        report.seconds = time.perf_counter() - started
        return report

    def ingest_articles(self, articles: Iterable[Article], progress: Any = None) -> IngestReport:
        """Ingest already-loaded articles (evaluation corpora, API uploads)."""
        started = time.perf_counter()
        report = IngestReport()
        known = {stored.article.id: stored for stored in self.store.iter_articles()}
        self._ingest_stream(articles, known, report, progress)
        report.seconds = time.perf_counter() - started
        return report

    def _ingest_stream(
        self, items: Iterable[Article | LoadFailure], known: dict[str, Any], report: IngestReport, progress: Any
    ) -> set[str]:
        seen: set[str] = set()
        pending: list[_Pending] = []
        for item in items:
            if progress is not None:
                progress.update(1)
            if isinstance(item, LoadFailure):
                report.failed.append(item)
                continue
            try:
                entry = self._plan_article(item, known, seen, report)
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
        return seen

    def _plan_article(
        self, article: Article, known: dict[str, Any], seen: set[str], report: IngestReport
    ) -> _Pending | None:
        if article.id in seen:
            report.failed.append(
                LoadFailure(
                    path=article.origin or article.id,
                    reason=f"duplicate article id '{article.id}' in this run; kept the first",
                )
            )
            return None
        seen.add(article.id)
        if not any(ch.isalnum() for ch in article.text):
            reason = "the text has no letters or digits (only symbols, punctuation or emoji); nothing to search"
            report.failed.append(LoadFailure(path=article.origin or article.id, reason=reason))
            return None
        content_hash = self.content_hash(article)
        stored = known.get(article.id)
        if stored is not None and stored.content_hash == content_hash:
            report.unchanged += 1
            return None
        chunks = chunk_article(article, self.embedder.count_tokens, self.plan)
        if not chunks:
            report.failed.append(LoadFailure(path=article.origin or article.id, reason="no text left after cleaning"))
            return None
        return _Pending(_with_absolute_origin(article), content_hash, chunks, is_update=stored is not None)

    def content_hash(self, article: Article) -> str:
        material = json.dumps(
            [self.fingerprint, article.model_dump(mode="json", exclude={"origin"})], ensure_ascii=False, sort_keys=True
        )
        return hashlib.sha256(material.encode("utf-8")).hexdigest()

    def _flush(self, pending: list[_Pending], report: IngestReport) -> None:
        """Embed the group's chunks together, then store article by article."""
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
        started = time.perf_counter()
        dense = self.embedder.embed_documents([text for texts in per_article for text in texts])
        report.embedding_seconds += time.perf_counter() - started
        return dense, [vector for texts in per_article for vector in self.sparse.encode_article(texts)]

    def _delete_vanished(
        self, paths: Sequence[Path], known: dict[str, Any], seen: set[str], failed_origins: set[str]
    ) -> int:
        roots = [Path(p) for p in paths]
        deleted = 0
        for article_id, stored in known.items():
            origin = stored.article.origin
            if article_id in seen or origin is None or origin in failed_origins:
                continue
            if any(_is_within(Path(origin), root) for root in roots):
                self.store.delete_article(article_id)
                deleted += 1
        return deleted


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


def _is_within(path: Path, root: Path) -> bool:
    try:
        path.resolve().relative_to(root.resolve())
    except ValueError:
        return False
    return True


def build_ingestor(service: RagService) -> Ingestor:
    """An Ingestor writing into the service's collection (created on first use)."""
    service.open_for_writing()
    chunking = service.settings.chunking
    plan = ChunkingPlan(max_tokens=chunking.max_tokens, overlap_sentences=chunking.overlap_sentences)
    return Ingestor(service.store, service.embedder, service.sparse, plan, content_fingerprint(service))


def content_fingerprint(service: RagService) -> str:
    """Everything that shapes an article's stored points: the collection's vector settings, the chunker and
    the keyword terms added since (an article whose points another version made is re-ingested)."""
    return f"{service.collection_spec().fingerprint}|{CHUNKER_VERSION}|{SOUND_KEYS_VERSION}"
