"""`python -m ingest --shard I/N` and `--workers K`: spreading one ingest over runs and processes changes nothing
about what ends up stored or reported.

- Two `--shard` runs into one store hold exactly what one unsharded run holds (ids, hashes, chunk ids, counts),
  and their reports add up to its report; `--sync` per shard deletes only that shard's vanished articles.
- `--workers 2` stores and reports exactly what one process does, failures and their order included.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from ingest.pipeline import build_ingestor
from ingest.sharding import WHOLE, Shard, shard_number
from rag.config import QdrantSettings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService

from .conftest import PROJECT_ROOT, make_settings

FIXTURES = Path(__file__).parent / "fixtures"


def _env(store: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_MODELS_EMBEDDING="fake", RAG_QDRANT_PATH=str(store), RAG_COLLECTION="shards")
    return env


def _ingest(store: Path, *args: str) -> dict[str, Any]:
    result = subprocess.run(
        [sys.executable, "-m", "ingest", *args, "--json"],
        cwd=PROJECT_ROOT,
        env=_env(store),
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert result.returncode in (0, 1), result.stderr
    return dict(json.loads(result.stdout))


def _corpus(folder: Path) -> Path:
    """Every kind of input: single-document files, a JSONL and a CSV with many articles, bad lines, a duplicate
    id, an empty file and the project's own fixtures (HTML, Markdown, Korean and English text)."""
    folder.mkdir(parents=True, exist_ok=True)
    for fixture in FIXTURES.iterdir():
        shutil.copy(fixture, folder / fixture.name)
    for i in range(12):
        (folder / f"note{i}.txt").write_text(
            f"메모 {i}\n\n국토교통부는 {i}번째 철도 대책을 발표했다.", encoding="utf-8"
        )
    lines = [
        json.dumps({"id": f"j{i}", "title": f"Record {i}", "text": f"Port {i} expanded its terminal."})
        for i in range(40)
    ]
    lines[7] = "{broken json"
    lines[20] = json.dumps({"id": "j3", "text": "A second record with the id j3."})  # duplicate id
    (folder / "records.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    rows = ["id,title,text,date"] + [
        f"c{i},제목 {i},{i}번째 보도자료 본문입니다.,2024-05-{1 + i % 28:02d}" for i in range(30)
    ]
    (folder / "releases.csv").write_text("\n".join(rows) + "\n", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    return folder


def _state(store: Path) -> dict[str, Any]:
    settings = make_settings(store.parent).model_copy(update={"collection": "shards"})
    settings.qdrant = QdrantSettings(path=store)
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        articles = {s.article.id: (s.content_hash, s.chunk_count) for s in service.store.iter_articles()}
        chunk_ids = set()
        offset = None
        client = service.store._client
        while True:
            records, offset = client.scroll("shards", limit=256, offset=offset, with_payload=False)
            chunk_ids.update(str(record.id) for record in records)
            if offset is None:
                break
        return {"articles": articles, "chunk_ids": chunk_ids, "chunks": service.store.count_chunks()}
    finally:
        service.close()


def _summed(reports: list[dict[str, Any]]) -> dict[str, Any]:
    keys = ("added", "updated", "unchanged", "deleted", "chunks")
    return {
        **{key: sum(r[key] for r in reports) for key in keys},
        "failed": sorted((f["path"], f["reason"]) for r in reports for f in r["failed"]),
    }


class _Progress:
    total = 0

    def update(self, count: int) -> None:
        self.total += count


def _ingest_here(
    store: Path,
    corpus: Path,
    shard: Shard = WHOLE,
    sync: bool = False,
    workers: int = 1,
    progress: _Progress | None = None,
) -> dict[str, Any]:
    """The same run as `python -m ingest`, in this process (quicker than a command per run)."""
    settings = make_settings(store.parent).model_copy(update={"collection": "shards"})
    settings.qdrant = QdrantSettings(path=store)
    service = RagService(settings, embedder=FakeEmbedder())
    try:
        ingestor = build_ingestor(service)
        report = ingestor.ingest_paths([corpus], shard=shard, sync=sync, workers=workers, progress=progress)
        return report.to_json()
    finally:
        service.close()


def test_two_shards_into_one_store_equal_one_unsharded_run(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "in")
    whole = _ingest_here(tmp_path / "whole", corpus)
    first = _ingest(tmp_path / "sharded", str(corpus), "--shard", "1/2")
    second = _ingest(tmp_path / "sharded", str(corpus), "--shard", "2/2")
    assert first["added"] > 5 and second["added"] > 5, "both shards must hold articles for this to test anything"
    assert _summed([first, second]) == _summed([whole])
    assert whole["failed"], "the corpus has bad lines: they must be reported once across the shards"
    sharded, unsharded = _state(tmp_path / "sharded"), _state(tmp_path / "whole")
    assert sharded == unsharded
    again = [_ingest_here(tmp_path / "sharded", corpus, half) for half in (Shard(1, 2), Shard(2, 2))]
    assert sum(r["unchanged"] for r in again) == whole["added"] and sum(r["added"] for r in again) == 0


def test_sync_per_shard_deletes_only_its_own_vanished_articles(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "in")
    halves = (Shard(1, 2), Shard(2, 2))
    for half in halves:
        _ingest_here(tmp_path / "sharded", corpus, half)
    _ingest_here(tmp_path / "whole", corpus)
    vanished = [corpus / f"note{i}.txt" for i in range(12)]
    by_shard = {1: 0, 2: 0}
    for path in vanished:
        by_shard[shard_number(str(path.absolute()), 2)] += 1  # a text file's article id is its path
        path.unlink()
    assert by_shard[1] and by_shard[2], "the vanished files must fall into both shards"
    assert _ingest_here(tmp_path / "sharded", corpus, halves[0], sync=True)["deleted"] == by_shard[1]
    left = _state(tmp_path / "sharded")["articles"]
    assert sum(1 for path in vanished if str(path.absolute()) in left) == by_shard[2]  # shard 2's are still there
    assert _ingest_here(tmp_path / "sharded", corpus, halves[1], sync=True)["deleted"] == by_shard[2]
    assert _ingest_here(tmp_path / "whole", corpus, sync=True)["deleted"] == len(vanished)
    assert _state(tmp_path / "sharded") == _state(tmp_path / "whole")


def test_a_file_that_fails_in_one_shard_keeps_its_articles_in_every_shard(tmp_path: Path) -> None:
    """`--sync` keeps the stored articles of a file that could not be read this time; the failure is reported
    by one shard only, but every shard must know of it."""
    corpus = _corpus(tmp_path / "in")
    halves = (Shard(1, 2), Shard(2, 2))
    for half in halves:
        _ingest_here(tmp_path / "sharded", corpus, half)
    before = _state(tmp_path / "sharded")
    (corpus / "records.jsonl").write_bytes(b"\xff\xfe\x00binary now\x00\x00")
    reports = [_ingest_here(tmp_path / "sharded", corpus, half, sync=True) for half in halves]
    assert sum(len(r["failed"]) for r in reports) >= 1 and sum(r["deleted"] for r in reports) == 0
    assert _state(tmp_path / "sharded") == before


def test_workers_store_and_report_exactly_what_one_process_does(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "in")
    counted = _Progress()
    one = _ingest_here(tmp_path / "one", corpus, progress=counted)
    two = _ingest(tmp_path / "two", str(corpus), "--workers", "2")
    for report in (one, two):
        report.pop("seconds"), report.pop("embedding_seconds")
    assert two == one  # failures in the same order too
    assert one["failed"] and one["added"] > 40
    assert _state(tmp_path / "two") == _state(tmp_path / "one")
    # workers and a shard together: every input read counts on the progress bar, whichever shard takes it
    half = _Progress()
    _ingest_here(tmp_path / "half", corpus, Shard(1, 2), workers=2, progress=half)
    assert half.total == counted.total > one["added"]


def test_shard_numbers_never_change() -> None:
    """Runs on different machines and days must agree on the shard of an article: a changed function would make
    `--sync` in one shard see another shard's articles as vanished."""
    assert [shard_number(key, 4) for key in ("a", "doc-17", "https://example.org/news/1", "기사")] == [3, 4, 3, 3]
    counts = [0, 0, 0]
    for i in range(3000):
        counts[shard_number(f"article-{i}", 3) - 1] += 1
    assert min(counts) > 900  # an even split


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--shard", "3/2"], "between 1 and N"),
        (["--shard", "half"], "I/N"),
        (["--shard", "0/2"], "between 1 and N"),
        (["--workers", "0"], "at least 1"),
    ],
)
def test_bad_shard_or_workers_is_a_usage_error(tmp_path: Path, args: list[str], message: str) -> None:
    (tmp_path / "a.txt").write_text("Port news.\n\nThe port grew.", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "ingest", str(tmp_path / "a.txt"), *args],
        cwd=PROJECT_ROOT,
        env=_env(tmp_path / "store"),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and message in result.stderr and "Traceback" not in result.stderr


def test_help_names_the_new_flags() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "ingest", "--help"], cwd=PROJECT_ROOT, capture_output=True, text=True, timeout=120
    )
    assert "--shard I/N" in result.stdout and "--workers K" in result.stdout


@pytest.mark.slow
def test_workers_count_tokens_as_the_model_does(real_embedder: Any) -> None:
    """Workers get the tokenizer file, not the model: its counts must be the model's, prefix included."""
    counter = real_embedder.token_counter()
    assert counter is not None
    texts = [
        "국토교통부는 철도 안전 대책을 발표했다.",
        "The Committee decided to raise the target range.",
        "x" * 3000,
        "",
    ]
    assert [counter(text) for text in texts] == [real_embedder.count_tokens(text) for text in texts]
