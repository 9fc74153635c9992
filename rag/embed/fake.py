"""A deterministic embedder without a model: RAG_MODELS_EMBEDDING=fake (smoke runs) and the fast tests.

It ships in the library, not only in tests/, because `fake` is a documented setting: a deployment can be
started and exercised end to end on a machine without model files.
"""

from __future__ import annotations

import hashlib
import re

import numpy as np

from rag.embed.base import Matrix, TokenCounter


class FakeEmbedder:
    """Deterministic, dependency-free embedder for fast tests.

    Hashes character trigrams (and words) into a fixed number of buckets, so texts that share wording get
    similar vectors: retrieval tests can assert real outcomes in milliseconds.
    """

    def __init__(self, dimension: int = 64) -> None:
        self.dimension = dimension
        self.model_id = f"fake-{dimension}"

    def embed_query(self, text: str) -> np.ndarray:
        return self._vector(text)

    def embed_queries(self, texts: list[str]) -> Matrix:
        return self.embed_documents(texts)

    def embed_documents(self, texts: list[str]) -> Matrix:
        if not texts:
            return np.zeros((0, self.dimension), dtype=np.float32)
        return np.stack([self._vector(t) for t in texts])

    def count_tokens(self, text: str) -> int:
        return len(re.findall(r"\w+|[^\w\s]", text)) + 2

    def token_counter(self) -> TokenCounter | None:
        return self.count_tokens

    def _vector(self, text: str) -> np.ndarray:
        vector = np.zeros(self.dimension, dtype=np.float32)
        lowered = re.sub(r"\s+", " ", text.lower())
        features = [lowered[i : i + 3] for i in range(max(len(lowered) - 2, 1))] + lowered.split()
        for feature in features:
            digest = hashlib.blake2b(feature.encode("utf-8"), digest_size=4).digest()
            vector[int.from_bytes(digest, "little") % self.dimension] += 1.0
        norm = float(np.linalg.norm(vector))
        return vector / norm if norm else vector
