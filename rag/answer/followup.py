"""Follow-up questions ("and who audits it?") rewritten with the conversation, so retrieval sees the subject."""

from __future__ import annotations

from rag.answer.llm import LLM, Message, complete
from rag.answer.prompts import REWRITE_SYSTEM, REWRITE_USER, quote_evidence, render
from rag.types import ChatTurn

HISTORY_TURNS = 6  # the latest turns that take part; older ones rarely hold the subject of a follow-up
TURN_CHARS = 500  # each turn is cut to this many characters in the prompt


def rewrite_follow_up(question: str, history: list[ChatTurn], llm: LLM | None) -> str:
    """The question as it reads without the conversation: with an LLM the model rewrites it; without one the
    previous user question is prepended, which keeps its subject words in the query. Without history, as is."""
    previous = [turn for turn in history if turn.content.strip()][-HISTORY_TURNS:]
    if not previous:
        return question
    if llm is None:
        last_user = next((t.content for t in reversed(previous) if t.role == "user"), "")
        return f"{last_user.strip()} {question}".strip()
    transcript = "\n".join(f"{turn.role}: {quote_evidence(turn.content)[:TURN_CHARS]}" for turn in previous)
    messages: list[Message] = [
        {"role": "system", "content": REWRITE_SYSTEM},
        {"role": "user", "content": render(REWRITE_USER, history=transcript, question=quote_evidence(question))},
    ]
    reply = complete(llm, messages, max_tokens=64).strip()
    return (reply.splitlines()[0].strip() if reply else "") or question
