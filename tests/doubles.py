"""Test doubles for the library's service interfaces (the fake embedder is a supported setting and ships in
rag/embed/fake.py)."""

from __future__ import annotations

from collections.abc import Callable, Iterator

from rag.answer.llm import Message


class ScriptedLLM:
    """An LLM that answers with `reply(messages)` (or a fixed string), in small pieces like a real stream."""

    def __init__(self, reply: str | Callable[[list[Message]], str]) -> None:
        self.name = "scripted"
        self._reply = reply
        self.calls: list[list[Message]] = []

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        self.calls.append(messages)
        text = self._reply(messages) if callable(self._reply) else self._reply
        for start in range(0, len(text), 7):
            yield text[start : start + 7]
