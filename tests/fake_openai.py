"""A fake OpenAI-compatible LLM server: waits `delay_s` per request (as a GPU server's generation would), then
replies with a scripted answer, streamed or not. It records how many requests it has seen and how many were
still open at once, so tests can tell whether callers waited on it together."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse


class FakeOpenAIServer:
    def __init__(self, reply: str, delay_s: float, pieces: int = 4, piece_delay_s: float = 0.0) -> None:
        """`delay_s` before the first piece (or the whole reply), `piece_delay_s` between streamed pieces."""
        self.reply, self.delay_s, self.pieces, self.piece_delay_s = reply, delay_s, pieces, piece_delay_s
        self.requests = 0
        self.open = 0
        self.most_open = 0
        self.disconnected = 0  # streams whose client left before the end
        self.app = self._build()

    def _build(self) -> FastAPI:
        app = FastAPI()

        @app.post("/v1/chat/completions")
        async def chat_completions(request: Request) -> Any:
            body = await request.json()
            self.requests += 1
            if body.get("stream"):
                return StreamingResponse(self._stream(), media_type="text/event-stream")
            await self._generate()
            return {
                "id": "chatcmpl-fake",
                "object": "chat.completion",
                "created": int(time.time()),
                "model": body.get("model", "fake"),
                "choices": [
                    {"index": 0, "message": {"role": "assistant", "content": self.reply}, "finish_reason": "stop"}
                ],
            }

        return app

    async def _generate(self) -> None:
        self.open += 1
        self.most_open = max(self.most_open, self.open)
        try:
            await asyncio.sleep(self.delay_s)
        finally:
            self.open -= 1

    async def _stream(self) -> AsyncIterator[str]:
        finished = False
        try:
            await self._generate()
            size = max(1, len(self.reply) // self.pieces)
            for start in range(0, len(self.reply), size):
                if start:
                    await asyncio.sleep(self.piece_delay_s)
                delta = {"content": self.reply[start : start + size]}
                yield f"data: {json.dumps({'choices': [{'index': 0, 'delta': delta}]})}\n\n"
            yield "data: [DONE]\n\n"
            finished = True
        finally:
            if not finished:
                self.disconnected += 1
