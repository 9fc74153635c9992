"""Language model backends behind one small interface.

- `local`: a GGUF through llama-cpp-python (ChatML; this model rambles with other formats). The
  prompt is built as tokens: the template's control tokens from the template alone, message text tokenised
  with special tokens off, so no text can open or close a turn.
- `openai`: any OpenAI-compatible chat endpoint (vLLM, llama.cpp server, Ollama, hosted APIs), through
  llama-index's OpenAILike (timeouts, retries, streaming); tiktoken counts the prompt so the reply's token cap
  fits the endpoint's context window. The local backend needs no such count: llama.cpp cuts the cap itself.
- `none`: no model; the answer layer quotes evidence instead (see rag/answer/answerer.py).

The test double, `ScriptedLLM`, lives in tests/doubles.py.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypedDict

from rag.config import Settings
from rag.errors import ConfigurationError, LLMError, ModelProvisioningError
from rag.offline import configure_offline_environment

if TYPE_CHECKING:
    import httpx

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
        """The reply piece by piece. The model writes on a thread of its own that holds the lock only while it
        generates: a consumer slow to take each piece (a browser, a network) never keeps the model from the next
        question, and closing this iterator stops the generation."""
        pieces: queue.SimpleQueue[str | LLMError | None] = queue.SimpleQueue()
        stop = threading.Event()
        threading.Thread(
            target=self._generate,
            args=(list(messages), max_tokens, temperature, pieces, stop),
            name="llama-generate",
            daemon=True,
        ).start()
        try:
            while (piece := pieces.get()) is not None:
                if isinstance(piece, LLMError):
                    raise piece
                yield piece
        finally:
            stop.set()

    def _generate(
        self,
        messages: list[Message],
        max_tokens: int,
        temperature: float,
        pieces: queue.SimpleQueue[str | LLMError | None],
        stop: threading.Event,
    ) -> None:
        try:
            with self._lock:
                prompt = chatml_tokens(messages, self._tokenize)
                chunks = self._model.create_completion(
                    prompt=prompt,
                    max_tokens=max_tokens,
                    temperature=temperature,
                    stop=[CHATML_END],
                    stream=True,
                )
                try:
                    for chunk in chunks:
                        if stop.is_set():
                            break
                        text = chunk["choices"][0]["text"]  # type: ignore[index]
                        if text:
                            pieces.put(text)
                finally:
                    chunks.close()  # type: ignore[union-attr]
        except (RuntimeError, ValueError) as exc:
            logger.error("the local LLM failed: %s", exc)
            error = LLMError(LLM_FAILED)
            error.__cause__ = exc
            pieces.put(error)
        finally:
            pieces.put(None)

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
    """Chat completions against an OpenAI-compatible server through llama-index's OpenAILike: the openai client
    under it streams the server-sent events, bounds each request by `timeout_s` and retries 429s, 5xx answers,
    timeouts and dropped connections `max_retries` times with exponential backoff."""

    def __init__(
        self,
        base_url: str,
        model: str,
        api_key: str | None,
        timeout_s: float,
        *,
        context_window: int = 8192,
        max_retries: int = 2,
        http_client: httpx.Client | None = None,
    ) -> None:
        """`http_client`: the httpx.Client to send the requests through (tests hand in a mock transport); it
        gets the response hook that tells an event stream from a proxy's page."""
        configure_offline_environment()  # tiktoken reads its vocabulary from llama-index-core, not the network
        # loaded on first use: only this backend talks HTTP, and llama-index's LLM classes take a second to import
        import openai
        import tiktoken
        from llama_index.llms.openai_like import OpenAILike

        self.name = f"openai:{model}"
        self.context_window = context_window
        client = http_client if http_client is not None else openai.DefaultHttpxClient()
        client.event_hooks["response"] = [*client.event_hooks["response"], _note_and_check_response]
        self._llm = OpenAILike(
            model=model,
            api_base=base_url,
            # given, never left empty: the openai client would take OPENAI_API_KEY from the environment and send
            # a key meant for another service to this endpoint
            api_key=api_key or "unused",
            is_chat_model=True,
            context_window=context_window,
            timeout=timeout_s,
            max_retries=max_retries,
            http_client=client,
        )
        # cl100k's vocabulary ships with llama-index-core (rag/offline.py points tiktoken at it); the endpoint's
        # model has its own tokenizer, so the count is an estimate and the budget keeps a margin
        self._encoding = tiktoken.get_encoding("cl100k_base")

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        # loaded on first use: only this backend needs them
        import openai
        from llama_index.core.llms import ChatMessage

        budget = self.reply_budget(messages, max_tokens)
        chat = [ChatMessage(role=message["role"], content=message["content"]) for message in messages]
        # the endpoint's own words (a stack trace, an HTML error page, a key echoed back) go to the log once;
        # users get a short generic message at every edge (HTTP error, event stream, chat page)
        replies = self._llm.stream_chat(chat, max_tokens=budget, temperature=temperature)
        opened: list[httpx.Response] = []
        try:
            streamed = False
            for chunk in _noting_responses(replies, opened):
                streamed = True
                if chunk.delta:
                    yield chunk.delta
        except openai.APIStatusError as exc:
            logger.error("LLM endpoint %s answered %d: %s", self.name, exc.status_code, _excerpt(exc.message))
            raise LLMError(LLM_FAILED) from exc
        except openai.APIConnectionError as exc:  # timeouts too
            logger.error("cannot reach the LLM endpoint %s: %s", self.name, exc.__cause__ or exc)
            raise LLMError(LLM_UNREACHABLE) from exc
        except (openai.APIError, ValueError) as exc:  # an error event, or an event that is no JSON, mid-stream
            logger.error("LLM endpoint %s broke off its reply: %s", self.name, _excerpt(str(exc)))
            raise LLMError(LLM_FAILED) from exc
        finally:
            # a caller that stops reading (a reader who left, a timeout) ends the request upstream at once: the
            # stream objects under llama-index hold themselves in reference cycles, so dropping them is not enough
            replies.close()
            for response in opened:
                response.close()
        if not streamed:
            logger.error("LLM endpoint %s sent no completion events", self.name)
            raise LLMError(LLM_FAILED)

    def count_prompt_tokens(self, messages: list[Message]) -> int:
        """The prompt's size as OpenAI's chat format counts it: a few tokens frame each message and prime the
        reply. Text is counted as plain text, `<|endoftext|>` in a document included (tiktoken refuses it by
        default)."""
        encode = self._encoding.encode
        framed = (3 + len(encode(m["role"], disallowed_special=())) for m in messages)
        content = (len(encode(m["content"], disallowed_special=())) for m in messages)
        return sum(framed) + sum(content) + 3

    def reply_budget(self, messages: list[Message], max_tokens: int) -> int:
        """`max_tokens`, cut so that prompt and reply fit the context window; a prompt that leaves no room for a
        reply is a failure the log explains (RAG_OPENAI_CONTEXT_WINDOW too small for the evidence)."""
        room = self.context_window - self.count_prompt_tokens(messages) - PROMPT_COUNT_MARGIN
        if room < MIN_REPLY_TOKENS:
            logger.error(
                "the prompt for %s (%d tokens by tiktoken) leaves no room for a reply in its context window of %d "
                "(RAG_OPENAI_CONTEXT_WINDOW)",
                self.name,
                self.count_prompt_tokens(messages),
                self.context_window,
            )
            raise LLMError(LLM_FAILED)
        return min(max_tokens, room)


# tiktoken's count of a prompt is an estimate of the endpoint's own tokenizer: keep this much of the window spare
PROMPT_COUNT_MARGIN = 64
MIN_REPLY_TOKENS = 16


class _ResponsesOpened(threading.local):
    """Where the response hook notes the responses opened by the `next()` running on this thread (None: none
    is being noted)."""

    into: list[httpx.Response] | None = None


_responses_opened = _ResponsesOpened()


def _noting_responses(replies: Iterator[Any], opened: list[httpx.Response]) -> Iterator[Any]:
    """`replies`, with each HTTP response they open noted in `opened`. Noted around each `next()` alone: between
    pieces this thread may run another caller's stream."""
    while True:
        _responses_opened.into = opened
        try:
            reply = next(replies)
        except StopIteration:
            return
        finally:
            _responses_opened.into = None
        yield reply


def _note_and_check_response(response: httpx.Response) -> None:
    """An httpx response hook: notes the response for the stream that opened it, and refuses a successful answer
    that is no event stream (a proxy's login or error page with status 200): a failure, not an empty reply, its
    first words for the log. Raised as the openai client's own status error, which it passes on without
    retrying."""
    import openai

    if _responses_opened.into is not None:
        _responses_opened.into.append(response)
    content_type = response.headers.get("content-type", "")
    if response.status_code < 400 and not content_type.startswith("text/event-stream"):
        response.read()
        raise openai.APIStatusError(
            f"a reply of type {content_type or 'unknown'} instead of an event stream: {_excerpt(response.text)}",
            response=response,
            body=None,
        )


def _excerpt(text: str, limit: int = 500) -> str:
    return " ".join(text.split())[:limit]


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
        return OpenAICompatibleLLM(
            openai.base_url,
            openai.model,
            key,
            openai.timeout_s,
            context_window=openai.context_window,
            max_retries=openai.max_retries,
        )
    raise ConfigurationError(f"unknown RAG_LLM_BACKEND {backend!r}; use local, openai or none")


def describe(llm: Any) -> str:
    return getattr(llm, "name", "none") if llm is not None else "none"
