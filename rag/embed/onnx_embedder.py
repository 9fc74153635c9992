"""Dense embeddings through ONNX Runtime, from the export that rag/provision/onnx_export.py writes into a model folder.

Same contract as SentenceTransformerEmbedder (prompts from the folder, unit vectors, tokens counted in the
model's tokenizer); only the engine differs. ONNX Runtime fixes the thread count per session, so small calls
(a question, a few sentences) run on a session with `query_threads` and large ones (ingest batches) on one
with `threads`, created on first use; with the default settings the two counts are equal and one session
(one copy of the weights) serves both. Its workers do not spin, so two threads for a question cost little
when the other core is busy (54 ms vs 61 ms on one thread, measured).
"""

from __future__ import annotations

import json
import logging
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed.base import (
    SMALL_CALL_TEXTS,
    Matrix,
    PrefixedEmbedder,
    TokenCounter,
    folder_token_counter,
    model_identity,
    prompt_prefixes,
)
from rag.embed.engine_record import ONNX_FP32, ONNX_INT8
from rag.embed.folder import load_tokenizer, read_max_tokens, read_prompts
from rag.errors import ModelProvisioningError

logger = logging.getLogger(__name__)

# Where rag/provision/onnx_export.py writes the export inside a model folder, and what its marker must say.
EXPORT_DIR = "onnx"
MODEL_FILE = "model_q8.onnx"
MARKER_FILE = "export.json"
EXPORT_VERSION = "st-onnx-matmulnbits8-b128-1"  # bump when the graph or the quantisation changes
INPUT_NAMES = ("input_ids", "attention_mask")


@dataclass(frozen=True)
class OnnxVariant:
    """One ONNX export of a model folder: where it lives and which exporter version made it."""

    engine: str  # its RAG_MODELS_EMBEDDING_BACKEND name
    folder: str
    model_file: str
    version: str


INT8 = OnnxVariant(ONNX_INT8, EXPORT_DIR, MODEL_FILE, EXPORT_VERSION)
# the graph before quantisation, kept beside the 8-bit one: on CPUs without int8 dot products (VNNI) ONNX Runtime's
# 8-bit kernels are slow, and full precision may be the fastest engine there (docs/embedding-engines.md)
FP32 = OnnxVariant(ONNX_FP32, "onnx-fp32", "model.onnx", "st-onnx-fp32-1")
VARIANTS = {variant.engine: variant for variant in (INT8, FP32)}


def export_dir(model_folder: Path, variant: OnnxVariant = INT8) -> Path:
    return model_folder / variant.folder


def is_exported(model_folder: Path, variant: OnnxVariant = INT8) -> bool:
    """Cheap check: the graph and its weights are present and the marker names this exporter version."""
    target = export_dir(model_folder, variant)
    marker = read_marker(model_folder, variant)
    return (
        marker is not None
        and marker.get("version") == variant.version
        and (target / variant.model_file).is_file()
        and (target / f"{variant.model_file}.data").is_file()
    )


def read_marker(model_folder: Path, variant: OnnxVariant = INT8) -> dict[str, Any] | None:
    try:
        data = json.loads((export_dir(model_folder, variant) / MARKER_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return data if isinstance(data, dict) else None


class OnnxSession:
    """One ONNX Runtime session over a sentence-embedding graph (ids, mask) → unit vectors, with the folder's
    tokenizer: texts in, vectors out. Texts longer than `max_tokens` are cut there, as sentence-transformers
    does."""

    def __init__(self, model_folder: Path, onnx_file: Path, *, threads: int, max_tokens: int | None = None) -> None:
        import onnxruntime  # loaded on first use: only this backend needs it

        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        # idle workers must not spin: on 2 cores they would take the core a concurrent ingest or LLM needs
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        try:
            self._session = onnxruntime.InferenceSession(str(onnx_file), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own untyped errors for unreadable graphs
            raise ModelProvisioningError(
                f"cannot load the ONNX export {onnx_file} ({exc}); delete {onnx_file.parent} and run "
                "`python -m rag models` to export it again, or set RAG_MODELS_EMBEDDING_BACKEND=torch"
            ) from exc
        self._tokenizer = load_tokenizer(model_folder)
        self.max_tokens = max_tokens or read_max_tokens(model_folder)
        self._tokenizer.enable_truncation(self.max_tokens)
        self._tokenizer.no_padding()

    def run(self, texts: list[str]) -> Matrix:
        encodings = self._tokenizer.encode_batch(texts)
        width = max(len(encoding.ids) for encoding in encodings)
        ids = np.zeros((len(encodings), width), dtype=np.int64)
        mask = np.zeros((len(encodings), width), dtype=np.int64)
        for row, encoding in enumerate(encodings):
            ids[row, : len(encoding.ids)] = encoding.ids
            mask[row, : len(encoding.ids)] = 1
        (vectors,) = self._session.run(None, dict(zip(INPUT_NAMES, (ids, mask), strict=True)))
        return np.asarray(vectors, dtype=np.float32)


class OnnxEmbedder(PrefixedEmbedder):
    """A sentence-transformers folder holding an ONNX export (`python -m rag models` writes them for
    EmbeddingGemma: 8-bit weights, and full precision). Prefixes left as None are the folder's own prompts, as for
    SentenceTransformerEmbedder."""

    def __init__(
        self,
        model_path: Path | str,
        *,
        query_prefix: str | None = None,
        passage_prefix: str | None = None,
        batch_size: int = 32,
        threads: int | None = None,
        query_threads: int | None = 1,
        variant: OnnxVariant = INT8,
    ) -> None:
        self._folder = Path(model_path)
        if not is_exported(self._folder, variant):
            raise ModelProvisioningError(
                f"{self._folder} has no ONNX export for RAG_MODELS_EMBEDDING_BACKEND={variant.engine} (in "
                f"{export_dir(self._folder, variant)}); run `python -m rag models --embedding {self._folder.name}` "
                "(`make models-embeddinggemma`) to write it, or set RAG_MODELS_EMBEDDING_BACKEND=torch"
            )
        self.engine: str = variant.engine
        self._onnx_file = export_dir(self._folder, variant) / variant.model_file
        self.batch_size = batch_size
        self.threads = threads or 1
        self.query_threads = query_threads or self.threads
        self.query_prefix, self.passage_prefix = prompt_prefixes(
            read_prompts(self._folder), query_prefix, passage_prefix
        )
        self.max_tokens = read_max_tokens(self._folder)
        self._sessions: dict[int, OnnxSession] = {}
        self._sessions_lock = threading.Lock()
        query_session = self._session(self.query_threads)  # loaded now, so a broken export fails at start-up
        self._counter = load_tokenizer(self._folder)  # untruncated: counts are for chunk budgets
        dimension = (read_marker(self._folder, variant) or {}).get("dimension")
        self.dimension = int(dimension) if isinstance(dimension, int) else int(query_session.run(["x"]).shape[1])
        # the weights decide the vectors; the export reproduces them (cosine ≥ 0.999), so collections
        # embedded through torch and through ONNX are the same model's
        self.model_id = model_identity(self._folder)

    def count_tokens(self, text: str) -> int:
        return len(self._counter.encode(self.passage_prefix + text).ids)

    def token_counter(self) -> TokenCounter | None:
        return folder_token_counter(self._folder, self.passage_prefix)

    def _encode(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        session = self._session(self.query_threads if len(texts) <= SMALL_CALL_TEXTS else self.threads)
        # batches of similar length waste little on padding (sentence-transformers does the same)
        order = sorted(range(len(texts)), key=lambda i: len(texts[i]))
        vectors = np.empty((len(texts), self.dimension), dtype=np.float32)
        for start in range(0, len(order), self.batch_size):
            rows = order[start : start + self.batch_size]
            vectors[rows] = session.run([texts[i] for i in rows])
        return vectors

    def _session(self, threads: int) -> OnnxSession:
        with self._sessions_lock:
            if threads not in self._sessions:
                self._sessions[threads] = OnnxSession(
                    self._folder, self._onnx_file, threads=threads, max_tokens=self.max_tokens
                )
            return self._sessions[threads]
