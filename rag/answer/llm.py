"""Language model backends behind one small interface.

- `local`: a GGUF through llama-cpp-python (ChatML; the model in MODELS.md rambles with other formats). The
  prompt is built as tokens: the template's control tokens from the template alone, message text tokenised
  with special tokens off, so no text can open or close a turn.
- `openai`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, hosted APIs), over httpx.
- `none`: no model; the answer layer quotes evidence instead (see rag/answer/answerer.py).

The test double, `ScriptedLLM`, lives in tests/doubles.py.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, Protocol, TypedDict

from rag.config import Settings
from rag.errors import ConfigurationError, LLMError, ModelProvisioningError

logger = logging.getLogger(__name__)

# what users see when the model fails; the details are in the log
LLM_FAILED = "the language model service failed; try again later"
LLM_UNREACHABLE = "the language model service cannot be reached; try again later"


class Message(TypedDict):
    role: str
    content: str


class LLM(Protocol):
    name: str

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        """Yield the reply piece by piece."""
        ...


def complete(llm: LLM, messages: list[Message], *, max_tokens: int, temperature: float = 0.0) -> str:
    return "".join(llm.stream(messages, max_tokens=max_tokens, temperature=temperature))


class LlamaCppLLM:
    """A local GGUF model on the CPU. Loading takes a few seconds, so it happens once per process."""

    def __init__(self, model_path: Path, *, context_window: int, threads: int) -> None:
        if not model_path.exists():
            raise ModelProvisioningError(
                f"local LLM file {model_path} is missing; run `python -m rag models --llm` (`make models-llm`) "
                "or set RAG_LLM_BACKEND=none (extractive answers) or openai"
            )
        try:
            # loaded on first use: only this backend needs it (an optional extra for `local`)
            from llama_cpp import Llama
        except ImportError as exc:
            raise ModelProvisioningError(
                "the local LLM backend needs llama-cpp-python: `pip install llama-cpp-python` "
                "(or `make setup`, which builds it)"
            ) from exc
        self.name = f"local:{model_path.name}"
        self._model = Llama(
            model_path=str(model_path),
            n_ctx=context_window,
            n_threads=threads,
            n_batch=512,
            verbose=False,
        )
        # llama.cpp keeps one evaluation state; two requests at once would corrupt it
        self._lock = threading.Lock()

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        with self._lock:
            try:
                prompt = chatml_tokens(messages, self._tokenize)
                chunks = self._model.create_completion(
                    prompt=prompt,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=[CHATML_END],
                    stream=True,
                )
                for chunk in chunks:
                    text = chunk["choices"][0]["text"]  # type: ignore[index]
                    if text:
                        yield text
            except (RuntimeError, ValueError) as exc:
                logger.error("the local LLM failed: %s", exc)
                raise LLMError(LLM_FAILED) from exc

    def _tokenize(self, text: str, special: bool) -> list[int]:
        return self._model.tokenize(text.encode("utf-8"), add_bos=False, special=special)


CHATML_START, CHATML_END = "<|im_start|>", "<|im_end|>"


def chatml_tokens(messages: list[Message], tokenize: Callable[[str, bool], list[int]]) -> list[int]:
    """The ChatML prompt llama-cpp-python's `chatml` format writes, as tokens. Its string form would be
    tokenised with special tokens on, so a document's `<|im_end|><|im_start|>system` became real turn
    boundaries: here only the template's own parts are tokenised with specials, the message text without."""
    tokens: list[int] = []
    for message in messages:
        tokens += tokenize(f"{CHATML_START}{message['role']}\n", True)
        tokens += tokenize(message["content"], False)
        tokens += tokenize(f"{CHATML_END}\n", True)
    return tokens + tokenize(f"{CHATML_START}assistant\n", True)


class OpenAICompatibleLLM:
    """Chat completions against an OpenAI-compatible server, streamed as server-sent events."""

    def __init__(self, base_url: str, model: str, api_key: str | None, timeout_s: float) -> None:
        # loaded on first use: only this backend talks HTTP
        import httpx

        self.name = f"openai:{model}"
        self._model = model
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(base_url=base_url.rstrip("/"), headers=headers, timeout=timeout_s)

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        # loaded on first use: only this backend talks HTTP
        import httpx

        body = {
            "model": self._model,
            "messages": messages,
            "max_tokens": max_tokens,
            "temperature": temperature,
            "stream": True,
        }
        # the endpoint's own words (a stack trace, an HTML error page, a key echoed back) go to the log once;
        # users get a short generic message at every edge (HTTP error, event stream, chat page)
        try:
            with self._client.stream("POST", "/chat/completions", json=body) as response:
                if response.status_code >= 400:
                    response.read()
                    logger.error(
                        "LLM endpoint %s answered %d: %s", self.name, response.status_code, _excerpt(response.text)
                    )
                    raise LLMError(LLM_FAILED)
                first_lines: list[str] = []
                streamed = False
                for content in _sse_content(_remembering(response.iter_lines(), first_lines)):
                    streamed = True
                    if content:
                        yield content
                if not streamed:  # a 200 that is no event stream (a proxy's HTML page): a failure, not a refusal
                    logger.error(
                        "LLM endpoint %s sent no completion events: %s", self.name, _excerpt("\n".join(first_lines))
                    )
                    raise LLMError(LLM_FAILED)
        except httpx.HTTPError as exc:
            logger.error("cannot reach the LLM endpoint %s: %s", self.name, exc)
            raise LLMError(LLM_UNREACHABLE) from exc


def _excerpt(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


def _remembering(lines: Iterator[str], kept: list[str], count: int = 20) -> Iterator[str]:
    """The lines, keeping the first few for the log should they turn out not to be an event stream."""
    for line in lines:
        if len(kept) < count:
            kept.append(line)
        yield line


def _sse_content(lines: Iterator[str]) -> Iterator[str | None]:
    """The content pieces of a completion's event stream, with None for each event that carries none (a
    role announcement, the final event), so the caller can tell an empty reply from no stream at all."""
    for line in lines:
        if not line.startswith("data:"):
            continue
        payload = line[5:].strip()
        if payload == "[DONE]":
            yield None
            return
        try:
            event = json.loads(payload)
            content = event["choices"][0].get("delta", {}).get("content")
        except (ValueError, KeyError, IndexError, TypeError, AttributeError):
            continue
        yield content if isinstance(content, str) and content else None


def create_llm(settings: Settings) -> LLM | None:
    """The configured backend, or None for extractive answers."""
    backend = settings.llm.backend
    if backend == "none":
        return None
    if backend == "local":
        return LlamaCppLLM(
            settings.llm_model_path(), context_window=settings.answer.context_window, threads=settings.models.threads
        )
    if backend == "openai":
        openai = settings.openai
        if not (openai.base_url and openai.model):
            raise ConfigurationError("RAG_LLM_BACKEND=openai needs RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL")
        key = openai.api_key.get_secret_value() if openai.api_key else None
        return OpenAICompatibleLLM(openai.base_url, openai.model, key, openai.timeout_s)
    raise ConfigurationError(f"unknown RAG_LLM_BACKEND {backend!r}; use local, openai or none")


def describe(llm: Any) -> str:
    return getattr(llm, "name", "none") if llm is not None else "none"
