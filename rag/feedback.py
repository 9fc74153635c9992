"""Readers' verdicts on answers (thumbs up or down, an optional comment), kept in one SQLite file.

The chat page writes them; `python -m eval feedback --export` turns them into test questions. Each row keeps
what the reader saw (question, answer, its citations, whether it was a refusal) and what produced it (model,
passages, filters), so a verdict can be replayed and judged later.

Every call opens its own connection and commits before returning: the page's handlers run on several
threads, and a verdict must survive a crash right after the click (WAL keeps readers and the writer apart).
"""

from __future__ import annotations

import datetime as dt
import json
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, Field

from rag.errors import ConfigurationError, InputError
from rag.types import Citation, without_surrogates

Rating = Literal[1, -1]
MAX_COMMENT_CHARS = 4000

_SCHEMA = """
CREATE TABLE IF NOT EXISTS feedback (
    id          INTEGER PRIMARY KEY AUTOINCREMENT,
    created_at  TEXT    NOT NULL,
    question    TEXT    NOT NULL,
    answer      TEXT    NOT NULL,
    citations   TEXT    NOT NULL,
    settings    TEXT    NOT NULL,
    rating      INTEGER NOT NULL CHECK (rating IN (1, -1)),
    comment     TEXT    NOT NULL DEFAULT '',
    refused     INTEGER NOT NULL
)
"""


class Feedback(BaseModel):
    """One reader's verdict on one answer."""

    id: int | None = Field(None, description="Row id; None until stored.")
    created_at: str = Field(description="UTC time of the verdict, ISO 8601.")
    question: str
    answer: str
    citations: list[Citation] = Field(default_factory=list)
    settings: dict[str, Any] = Field(default_factory=dict, description="Model, passages, filters, LLM backend.")
    rating: Rating = Field(description="+1 (thumbs up) or -1 (thumbs down).")
    comment: str = ""
    refused: bool


def utc_now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")


class FeedbackStore:
    """The feedback table in the SQLite file at `path` (created with its folder on first write)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def add(self, feedback: Feedback) -> int:
        """Store a verdict; returns its id (for a later change of mind or a comment)."""
        with self._connection() as connection:
            cursor = connection.execute(
                "INSERT INTO feedback (created_at, question, answer, citations, settings, rating, comment, refused) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    feedback.created_at,
                    without_surrogates(feedback.question),
                    without_surrogates(feedback.answer),
                    json.dumps([c.model_dump(mode="json") for c in feedback.citations], ensure_ascii=False),
                    json.dumps(feedback.settings, ensure_ascii=False, default=str),
                    feedback.rating,
                    _checked_comment(feedback.comment),
                    int(feedback.refused),
                ),
            )
            return int(cursor.lastrowid or 0)

    def revise(self, feedback_id: int, *, rating: Rating | None = None, comment: str | None = None) -> None:
        """Change a stored verdict's rating or comment (a reader who clicks the other thumb, or adds words)."""
        changes: dict[str, Any] = {}
        if rating is not None:
            changes["rating"] = rating
        if comment is not None:
            changes["comment"] = _checked_comment(comment)
        if not changes:
            return
        assignments = ", ".join(f"{column} = ?" for column in changes)
        with self._connection() as connection:
            cursor = connection.execute(
                f"UPDATE feedback SET {assignments} WHERE id = ?", (*changes.values(), feedback_id)
            )
            if cursor.rowcount == 0:
                raise InputError(f"feedback {feedback_id} does not exist")

    def entries(self) -> Iterator[Feedback]:
        """Every stored verdict, oldest first."""
        if not self.path.exists():
            return
        with self._connection() as connection:
            rows = connection.execute(
                "SELECT id, created_at, question, answer, citations, settings, rating, comment, refused "
                "FROM feedback ORDER BY id"
            ).fetchall()
        for row in rows:
            yield Feedback(
                id=row[0],
                created_at=row[1],
                question=row[2],
                answer=row[3],
                citations=[Citation(**c) for c in json.loads(row[4])],
                settings=json.loads(row[5]),
                rating=row[6],
                comment=row[7],
                refused=bool(row[8]),
            )

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            connection = sqlite3.connect(self.path, timeout=30)
        except (OSError, sqlite3.Error) as exc:
            raise ConfigurationError(
                f"RAG_FEEDBACK_PATH {self.path} cannot be opened as an SQLite file ({exc}); point it at a "
                "writable location"
            ) from exc
        with closing(connection):
            try:
                connection.execute("PRAGMA journal_mode=WAL")
                connection.execute(_SCHEMA)
            except sqlite3.DatabaseError as exc:
                raise ConfigurationError(
                    f"RAG_FEEDBACK_PATH {self.path} is not a feedback database ({exc}); point it at a new file"
                ) from exc
            with connection:  # commits on success, rolls back on error
                yield connection


def _checked_comment(comment: str) -> str:
    comment = without_surrogates(comment.strip())
    if len(comment) > MAX_COMMENT_CHARS:
        raise InputError(f"comment: at most {MAX_COMMENT_CHARS} characters, got {len(comment)}")
    return comment
