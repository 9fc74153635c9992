"""Readers' verdicts: stored durably in SQLite, revised, and exported as questions JSONL."""

from __future__ import annotations

import json
import sqlite3
import threading
from pathlib import Path

import pytest

from eval.__main__ import main as eval_main
from eval.datasets import read_questions_jsonl
from rag.config import Settings
from rag.errors import ConfigurationError, InputError
from rag.feedback import MAX_COMMENT_CHARS, Feedback, FeedbackStore, utc_now
from rag.types import Citation

CITATION = Citation(
    n=1,
    doc_id="alliance",
    title="스마트시티 융합 얼라이언스 출범",
    url="https://example.org/alliance",
    date="2024-04-20",
    chunk_id="c1",
    quote="초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다.",
    start=10,
    end=38,
)


def _verdict(rating: int = 1, *, refused: bool = False, question: str = "공동의장사는?") -> Feedback:
    return Feedback(
        created_at=utc_now(),
        question=question,
        answer="" if refused else "LG CNS와 이큐브랩이 공동의장사다 [1].",
        citations=[] if refused else [CITATION],
        settings={"top_k": 5, "filters": {"source": "icn"}, "llm_backend": "none"},
        rating=rating,  # type: ignore[arg-type]
        refused=refused,
    )


def test_a_verdict_survives_a_new_connection_with_everything_it_was_given(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "feedback.sqlite3"
    feedback_id = FeedbackStore(path).add(_verdict(-1))
    FeedbackStore(path).revise(feedback_id, comment="  의장사가 빠졌어요  ")
    [stored] = list(FeedbackStore(path).entries())  # a fresh store object: nothing cached in memory
    assert stored.id == feedback_id and stored.rating == -1 and stored.comment == "의장사가 빠졌어요"
    assert stored.citations == [CITATION] and stored.settings["filters"] == {"source": "icn"}
    assert stored.question == "공동의장사는?" and not stored.refused
    assert stored.created_at.endswith("+00:00")
    # the schema the issue names, readable by any SQLite tool
    with sqlite3.connect(path) as connection:
        columns = [row[1] for row in connection.execute("PRAGMA table_info(feedback)")]
    assert columns == [
        "id",
        "created_at",
        "question",
        "answer",
        "citations",
        "settings",
        "rating",
        "comment",
        "refused",
    ]


def test_the_other_thumb_revises_the_verdict(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite3")
    feedback_id = store.add(_verdict(1))
    store.revise(feedback_id, rating=-1)
    assert [entry.rating for entry in store.entries()] == [-1]
    with pytest.raises(InputError, match="does not exist"):
        store.revise(feedback_id + 100, rating=1)
    with pytest.raises(InputError, match="comment"):
        store.revise(feedback_id, comment="x" * (MAX_COMMENT_CHARS + 1))


def test_writers_on_many_threads_lose_nothing(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "f.sqlite3")
    errors: list[BaseException] = []

    def write(worker: int) -> None:
        try:
            for i in range(10):
                store.add(_verdict(question=f"질문 {worker}-{i}"))
        except BaseException as exc:  # collected: an exception in a thread would otherwise vanish
            errors.append(exc)

    threads = [threading.Thread(target=write, args=(worker,)) for worker in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert not errors
    questions = [entry.question for entry in store.entries()]
    assert len(questions) == 60 and len(set(questions)) == 60


def test_a_file_that_is_not_a_database_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("not sqlite " * 200, encoding="utf-8")
    with pytest.raises(ConfigurationError, match="RAG_FEEDBACK_PATH"):
        FeedbackStore(path).add(_verdict())


def test_export_writes_questions_that_eval_run_reads(settings: Settings, tmp_path: Path) -> None:
    store = FeedbackStore(settings.feedback.path)
    up = store.add(_verdict(1))
    down = store.add(_verdict(-1, question="감사는 누가?"))
    store.revise(down, comment="감사 기관이 틀렸어요")
    refused_up = store.add(_verdict(1, refused=True, question="내일 날씨는?"))
    out = tmp_path / "out" / "feedback.jsonl"
    assert eval_main(["feedback", "--export", str(out)], settings=settings) == 0
    records = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    by_id = {record["id"]: record for record in records}
    approved = by_id[f"feedback-{up}"]
    assert approved["answers"] == ["LG CNS와 이큐브랩이 공동의장사다."]  # markers removed
    assert approved["relevant_doc_ids"] == ["alliance"] and approved["answerable"] is True
    rejected = by_id[f"feedback-{down}"]
    assert rejected["answers"] == [] and rejected["relevant_doc_ids"] == [] and rejected["answerable"] is True
    assert rejected["rating"] == -1 and rejected["comment"] == "감사 기관이 틀렸어요"
    assert rejected["cited_doc_ids"] == ["alliance"] and rejected["system_answer"].endswith("[1].")
    assert by_id[f"feedback-{refused_up}"]["answerable"] is False  # a refusal the reader approved
    questions = read_questions_jsonl(out)  # the standard reader accepts the file as it is
    assert [q.id for q in questions] == [f"feedback-{up}", f"feedback-{down}", f"feedback-{refused_up}"]


def test_export_can_keep_only_one_thumb(settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = FeedbackStore(settings.feedback.path)
    store.add(_verdict(1))
    down = store.add(_verdict(-1))
    out = tmp_path / "down.jsonl"
    assert eval_main(["feedback", "--export", str(out), "--rating", "down", "--json"], settings=settings) == 0
    assert json.loads(capsys.readouterr().out)["questions"] == 1
    assert [q.id for q in read_questions_jsonl(out)] == [f"feedback-{down}"]


def test_export_without_feedback_says_where_it_looked(
    settings: Settings, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert eval_main(["feedback", "--export", str(tmp_path / "x.jsonl")], settings=settings) == 2
    assert "RAG_FEEDBACK_PATH" in capsys.readouterr().err
