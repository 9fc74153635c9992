"""OpenAI-compatible `POST /v1/chat/completions` and `GET /v1/models`, so tools built for OpenAI's API (its
client libraries, chat front-ends) can ask this service unchanged.

The last user message is the question and the messages before it the history; system messages are ignored
(they are the caller's instructions to a model, and nothing a caller sends may steer the answer's prompt).
`choices[0].message.content` is the answer with its `[n]` markers, and the message carries the citations and
`refused` beside it; a streamed reply carries them on its final chunk's `delta`.

A streamed reply's text is the checked answer, sent once the answer is complete: the model's raw tokens can
cite numbers that validation renumbers or drops, and a client that joins the pieces would keep those. The
stream starts at once (the role) and sends keep-alive comments while the answer is being written; `/v1/answer`
with `"stream": true` streams the raw tokens for callers that want them.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Literal

from fastapi import APIRouter, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, model_validator

from api.guard import error_body
from api.schemas import MAX_HISTORY_TURNS, MAX_QUESTION_CHARS, require_words
from api.workers import KEEPALIVE, CancelToken, Workers, close_iterator, collect
from rag.errors import RagError
from rag.service import RagService
from rag.types import Answer, ChatTurn, Citation, SearchFilters

MODEL_ID = "policy-news-rag"
MAX_TURN_CHARS = 20_000  # a longer history message is cut (ChatTurn's limit); only its start helps a rewrite


class ContentPart(BaseModel):
    model_config = ConfigDict(extra="ignore")

    type: str = "text"
    text: str | None = None


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="ignore")

    role: Literal["system", "developer", "user", "assistant", "tool", "function"]
    content: str | list[ContentPart] | None = None

    def text(self) -> str:
        if isinstance(self.content, list):
            return " ".join(part.text for part in self.content if part.type == "text" and part.text)
        return self.content or ""


class ChatCompletionRequest(BaseModel):
    """OpenAI's request body; sampling fields (temperature, max_tokens, ...) are accepted and ignored."""

    model_config = ConfigDict(extra="ignore")

    model: str | None = Field(None, max_length=256, description=f"Any name; the answer comes from `{MODEL_ID}`.")
    messages: list[ChatMessage] = Field(min_length=1, max_length=1000)
    stream: bool = Field(False, strict=True)
    top_k: int | None = Field(None, ge=1, le=100, strict=True, description="Extension: hits to answer from.")
    filters: SearchFilters | None = Field(None, description="Extension: as in /v1/answer.")

    @model_validator(mode="after")
    def _asks_something(self) -> ChatCompletionRequest:
        question = self.question()
        if len(question) > MAX_QUESTION_CHARS:
            raise ValueError(f"the last user message is longer than {MAX_QUESTION_CHARS} characters")
        require_words(question, "the last user message")
        return self

    def question(self) -> str:
        last = self._last_user_index()
        if last is None:
            raise ValueError("no message with role 'user'; the last user message is the question")
        return self.messages[last].text()

    def history(self) -> list[ChatTurn]:
        last = self._last_user_index() or 0
        turns = [
            ChatTurn(role=message.role, content=message.text()[:MAX_TURN_CHARS])
            for message in self.messages[:last]
            if message.role in ("user", "assistant") and message.text().strip()
        ]
        return turns[-MAX_HISTORY_TURNS:]

    def _last_user_index(self) -> int | None:
        return next((i for i in range(len(self.messages) - 1, -1, -1) if self.messages[i].role == "user"), None)


class CompletionMessage(BaseModel):
    role: Literal["assistant"] = "assistant"
    content: str
    refused: bool
    citations: list[Citation]


class CompletionChoice(BaseModel):
    index: int = 0
    message: CompletionMessage
    finish_reason: Literal["stop"] = "stop"


class ChatCompletion(BaseModel):
    id: str
    object: Literal["chat.completion"] = "chat.completion"
    created: int
    model: str = MODEL_ID
    choices: list[CompletionChoice]


def chat_completions_router(service: RagService, workers: Workers, on_answer: Callable[[Answer], None]) -> APIRouter:
    router = APIRouter(tags=["OpenAI-compatible"])

    def answer_events(request: ChatCompletionRequest) -> Iterator[Any]:
        return service.answer_stream(
            request.question(), top_k=request.top_k, filters=request.filters, history=request.history()
        )

    @router.post("/v1/chat/completions", response_model=ChatCompletion)
    async def chat_completions(body: ChatCompletionRequest, request: Request) -> Any:
        if body.stream:
            events = await workers.stream(lambda token: _answers_only(answer_events(body), on_answer))
            return StreamingResponse(_chunks(events), media_type="text/event-stream")

        def work(token: CancelToken) -> Answer:
            answer: Answer = collect(answer_events(body), token)
            on_answer(answer)
            return answer

        answer = await workers.run(request, work)
        message = CompletionMessage(content=answer.answer, refused=answer.refused, citations=answer.citations)
        return ChatCompletion(
            id=_completion_id(), created=int(time.time()), choices=[CompletionChoice(message=message)]
        )

    @router.get("/v1/models")
    async def models() -> dict[str, Any]:
        return {
            "object": "list",
            "data": [{"id": MODEL_ID, "object": "model", "created": 0, "owned_by": "policy-news-rag"}],
        }

    return router


def _answers_only(events: Iterator[Any], on_answer: Callable[[Answer], None]) -> Iterator[Answer]:
    """The final Answer of a stream; the raw tokens before it are dropped (see the module docstring)."""
    try:
        for event in events:
            if isinstance(event, Answer):
                on_answer(event)
                yield event
    finally:
        close_iterator(events)


async def _chunks(events: AsyncIterator[Any]) -> AsyncIterator[str]:
    completion_id, created = _completion_id(), int(time.time())

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> str:
        body = {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": created,
            "model": MODEL_ID,
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}],
        }
        return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"

    yield chunk({"role": "assistant", "content": ""})
    try:
        async for event in events:
            if event is KEEPALIVE:
                yield ": keepalive\n\n"
            elif isinstance(event, Answer):
                yield chunk({"content": event.answer})
                citations = [citation.model_dump(mode="json") for citation in event.citations]
                yield chunk({"citations": citations, "refused": event.refused}, finish_reason="stop")
    except RagError as exc:
        # the status line has gone out; OpenAI's clients raise on an `error` event
        yield f"data: {json.dumps(error_body(exc.code, exc.message), ensure_ascii=False)}\n\n"
        return
    yield "data: [DONE]\n\n"


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"
