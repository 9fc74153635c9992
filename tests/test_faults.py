"""Faults: a full disk mid-ingest, a damaged store folder, a `--sync` path that is gone, secrets in URLs, and
`python -m rag doctor` telling each apart."""

from __future__ import annotations

import json
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from qdrant_client.local.persistence import CollectionPersistence

from ingest.__main__ import main as ingest_main
from ingest.pipeline import build_ingestor
from rag.__main__ import main as rag_main
from rag.config import QdrantSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.errors import StoreCorruptError
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Article

from .conftest import PROJECT_ROOT

OLD_TEXT = " ".join(f"Old sentence {i} says the port budget grew." for i in range(120))
NEW_TEXT = " ".join(f"New sentence {i} says the rail budget fell." for i in range(120))


@pytest.fixture
def cli(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> Any:
    """Runs `python -m ingest` / `python -m rag` in this process (their `main`), with the fake embedder and a
    store under tmp_path; returns (exit status, stdout, stderr)."""
    monkeypatch.setenv("RAG_MODELS_EMBEDDING", "fake")
    monkeypatch.setenv("RAG_QDRANT_PATH", str(tmp_path / "qdrant"))
    monkeypatch.setenv("RAG_COLLECTION", "cli")

    def run(command: str, *args: str, **env: str) -> tuple[int, str, str]:
        with monkeypatch.context() as scoped:
            for name, value in env.items():
                scoped.setenv(name, value)
            status = (ingest_main if command == "ingest" else rag_main)(list(args))
        out, err = capsys.readouterr()
        return status, out, err

    return run


# --- a full disk -------------------------------------------------------------------------------------


@pytest.fixture
def disk_fills_after(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[int]]:
    """Qdrant's local mode stores each point in SQLite before applying it; after the number of points in the
    list, every write fails as SQLite fails on a full disk (0 in the list: the disk has room)."""
    budget = [0]
    persist = CollectionPersistence.persist

    def persist_until_full(self: CollectionPersistence, point: object) -> None:
        if budget[0] > 0:
            budget[0] -= 1
            if budget[0] == 0:
                budget[0] = -1
        if budget[0] < 0:
            raise sqlite3.OperationalError("database or disk is full")
        persist(self, point)  # type: ignore[arg-type]

    monkeypatch.setattr(CollectionPersistence, "persist", persist_until_full)
    yield budget


def test_a_full_disk_keeps_the_previous_version_served_and_the_store_reopens(
    settings: Settings, disk_fills_after: list[int]
) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    ingestor = build_ingestor(service)
    ingestor.ingest_articles([Article(id="budget", text=OLD_TEXT, origin="budget.txt")])
    old_chunks = service.store.count_chunks()
    old_hash = service.store.get_article("budget").content_hash  # type: ignore[union-attr]
    assert old_chunks > 5

    disk_fills_after[0] = 5  # part of the new version's chunks get written, then the disk is full
    report = ingestor.ingest_articles(
        [Article(id="budget", text=NEW_TEXT, origin="budget.txt"), Article(id="later", text="Never read.")]
    )
    assert report.stopped and "no space left" in report.stopped and "Free disk space" in report.stopped
    assert (report.updated, report.added, [Path(f.path).name for f in report.failed]) == (0, 0, ["budget.txt"])
    hits = service.search("budget", top_k=10)
    assert hits and all("Old sentence" in hit.chunk.text for hit in hits)  # the old version, whole
    assert service.store.count_chunks() == old_chunks  # the part written of the new one was removed
    service.close()

    disk_fills_after[0] = 0
    reopened = RagService(settings, embedder=FakeEmbedder())  # a restart: the store opens as reported
    stored = reopened.store.get_article("budget")
    assert stored is not None and stored.content_hash == old_hash and stored.chunk_count == old_chunks
    assert reopened.store.count_chunks() == old_chunks and reopened.store.get_article("later") is None
    again = build_ingestor(reopened).ingest_articles([Article(id="budget", text=NEW_TEXT, origin="budget.txt")])
    assert again.updated == 1 and all("New sentence" in h.chunk.text for h in reopened.search("budget", top_k=10))
    assert reopened.store.count_chunks() == again.chunks  # the old version's chunks are gone
    reopened.close()


def test_the_ingest_command_reports_a_full_disk_and_exits_1(
    tmp_path: Path, disk_fills_after: list[int], cli: Any
) -> None:
    folder = tmp_path / "in"
    folder.mkdir()
    (folder / "a.txt").write_text("Port news.\n\n" + OLD_TEXT, encoding="utf-8")
    disk_fills_after[0] = 3
    status, out, err = cli("ingest", str(folder), "--json")
    assert status == 1 and "no space left" in json.loads(out)["stopped"]
    assert err.startswith("error: no space left") and "Traceback" not in err


# --- a damaged store folder ----------------------------------------------------------------------------


def _store_folder(cli: Any, tmp_path: Path) -> Path:
    status, _, err = cli("ingest", str(PROJECT_ROOT / "data"))
    assert status == 0, err
    return tmp_path / "qdrant"


@pytest.mark.parametrize(
    "damage",
    ["truncated meta.json", "garbage sqlite", "missing meta.json"],
)
def test_a_damaged_store_is_one_clear_error_naming_the_folder(tmp_path: Path, damage: str, cli: Any) -> None:
    folder = _store_folder(cli, tmp_path)
    if damage == "truncated meta.json":
        meta = folder / "meta.json"
        meta.write_text(meta.read_text()[:25])
    elif damage == "garbage sqlite":
        (folder / "collection" / "cli" / "storage.sqlite").write_bytes(b"not a database" * 100)
    else:
        (folder / "meta.json").unlink()
    for command, args in (("rag", ["ask", "공동감사는 누가 맡나?"]), ("ingest", [str(PROJECT_ROOT / "data")])):
        status, _, err = cli(command, *args)  # an exception would fail the test here
        assert status in (1, 2), err
        [line] = err.strip().splitlines()[-1:]
        assert line.startswith(f"error: the embedded store {folder} is damaged")
        assert "move it aside" in line and "python -m ingest" in line
    status, out, _ = cli("rag", "doctor", "--json")
    assert status == 1
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert checks["store"]["status"] == "fail" and "damaged" in checks["store"]["detail"]


def test_the_damaged_part_is_named(tmp_path: Path, cli: Any) -> None:
    folder = _store_folder(cli, tmp_path)
    (folder / "collection" / "cli__articles" / "storage.sqlite").write_bytes(b"x" * 4096)
    with pytest.raises(StoreCorruptError, match=r"collection/cli__articles/storage\.sqlite"):
        QdrantStore(QdrantSettings(path=folder), "cli")


# --- --sync and missing inputs ---------------------------------------------------------------------------


def _two_folders(tmp_path: Path) -> tuple[Path, Path]:
    first, second = tmp_path / "first", tmp_path / "second"
    for folder in (first, second):
        folder.mkdir()
        (folder / "a.txt").write_text(f"{folder.name} news.\n\nThe {folder.name} port grew.", encoding="utf-8")
    return first, second


def test_sync_with_a_missing_path_stops_before_deleting_anything(tmp_path: Path, cli: Any) -> None:
    first, second = _two_folders(tmp_path)
    assert cli("ingest", str(first), str(second))[0] == 0
    second_renamed = tmp_path / "unmounted"
    second.rename(second_renamed)  # a share that is not mounted, a typo
    status, _, err = cli("ingest", str(first), str(second), "--sync", "--json")
    assert status == 2
    assert err.strip().splitlines()[-1] == (
        f"error: --sync: {second} does not exist; nothing was deleted. Check the path, or leave out --sync"
    )
    second_renamed.rename(second)
    again = json.loads(cli("ingest", str(first), str(second), "--json")[1])
    assert (again["unchanged"], again["added"], again["deleted"]) == (2, 0, 0)  # both articles were kept


def test_sync_with_an_empty_folder_that_articles_came_from_stops_before_deleting(tmp_path: Path, cli: Any) -> None:
    first, second = _two_folders(tmp_path)
    assert cli("ingest", str(first), str(second))[0] == 0
    (second / "a.txt").unlink()  # what an unmounted share looks like: the mount point, empty
    status, _, err = cli("ingest", str(first), str(second), "--sync", "--json")
    assert status == 2
    assert err.strip().splitlines()[-1] == (
        f"error: --sync: {second} holds no files, but 1 stored article(s) came from it (an unmounted share?); "
        "nothing was deleted. Mount or fill it, or add --sync-empty-folders to delete those articles"
    )
    assert json.loads(cli("ingest", str(first), "--json")[1])["unchanged"] == 1
    status, out, _ = cli("ingest", str(first), str(second), "--sync", "--sync-empty-folders", "--json")
    assert (status, json.loads(out)["deleted"]) == (0, 1)  # asked for: the empty folder's article goes
    status, out, _ = cli("ingest", str(first), str(second), "--sync", "--json")
    assert (status, json.loads(out)["deleted"]) == (0, 0)  # nothing stored from it any more: an empty folder is fine


def test_sync_keeps_the_articles_of_a_folder_that_could_not_be_read(
    fake_service: RagService, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "corpus"
    (root / "locked").mkdir(parents=True)
    (root / "open.txt").write_text("Open news.\n\nThe open port grew.", encoding="utf-8")
    (root / "locked" / "b.txt").write_text("Locked news.\n\nThe locked port grew.", encoding="utf-8")
    ingestor = build_ingestor(fake_service)
    assert ingestor.ingest_paths([root]).added == 2
    scandir = os.scandir

    def refuse_locked(path: object = ".") -> object:
        if Path(str(path)) == root / "locked":
            raise PermissionError(13, "Permission denied", str(path))
        return scandir(path)  # type: ignore[arg-type]

    monkeypatch.setattr(os, "scandir", refuse_locked)  # as root, chmod cannot make a folder unreadable
    report = ingestor.ingest_paths([root], sync=True)
    assert report.deleted == 0 and [f.path for f in report.failed] == [str(root / "locked")]
    assert fake_service.store.count_articles() == 2


# --- secrets ---------------------------------------------------------------------------------------------


def test_config_masks_passwords_inside_urls(cli: Any) -> None:
    status, out, err = cli(
        "rag",
        "config",
        "--json",
        RAG_QDRANT_URL="https://reader:s3cret-pw@qdrant.example:6333",
        RAG_QDRANT_API_KEY="qdrant-key-123",
        RAG_OPENAI_BASE_URL="https://llm.example/v1?api_key=key-456&region=eu",
    )
    assert status == 0, err
    for secret in ("s3cret-pw", "qdrant-key-123", "key-456"):
        assert secret not in out
    payload = json.loads(out)
    assert payload["qdrant"]["url"] == "https://reader:***@qdrant.example:6333"
    assert payload["openai"]["base_url"] == "https://llm.example/v1?api_key=***&region=eu"
    assert payload["qdrant"]["api_key"] == "********"


# --- doctor ----------------------------------------------------------------------------------------------


def test_doctor_passes_on_a_working_store_and_names_what_is_missing(tmp_path: Path, cli: Any) -> None:
    _store_folder(cli, tmp_path)
    status, out, err = cli("rag", "doctor")
    assert status == 0, out + err
    lines = out.splitlines()
    assert [line.split()[1] for line in lines] == [
        "settings",
        "embedding",
        "lexicon",
        "llm",
        "store",
        "collection",
        "contents",
    ]
    assert lines[-1].startswith("ok") and "1 articles" in lines[-1]

    status, out, _ = cli("rag", "doctor", "--json", RAG_LLM_BACKEND="local", RAG_MODELS_LLM_FILE="missing.gguf")
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert status == 1 and checks["llm"]["status"] == "fail"
    assert "python -m rag models --llm" in checks["llm"]["detail"]

    status, out, _ = cli("rag", "doctor", "--json", RAG_MODELS_EMBEDDING="no-such-model")
    checks = {check["name"]: check for check in json.loads(out)["checks"]}
    assert status == 1 and checks["embedding"]["status"] == "fail"
    assert checks["collection"]["status"] == "warn"  # not compared without a model
