"""Readers' verdicts from the chat page as test questions (`python -m eval feedback --export FILE`).

A thumbs-up says the answer (or the refusal) was right, so it becomes a question with that answer, the
cited documents as relevant and `answerable` as the page judged it. A thumbs-down says only that something
was wrong: its `answers` and `relevant_doc_ids` are left empty and `answerable` is true (the reader wanted
an answer), for an evaluator to fill in or drop after review. Every record keeps `rating`, `comment`,
`created_at` and what the page said (`system_answer`, `system_refused`, `cited_doc_ids`, `settings`); the
question format ignores extra keys.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from typing import Any, Literal

from rag.feedback import Feedback

RatingFilter = Literal["up", "down", "all"]
_MARKER = re.compile(r"\s*\[\d+\]")


def feedback_questions(entries: Iterable[Feedback], rating: RatingFilter = "all") -> Iterator[dict[str, Any]]:
    """One question record per verdict (oldest first), optionally only thumbs up or only thumbs down."""
    for entry in entries:
        if (rating == "up" and entry.rating != 1) or (rating == "down" and entry.rating != -1):
            continue
        yield feedback_question(entry)


def feedback_question(entry: Feedback) -> dict[str, Any]:
    cited = list(dict.fromkeys(citation.doc_id for citation in entry.citations))
    approved = entry.rating == 1
    answered = approved and not entry.refused
    return {
        "id": f"feedback-{entry.id}",
        "question": entry.question,
        "answers": [_MARKER.sub("", entry.answer).strip()] if answered else [],
        "relevant_doc_ids": cited if answered else [],
        "answerable": not entry.refused if approved else True,
        "rating": entry.rating,
        "comment": entry.comment,
        "created_at": entry.created_at,
        "system_answer": entry.answer,
        "system_refused": entry.refused,
        "cited_doc_ids": cited,
        "settings": entry.settings,
    }
