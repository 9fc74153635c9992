"""Values measured per model, and the one registry of model names.

Each embedding model scores similarities on its own scale, so the refusal cut-offs and the weights of the keyword
sides were measured per model (docs/benchmarks.md, "Refusal thresholds" and "Retrieval quality"); Settings falls back
on these where the user set nothing (rag/config.py). The names of the provisioned model files live here too,
so settings, provisioning and the command line spell them alike.
"""

from __future__ import annotations

from typing import NamedTuple

E5_EMBEDDING = "multilingual-e5-small"
GEMMA_EMBEDDING = "embeddinggemma-300m"
# RAG_MODELS_EMBEDDING=fake: a deterministic hashing embedder (rag/embed/fake.py), for tests and smoke runs
FAKE_EMBEDDING = "fake"
# the local LLM (`python -m rag models --llm` assembles it; RAG_MODELS_LLM_FILE names it)
LOCAL_LLM_FILE = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
# RAG_MODELS_EMBEDDING=auto (the default): EmbeddingGemma where this machine embeds with it fast enough, else e5
# (rag/embed/choice.py). EmbeddingGemma: first for all six sample questions among 2,372 Korean articles (e5: 3),
# better cross-lingual recall; but on a plain AVX2 2-core CPU it ingested ~5x slower than e5
AUTO_EMBEDDING = "auto"
DEFAULT_EMBEDDING = AUTO_EMBEDDING
# below this many chunks per second (the 64 chunks of the sample corpus: ~45 min for 5,400 chunks at 2.0) `auto`
# takes e5-small instead of EmbeddingGemma
DEFAULT_AUTO_MIN_CHUNKS_PER_SECOND = 2.0
# the model names OpenAI-compatible servers (text-embeddings-inference, vLLM, Infinity) report for the models
# this project provisions: the hub ids they are launched with
SERVED_MODEL_NAMES = {E5_EMBEDDING: "intfloat/multilingual-e5-small", GEMMA_EMBEDDING: "google/embeddinggemma-300m"}
# settings measured per model fall back to e5's for a model never measured (its values came first)
UNMEASURED_FALLBACK = E5_EMBEDDING


class RefusalThresholds(NamedTuple):
    """Cut-offs on the best evidence sentence's similarity, by the scripts of question and evidence: a model
    scores a question against text in its own language higher than against a translation, so one number
    refuses too little in one case or too much in the other."""

    korean: float  # Korean question, Korean evidence: the best cut-off of `eval bench-refusal` (KorQuAD)
    other: float  # across scripts (English question, Korean evidence, or the reverse)
    english: float  # question and evidence without Hangul (English over English)


# Per embedding model (each has its own similarity scale). `other`: below bench-refusal's best (its English
# "questions" are full translations, closer to their twin than a question is to its answer), set between the
# sample article's answerable English questions and unrelated ones. `english`: from 20 answerable and 20
# unrelated hand-written questions over the FOMC statements: e5's best cut-off; EmbeddingGemma separates them
# completely and gets the midpoint (docs/benchmarks.md, "Refusal thresholds").
MEASURED_EVIDENCE_THRESHOLDS: dict[str, RefusalThresholds] = {
    E5_EMBEDDING: RefusalThresholds(korean=0.85, other=0.745, english=0.80),
    GEMMA_EMBEDDING: RefusalThresholds(korean=0.44, other=0.35, english=0.31),
}


# Weight of the sound-key side per embedding model (make bench-retrieval, English→Korean): a model that reads
# English questions over Korean text well itself needs less help. e5-small: sentences (dev) recall@1 0.825 →
# 0.836 and stories (held-out) 0.554 → 0.602 at 0.5 (at 1 both fall below dense). EmbeddingGemma: at 0.5 both
# fall below its dense side (0.947 → 0.918, 0.828 → 0.824); at 0.125 sentences stay at 0.947, stories 0.830.
MEASURED_SOUND_WEIGHTS: dict[str, float] = {E5_EMBEDDING: 0.5, GEMMA_EMBEDDING: 0.125}

# Weight of the translated-keyword side (rag/text/lexicon.py) per embedding model, measured the same way. e5-small:
# sentences (dev) recall@1 with sound keys alone 0.836; translations at 0.25 / 0.5 / 0.75 / 1: 0.876 / 0.892 /
# 0.872 / 0.847; held-out stories 0.602 → 0.706 at 0.5. EmbeddingGemma: sentences 0.947 → 0.952 at 0.125 (0.951 at
# 0.25, where the sample article's "Who audits the alliance?" fell from 1st to 3rd), stories 0.830 → 0.844.
MEASURED_TRANSLATION_WEIGHTS: dict[str, float] = {E5_EMBEDDING: 0.5, GEMMA_EMBEDDING: 0.125}
