"""Dense embeddings from an OpenAI-compatible `/v1/embeddings` server (text-embeddings-inference, vLLM, Infinity
on a GPU box): RAG_MODELS_EMBEDDING_BACKEND=openai.

The server runs one of the project's models; the local model folder (`python -m rag models` provisions it; its
weights are never loaded here) says which: its prompts are added here exactly as the local backends add them
(e5's `query: ` / `passage: `, EmbeddingGemma's task prompts), its tokenizer counts chunk tokens and cuts texts
at its sequence limit, and its identity is the collection's model id. So vectors from the server and from the
local engines mix in one collection, and a server running another model is refused: the reply must name the
configured served model and have the model's vector size.

Client: the `openai` package, the protocol's reference client, whose retries (429, 5xx, timeouts, connection
errors; exponential backoff with jitter, or the server's Retry-After) and timeouts are tested where it is kept.
Batches of `embedding_batch_size` texts go out on a thread pool; a semaphore bounds the requests in flight
across all callers (ingest batches and questions alike) to `embedding_server_concurrency`.
"""

from __future__ import annotations

import logging
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed.base import (
    Matrix,
    PrefixedEmbedder,
    TokenCounter,
    folder_token_counter,
    model_identity,
    prompt_prefixes,
)
from rag.embed.folder import load_tokenizer, read_dimension, read_max_tokens, read_prompts
from rag.errors import ConfigurationError, EmbeddingServerError, ModelProvisioningError

logger = logging.getLogger(__name__)

PROBE_TEXT = "dimension check"
# what users see when the server fails; the details are in the log
EMBEDDING_FAILED = "the embedding service failed; try again later"
EMBEDDING_UNREACHABLE = "the embedding service cannot be reached; try again later"


class OpenAIEmbedder(PrefixedEmbedder):
    """The model of a local folder, computed by an OpenAI-compatible embedding server."""

    engine = "openai"

    def __init__(
        self,
        model_folder: Path | str,
        *,
        base_url: str,
        served_model: str,
        api_key: str | None = None,
        batch_size: int = 32,
        concurrency: int = 4,
        timeout_s: float = 60.0,
        retries: int = 4,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
    ) -> None:
        import openai  # loaded on first use: only this backend talks to an embedding server

        folder = Path(model_folder)
        if not (folder / "tokenizer.json").is_file():
            raise ModelProvisioningError(
                f"the openai embedding backend needs the model folder {folder} (its tokenizer counts chunk tokens, "
                "its prompts prefix the texts, its identity names the collection's model); provision it with "
                f"`python -m rag models --embedding {folder.name}`, or set RAG_MODELS_EMBEDDING to a provisioned one"
            )
        self.query_prefix, self.passage_prefix = prompt_prefixes(read_prompts(folder), query_prefix, passage_prefix)
        self.max_tokens = read_max_tokens(folder)
        self._folder = folder
        self._tokenizer = load_tokenizer(folder)  # untruncated: counts are for chunk budgets
        dimension = read_dimension(folder)
        if dimension is None:
            raise ModelProvisioningError(f"{folder} does not say its vector size (modules.json, 1_Pooling)")
        self.dimension = dimension
        self.model_id = model_identity(folder)
        self.batch_size = batch_size
        self.concurrency = concurrency
        self.served_model = served_model
        self._url = base_url.rstrip("/")
        self._errors: tuple[type[Exception], type[Exception]] = (openai.APIStatusError, openai.APIConnectionError)
        # the package requires a key; servers without authentication ignore the placeholder
        self._client = openai.OpenAI(
            base_url=self._url, api_key=api_key or "unused", timeout=timeout_s, max_retries=retries
        )
        self._retries = retries
        self._in_flight = threading.BoundedSemaphore(concurrency)
        self._request([self.query_prefix + PROBE_TEXT])  # a wrong model or vector size fails at start-up

    def count_tokens(self, text: str) -> int:
        return len(self._tokenizer.encode(self.passage_prefix + text).ids)

    def token_counter(self) -> TokenCounter | None:
        return folder_token_counter(self._folder, self.passage_prefix)

    def _encode(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        inputs = [self._within_limit(text) for text in texts]
        batches = [inputs[start : start + self.batch_size] for start in range(0, len(inputs), self.batch_size)]
        if len(batches) == 1:
            return self._request(batches[0])
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(batches))) as pool:
            return np.vstack(list(pool.map(self._request, batches)))

    def _within_limit(self, text: str) -> str:
        """The text cut where the local engines cut it (the model's sequence limit, special tokens included), so
        the server embeds what they would and never refuses a long input."""
        encoding = self._tokenizer.encode(text)
        if len(encoding.ids) <= self.max_tokens:
            return text
        # the last token kept leaves room for the closing special token
        return text[: encoding.offsets[self.max_tokens - 2][1]]

    def _request(self, batch: list[str]) -> Matrix:
        with self._in_flight:
            try:
                response = self._client.embeddings.create(model=self.served_model, input=batch, encoding_format="float")
            except self._errors as exc:
                # the server's own words (an error page, a key echoed back) go to the log, users get a short message
                reachable = getattr(exc, "status_code", None) is not None
                logger.error("%s", self._failure(exc))
                raise EmbeddingServerError(EMBEDDING_FAILED if reachable else EMBEDDING_UNREACHABLE) from exc
        self._check_model(str(response.model))
        rows = sorted(response.data, key=lambda item: item.index)
        vectors = np.asarray([row.embedding for row in rows], dtype=np.float32)
        if vectors.ndim != 2 or vectors.shape[0] != len(batch):
            raise EmbeddingServerError(
                f"the embedding server at {self._url} returned {len(rows)} vectors for {len(batch)} texts"
            )
        self._check_dimension(vectors.shape[1])
        norms = np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors / np.where(norms > 0, norms, 1.0)  # servers normalise by default; not every one does

    def _failure(self, exc: Any) -> str:
        status = getattr(exc, "status_code", None)
        if status is None:
            return f"cannot reach the embedding server at {self._url} ({exc}; {self._retries} retries)"
        body = " ".join(str(getattr(exc, "body", None) or exc).split())[:500]
        return f"the embedding server at {self._url} answered {status} ({self._retries} retries): {body}"

    def _check_model(self, reported: str) -> None:
        if reported != self.served_model:
            raise ConfigurationError(
                f"the embedding server at {self._url} serves {reported!r}, not {self.served_model!r} "
                f"(RAG_MODELS_EMBEDDING_SERVER_MODEL): its vectors must not mix with those of {self.model_id}. Point "
                "RAG_MODELS_EMBEDDING_SERVER_URL at a server running that model, or set RAG_MODELS_EMBEDDING and "
                "RAG_MODELS_EMBEDDING_SERVER_MODEL to the model it runs"
            )

    def _check_dimension(self, size: int) -> None:
        if size != self.dimension:
            raise ConfigurationError(
                f"the embedding server at {self._url} returns {size}-dimensional vectors, but the model "
                f"RAG_MODELS_EMBEDDING names ({self.model_id}) has {self.dimension}: it runs another model"
            )
