"""`python -m ingest` as users and scripts run it: exit codes, --json, sync, and kill-and-resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

from ingest.pipeline import build_ingestor
from rag.config import Settings
from rag.service import RagService

from .conftest import PROJECT_ROOT, make_settings


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(RAG_MODELS_EMBEDDING="fake", RAG_QDRANT_PATH=str(tmp_path / "qdrant"), RAG_COLLECTION="cli")
    return env


def _ingest(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ingest", *args],
        cwd=PROJECT_ROOT,
        env=_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=300,
    )


def _corpus(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "a.txt").write_text("철도 안전 대책\n\n국토교통부는 철도 안전 강화 대책을 발표했다.", encoding="utf-8")
    (folder / "b.md").write_text("# Budget\n\nThe ministry raised the rail budget by ten percent.", encoding="utf-8")
    lines = [
        json.dumps({"id": "j1", "title": "One", "text": "First record text about ports."}),
        "{broken json",
        json.dumps({"id": "j2", "title": "Two", "text": "Second record text about airports."}),
    ]
    (folder / "c.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (folder / "empty.txt").write_text("", encoding="utf-8")
    return folder


def test_partial_failure_exits_1_with_a_json_summary_naming_file_and_line(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "in")
    result = _ingest(tmp_path, str(corpus), "--json")
    assert result.returncode == 1, result.stderr
    summary = json.loads(result.stdout)  # stdout holds only the JSON object
    assert summary["added"] == 4 and summary["updated"] == 0 and summary["chunks"] >= 4
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert str(corpus / "c.jsonl") + ":2" in failed
    assert str(corpus / "empty.txt") in failed
    again = json.loads(_ingest(tmp_path, str(corpus), "--json").stdout)
    assert (again["added"], again["unchanged"], again["chunks"]) == (0, 4, 0)


def test_clean_run_exits_0_and_usage_errors_exit_2(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.txt").write_text("Port authority news.\n\nThe port expanded its terminal.", encoding="utf-8")
    ok = _ingest(tmp_path, str(good))
    assert ok.returncode == 0, ok.stderr
    assert "added 1" in ok.stdout
    assert _ingest(tmp_path).returncode == 2  # no PATH
    bad_env = subprocess.run(
        [sys.executable, "-m", "ingest", str(good)],
        cwd=PROJECT_ROOT,
        env={**_env(tmp_path), "RAG_CHUNKING_MAX_TOKENS": "9999"},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert bad_env.returncode == 2 and "RAG_CHUNKING_MAX_TOKENS" in bad_env.stderr


def test_help_explains_formats_and_exit_codes(tmp_path: Path) -> None:
    result = _ingest(tmp_path, "--help")
    assert result.returncode == 0
    assert ".jsonl" in result.stdout and "--sync" in result.stdout and "Exit status" in result.stdout


def test_sync_deletes_articles_whose_file_vanished(tmp_path: Path) -> None:
    corpus = _corpus(tmp_path / "in")
    _ingest(tmp_path, str(corpus), "--json")
    (corpus / "b.md").unlink()
    summary = json.loads(_ingest(tmp_path, str(corpus), "--sync", "--json").stdout)
    assert summary["deleted"] == 1 and summary["unchanged"] == 3
    no_sync = json.loads(_ingest(tmp_path, str(corpus / "a.txt"), "--sync", "--json").stdout)
    assert no_sync["deleted"] == 0  # articles from files outside the given paths are left alone


KILLABLE_INGEST = textwrap.dedent(
    """
    import sys, time
    from pathlib import Path
    import ingest.pipeline as pipeline
    from rag.config import Settings, QdrantSettings
    from rag.embed.fake import FakeEmbedder
    from rag.service import RagService

    class SlowEmbedder(FakeEmbedder):
        def embed_documents(self, texts):
            time.sleep(0.05)
            return super().embed_documents(texts)

    class Progress:
        count = 0
        def update(self, n):
            self.count += n
            print(self.count, flush=True)

    pipeline.EMBED_GROUP_CHUNKS = 3  # many small flushes: plenty of places to be killed in
    settings = Settings(_env_file=None, collection="resume", qdrant=QdrantSettings(path=Path(sys.argv[1])))
    service = RagService(settings, embedder=SlowEmbedder())
    pipeline.build_ingestor(service).ingest_paths([Path(sys.argv[2])], progress=Progress())
    print("done", flush=True)
    """
)


def _snapshot(settings: Settings) -> tuple[dict[str, str], int]:
    from rag.embed.fake import FakeEmbedder

    service = RagService(settings, embedder=FakeEmbedder())
    try:
        hashes = {s.article.id: s.content_hash for s in service.store.iter_articles()}
        return hashes, service.store.count_chunks()
    finally:
        service.close()


def test_killed_ingest_resumes_to_the_same_state_as_a_clean_run(tmp_path: Path) -> None:
    records = [
        {"id": f"doc{i}", "title": f"Title {i}", "text": " ".join(f"Sentence {j} of document {i}." for j in range(30))}
        for i in range(40)
    ]
    corpus = tmp_path / "corpus.jsonl"
    corpus.write_text("\n".join(json.dumps(r) for r in records) + "\n", encoding="utf-8")
    killed_store = tmp_path / "killed"
    child = subprocess.Popen(
        [sys.executable, "-c", KILLABLE_INGEST, str(killed_store), str(corpus)],
        cwd=PROJECT_ROOT,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert child.stdout is not None
    for line in child.stdout:
        if line.strip().isdigit() and int(line) >= 12:
            os.kill(child.pid, signal.SIGKILL)  # mid-run, with some articles committed and some not
            break
    child.wait(timeout=60)
    assert child.returncode == -signal.SIGKILL

    resumed_settings = make_settings(tmp_path).model_copy(update={"collection": "resume"})
    resumed_settings.qdrant.path = killed_store
    partial_hashes, _ = _snapshot(resumed_settings)
    assert 0 < len(partial_hashes) < 40

    from rag.embed.fake import FakeEmbedder

    resumed = RagService(resumed_settings, embedder=FakeEmbedder())
    report = build_ingestor(resumed).ingest_paths([corpus])
    resumed.close()
    assert report.unchanged == len(partial_hashes) and report.added == 40 - len(partial_hashes)

    clean_settings = resumed_settings.model_copy(deep=True)
    clean_settings.qdrant.path = tmp_path / "clean"
    clean = RagService(clean_settings, embedder=FakeEmbedder())
    build_ingestor(clean).ingest_paths([corpus])
    clean.close()
    assert _snapshot(resumed_settings) == _snapshot(clean_settings)


# --- hostile inputs (found by an audit; each used to crash the run, lose files or hang) ------------------


def test_a_lone_surrogate_escape_does_not_stop_the_run(tmp_path: Path) -> None:
    corpus = tmp_path / "sur"
    corpus.mkdir()
    lines = [
        json.dumps({"id": "ok", "text": "Housing policy was announced today."}),
        '{"id": "bad\\ud800", "title": "T\\udfff", "text": "Housing policy \\ud800 announced in May."}',
    ]
    (corpus / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (corpus / "b.txt").write_text("Rail news.\n\nThe rail budget rose.", encoding="utf-8")
    result = _ingest(tmp_path, str(corpus), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert summary["added"] == 3 and not summary["failed"]


def test_a_huge_number_or_deep_nesting_fails_its_line_only(tmp_path: Path) -> None:
    corpus = tmp_path / "odd"
    corpus.mkdir()
    lines = [
        json.dumps({"id": "before", "text": "Port news before the odd lines."}),
        '{"id": "n", "text": "x", "n": ' + "9" * 5000 + "}",
        "[" * 10_000 + "]" * 10_000,
        json.dumps({"id": "after", "text": "Port news after the odd lines."}),
    ]
    (corpus / "odd.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    result = _ingest(tmp_path, str(corpus), "--json")
    summary = json.loads(result.stdout)
    assert result.returncode == 1 and summary["added"] == 2
    failed = {f["path"]: f["reason"] for f in summary["failed"]}
    assert set(failed) == {str(corpus / "odd.jsonl") + ":2", str(corpus / "odd.jsonl") + ":3"}
    assert "number too long" in failed[str(corpus / "odd.jsonl") + ":2"]
    assert "nested too deeply" in failed[str(corpus / "odd.jsonl") + ":3"]


def test_a_file_name_that_is_not_utf8_keeps_the_json_output_valid(tmp_path: Path) -> None:
    corpus = tmp_path / "names"
    corpus.mkdir()
    odd = os.path.join(os.fsencode(corpus), b"bad\xffname.txt")
    with open(odd, "wb") as handle:
        handle.write(b"Port news.\n\nThe port grew.")
    (corpus / "good.txt").write_text("Rail news.\n\nThe rail grew.", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "ingest", str(corpus), "--json"],
        cwd=PROJECT_ROOT,
        env={**_env(tmp_path), "PYTHONIOENCODING": "utf-8"},
        capture_output=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout.decode("utf-8"))  # strict UTF-8
    assert summary["added"] == 2


def test_bad_collection_names_and_store_paths_are_usage_errors(tmp_path: Path) -> None:
    good = tmp_path / "good"
    good.mkdir()
    (good / "a.txt").write_text("Port news.\n\nThe port grew.", encoding="utf-8")
    for name in ("", "../x"):
        result = _ingest(tmp_path, str(good), "--collection", name)
        assert result.returncode == 2 and "--collection" in result.stderr and "Traceback" not in result.stderr
    a_file = tmp_path / "not-a-folder"
    a_file.write_text("x", encoding="utf-8")
    result = subprocess.run(
        [sys.executable, "-m", "ingest", str(good)],
        cwd=PROJECT_ROOT,
        env={**_env(tmp_path), "RAG_QDRANT_PATH": str(a_file / "store")},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 2 and "RAG_QDRANT_PATH" in result.stderr and "Traceback" not in result.stderr


def test_sync_from_another_folder_keeps_files_that_still_exist(tmp_path: Path) -> None:
    for folder, name in (("cwd_a", "a.txt"), ("cwd_b", "b.txt")):
        docs = tmp_path / folder / "docs"
        docs.mkdir(parents=True)
        (docs / name).write_text(f"News {name}.\n\nThe story of {name}.", encoding="utf-8")

    def run_in(folder: str, *args: str) -> dict[str, object]:
        result = subprocess.run(
            [sys.executable, "-m", "ingest", *args, "--json"],
            cwd=tmp_path / folder,
            env={**_env(tmp_path), "PYTHONPATH": str(PROJECT_ROOT), "RAG_MODELS_DIR": str(PROJECT_ROOT / "models")},
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        return dict(json.loads(result.stdout))

    assert run_in("cwd_a", "docs")["added"] == 1
    # "docs" means another folder here: cwd_a/docs/a.txt still exists and must not be deleted
    assert run_in("cwd_b", "--sync", "docs")["deleted"] == 0
