"""One typed Settings object, nested by concern, read from `RAG_*` environment variables and `.env`.

Nested fields use a single underscore after the group name, so `RAG_QDRANT_PATH` sets `qdrant.path`
and `RAG_OPENAI_BASE_URL` sets `openai.base_url` (the names docs/interfaces.md promises).
"""

from __future__ import annotations

import json
import logging
import re
from functools import lru_cache
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from pydantic import BaseModel, Field, SecretStr, ValidationError, field_validator, model_validator
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from rag.calibration import (
    AUTO_EMBEDDING,
    DEFAULT_AUTO_MIN_CHUNKS_PER_SECOND,
    DEFAULT_EMBEDDING,
    FAKE_EMBEDDING,
    LOCAL_LLM_FILE,
    MEASURED_EVIDENCE_THRESHOLDS,
    MEASURED_SOUND_WEIGHTS,
    MEASURED_TRANSLATION_WEIGHTS,
    UNMEASURED_FALLBACK,
)
from rag.errors import ConfigurationError

LLMBackendName = Literal["local", "openai", "none"]
EmbeddingBackendName = Literal["auto", "torch", "onnx", "onnx-fp32", "openai"]


class ModelSettings(BaseModel):
    dir: Path = Field(
        Path("models"), description="Folder holding provisioned model files (created by `python -m rag models`)."
    )
    embedding: str = Field(
        DEFAULT_EMBEDDING,
        description="Embedding model: `auto` (the default), a folder name under `dir`, an absolute path to a "
        "sentence-transformers folder, or (on a machine that reaches a model hub) a hub id. `embeddinggemma-300m` "
        "(Gemma terms of use; better for English questions over Korean text) and `multilingual-e5-small` (MIT; a "
        "quarter of the size, ingests faster) are provisioned by `python -m rag models`. `auto`: EmbeddingGemma when "
        "it is provisioned and its engine measured at least `auto_min_chunks_per_second` on this machine (a CPU "
        "with AVX-512/VNNI), else e5-small (a plain AVX2 2-core CPU, where EmbeddingGemma ingests ~5x slower); an "
        "existing collection keeps the model it was built with. `fake` selects a deterministic hashing embedder "
        "for tests (no model files, no quality).",
    )
    embedding_backend: EmbeddingBackendName = Field(
        "auto",
        description="Engine that runs the embedding model: `onnx` the ONNX export with 8-bit weights that "
        "`python -m rag models` writes into the EmbeddingGemma folder (fast with VNNI: a question in ~38 ms instead "
        "of ~110-150 ms through torch; vectors within cosine 0.999 of torch's), `onnx-fp32` the same export in "
        "full precision, `torch` sentence-transformers, `openai` an OpenAI-compatible embedding server (see "
        "`embedding_server_url`). `auto`: the engine `python -m rag models` measured fastest on this CPU among "
        "those whose vectors match torch's; without a measurement, the 8-bit export when the folder holds one, "
        "else torch.",
    )
    auto_min_chunks_per_second: float = Field(
        DEFAULT_AUTO_MIN_CHUNKS_PER_SECOND,
        ge=0,
        description="With `embedding=auto`: EmbeddingGemma's measured ingest speed on this machine (chunks per "
        "second, its chosen engine) below which e5-small is used instead (2.0: ~45 min for 5,400 chunks).",
    )
    embedding_server_url: str | None = Field(
        None,
        description="With `embedding_backend=openai`: the OpenAI-compatible endpoint's base URL (it serves "
        "`POST <url>/embeddings`), e.g. `http://gpu-box:8080/v1` for text-embeddings-inference, vLLM or Infinity.",
    )
    embedding_server_api_key: SecretStr | None = Field(
        None, description="API key sent to the embedding server as a bearer token, if it needs one."
    )
    embedding_server_model: str | None = Field(
        None,
        description="Model name the embedding server reports; a reply naming another model is refused. Unset: the "
        "hub id of `embedding` (`intfloat/multilingual-e5-small`, `google/embeddinggemma-300m`).",
    )
    embedding_server_concurrency: int = Field(
        4,
        ge=1,
        le=64,
        description="Requests to the embedding server in flight at once (batches of `embedding_batch_size` texts).",
    )
    embedding_server_timeout_s: float = Field(60.0, gt=0, description="Timeout of one embedding server request.")
    embedding_server_retries: int = Field(
        4,
        ge=0,
        le=20,
        description="Retries of a failed embedding server request (429, 5xx, timeouts, connection errors), with "
        "exponential backoff from 0.5 s up to 8 s, or the server's Retry-After.",
    )
    embedding_batch_size: int = Field(
        32, ge=1, le=512, description="Chunks per embedding batch at ingest (per request with the `openai` backend)."
    )
    query_prefix: str | None = Field(
        None,
        description="Text put before every question; unset: the model folder's own `query` prompt "
        "(`query: ` for e5, `task: search result | query: ` for EmbeddingGemma), else nothing.",
    )
    passage_prefix: str | None = Field(
        None,
        description="Text put before every passage; unset: the model folder's `document` (or `passage`) "
        "prompt (`passage: ` for e5, `title: none | text: ` for EmbeddingGemma), else nothing.",
    )
    llm_file: str = Field(
        LOCAL_LLM_FILE,
        description="GGUF file under `dir` (or absolute path) used by the `local` LLM backend.",
    )
    lexicon_file: str = Field(
        "lexicon/en-ko-sino.tsv",
        description="English→Korean lexicon under `dir` (or absolute path), built by `python -m rag models` "
        "from JMdict + KANJIDIC2 (package jamdict-data); translates English questions' words for the keyword "
        "side over Korean articles. Missing: that side is left out, with a warning.",
    )
    threads: int = Field(
        2, ge=1, le=256, description="CPU threads for the embedding model (torch or ONNX Runtime) and llama.cpp."
    )
    query_threads: int | None = Field(
        None,
        ge=1,
        le=256,
        description="Threads for small embedding calls (a question, a few sentences). Unset: 1 for torch, whose "
        "spinning workers stall when another process or the LLM keeps the other core busy (measured p50 88 ms vs "
        "1,964 ms on 2 threads), and `threads` for ONNX Runtime, whose workers do not spin (EmbeddingGemma, one "
        "core busy elsewhere: 54 ms on 2 threads vs 61 ms on 1; idle: 38 vs 51 ms).",
    )


class QdrantSettings(BaseModel):
    path: Path = Field(Path("storage/qdrant"), description="Embedded (local mode) Qdrant folder; the default mode.")
    engine: Literal["local", "edge"] = Field(
        "local",
        description="Embedded engine (when `url` is unset): `local` is qdrant-client's local mode with an "
        "in-process scorer, right for thousands of articles; `edge` is Qdrant Edge, Qdrant's own engine in the "
        "process (HNSW and payload indexes, write-ahead log), for hundreds of thousands (docs/scaling.md). Each "
        "keeps its own collections in the folder.",
    )
    edge_quantization: Literal["none", "int8"] = Field(
        "none",
        description="Edge only, new collections: `int8` keeps scalar-quantised dense vectors in memory (a quarter "
        "of the size) and the originals on disk, which rescore the best candidates (scores stay exact cosines).",
    )
    edge_indexing_threshold_kb: int | None = Field(
        None,
        ge=1,
        description="Edge only, new collections: a segment's vectors are searched by brute force until it holds "
        "this many kilobytes, then get an HNSW index when the store optimises. Unset: Qdrant's default (10,000).",
    )
    edge_optimize_every_chunks: int = Field(
        100_000,
        ge=1,
        description="Edge only: `python -m ingest` indexes each time this many chunks were written since the last "
        "time, not only at the end. Edge holds unindexed points in memory (about 20 KB a chunk at 768 dimensions, "
        "measured), so one long run without it outgrows the machine's memory.",
    )
    url: str | None = Field(None, description="Qdrant server or cluster URL; when set, `path` is ignored.")
    api_key: SecretStr | None = Field(None, description="API key for the Qdrant server, if it needs one.")
    timeout_s: float = Field(30.0, gt=0, description="Request timeout against a Qdrant server.")
    shard_number: int | None = Field(None, ge=1, description="Shards for new collections on a cluster.")
    replication_factor: int | None = Field(None, ge=1, description="Replicas for new collections on a cluster.")


class ChunkingSettings(BaseModel):
    max_tokens: int = Field(
        200,
        ge=32,
        le=512,
        description="Chunk budget in the embedding model's own tokens, passage prefix and title included "
        "(must stay under the model window of 512).",
    )
    overlap_sentences: int = Field(1, ge=0, le=5, description="Sentences repeated at the start of the next chunk.")


class RetrievalSettings(BaseModel):
    top_k: int = Field(5, ge=1, le=100, description="Hits returned by default.")
    candidates: int = Field(40, ge=1, le=1000, description="Candidates each side (dense, sparse) brings to fusion.")
    max_chunks_per_article: int = Field(2, ge=1, le=50, description="Cap on hits from one article.")
    fusion: Literal["dbsf", "rrf"] = Field(
        "dbsf",
        description="How dense and keyword candidates are fused: `dbsf` (Qdrant's distribution-based score "
        "fusion: each side's scores normalised by their mean ± 3σ, then summed) or `rrf` (weighted reciprocal "
        "rank fusion). Measured on KorQuAD 1.0 dev, 500 questions, keyword weight 2: dbsf recall@1 0.930 / "
        "MRR@10 0.959 vs keyword-only 0.912 / 0.945 (`make bench-retrieval`); rrf k=60 was below keyword-only.",
    )
    rrf_k: int = Field(60, ge=1, le=1000, description="RRF rank constant (only with fusion=rrf).")
    dense_weight: float = Field(
        1.0,
        ge=0,
        description="Weight of the dense side; 0 leaves it out. With dbsf the sides are listed in proportion "
        "to their weights (1 and 0.5: twice and once).",
    )
    sparse_weight_korean: float = Field(
        2.0,
        ge=0,
        description="Weight of the keyword side for questions in Hangul, and for any question whose keywords "
        "one chunk holds (see keyword_coverage); 0 leaves the side out. Qdrant's DBSF takes no weights, so "
        "with dbsf the sides are listed in proportion to their weights (2 measured best on KorQuAD: recall@1 "
        "0.930 vs 0.922 at 1).",
    )
    sparse_weight_other: float = Field(
        0.0,
        ge=0,
        description="Weight of the question's own keyword terms for questions without Hangul whose keywords the "
        "collection mostly lacks (English over Korean articles); 0 turns it off. Measured on English questions "
        "over Korean news: dense alone recall@1 0.825, with these terms at 0.3 (rrf) only 0.539.",
    )
    sparse_weight_sound: float | None = Field(
        None,
        ge=0,
        description="Weight of the sound-key side for questions without Hangul whose keywords the collection "
        "mostly lacks: their words' transliteration keys against the borrowed nouns of Korean articles "
        "(alliance ↔ 얼라이언스, rag/text/transliteration.py); 0 turns it off. Unset: measured per embedding model, "
        "0.5 for e5-small, 0.125 for EmbeddingGemma (make bench-retrieval: English sentences → the Korean story "
        "holding their twin, e5 recall@1 dense 0.554, with this side at 0.5 0.602, at 1 0.522).",
    )
    sparse_weight_translation: float | None = Field(
        None,
        ge=0,
        description="Weight of the translated-keyword side for the same questions: their words' Sino-Korean "
        "translations from the provisioned lexicon (audit → 감사, chair → 의장, budget → 예산; rag/text/lexicon.py) "
        "against the Korean articles' own terms; 0 turns it off. Unset: measured per embedding model, 0.5 for "
        "e5-small, 0.125 for EmbeddingGemma (make bench-retrieval, English sentences → their Korean twin, e5 "
        "recall@1 0.836 → 0.892).",
    )
    keyword_coverage: float = Field(
        0.6,
        ge=0,
        le=1,
        description="A question without Hangul has its own keywords searched at sparse_weight_korean when one "
        "chunk holds at least this share of them (an English question over English articles), else at "
        "sparse_weight_other; its sound and translation sides take part either way. Known for the embedded store "
        "only; against a Qdrant server the script rule applies.",
    )

    def sound_weight(self) -> float:
        """The sound side's weight: as set, else e5's (Settings.retrieval_settings() fills in the model's own)."""
        weight = self.sparse_weight_sound
        return weight if weight is not None else MEASURED_SOUND_WEIGHTS[UNMEASURED_FALLBACK]

    def translation_weight(self) -> float:
        """The translated-keyword side's weight: as set, else e5's (see sound_weight)."""
        weight = self.sparse_weight_translation
        return weight if weight is not None else MEASURED_TRANSLATION_WEIGHTS[UNMEASURED_FALLBACK]


class AnswerSettings(BaseModel):
    evidence_sentences: int = Field(
        6, ge=1, le=30, description="Evidence sentences handed to the LLM (each costs prompt time on a CPU)."
    )
    evidence_margin: float = Field(
        0.02,
        ge=0,
        le=1,
        description="Evidence scoring more than this below the best sentence is not shown to the LLM.",
    )
    extractive_sentences: int = Field(2, ge=1, le=10, description="Sentences quoted in an extractive answer.")
    extractive_max_sentences: int = Field(
        4,
        ge=1,
        le=10,
        description="Cap on sentences quoted when more than `extractive_sentences` score within `evidence_margin` "
        "of the best (flat scores, as for English questions over Korean text).",
    )
    min_evidence_score_korean: float | None = Field(
        None,
        ge=0,
        le=1,
        description="For Korean questions: cosine similarity of the best evidence sentence below which nothing "
        "relevant was found and the question is refused. Unset: the value measured for the embedding model "
        "(`python -m eval bench-refusal`; similarities live on a different scale per model).",
    )
    min_evidence_score_other: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The same across scripts: a question with no Hangul over Korean evidence, or a Korean "
        "question over English evidence (cross-lingual similarities run lower).",
    )
    min_evidence_score_english: float | None = Field(
        None,
        ge=0,
        le=1,
        description="The same when neither the question nor the evidence sentence has Hangul (English over "
        "English text, where similarities run higher than across languages).",
    )

    def min_evidence_score(self, korean: bool, evidence_korean: bool | None = None) -> float:
        """The cut-off for a question (Korean or not) against evidence (Korean or not; by default in the
        question's own script for a Korean question, Korean for any other)."""
        evidence_korean = True if evidence_korean is None else evidence_korean
        measured = MEASURED_EVIDENCE_THRESHOLDS[UNMEASURED_FALLBACK]
        if korean and evidence_korean:
            value, default = self.min_evidence_score_korean, measured.korean
        elif not korean and not evidence_korean:
            value, default = self.min_evidence_score_english, measured.english
        else:
            value, default = self.min_evidence_score_other, measured.other
        return value if value is not None else default

    prompt_format: Literal["cite", "quote-then-say"] = Field(
        "cite",
        description="How the LLM is asked to answer: `cite` (short sentences, each with its evidence number) or "
        "`quote-then-say` (first copy the words of the evidence sentence that answers, then answer).",
    )
    prompt_example: bool = Field(
        False, description="Show the LLM one worked example (evidence, question, cited answer) before the question."
    )
    evidence_order: Literal["best-first", "best-last"] = Field(
        "best-first",
        description="Order of the evidence sentences in the prompt: best first, or best last (nearest the question).",
    )
    language_instruction: bool = Field(
        True, description='End the prompt with "Answer in Korean/English." (the question\'s language).'
    )
    on_model_refusal: Literal["quote", "refuse"] = Field(
        "quote",
        description="When the LLM replies that the evidence does not answer although it cleared the refusal "
        "cut-off: `quote` the evidence as extractive mode does, or `refuse`.",
    )
    max_new_tokens: int = Field(256, ge=16, le=4096, description="Token cap for generated answers.")
    context_window: int = Field(4096, ge=512, description="Context window of the local LLM.")


class OpenAISettings(BaseModel):
    base_url: str | None = Field(
        None, description="OpenAI-compatible endpoint (vLLM, llama.cpp server, Ollama, hosted API)."
    )
    model: str | None = Field(None, description="Model name at that endpoint.")
    api_key: SecretStr | None = Field(None, description="API key for that endpoint.")
    timeout_s: float = Field(60.0, gt=0, description="Request timeout.")
    max_retries: int = Field(
        2, ge=0, le=10, description="Retries of a failed request (429, 5xx, timeout, dropped connection), with backoff."
    )
    context_window: int = Field(
        8192,
        ge=512,
        description="Context window of the model at that endpoint: the reply's token cap is cut so that the prompt "
        "(counted with tiktoken) and the reply fit.",
    )


class LLMSettings(BaseModel):
    backend: LLMBackendName = Field(
        "none", description="`local` (GGUF via llama.cpp), `openai` or `none` (extractive)."
    )
    temperature: float = Field(0.0, ge=0, le=2, description="Sampling temperature; 0 keeps answers reproducible.")


class IngestSettings(BaseModel):
    max_document_chars: int = Field(
        1_000_000,
        ge=1_000,
        description="Most characters of text one document (a file, or one JSONL/CSV record) may hold after "
        "extraction; a longer one is reported as failed. A PDF stops being read at this point, so a small file "
        "that inflates to gigabytes of text costs no more than this.",
    )
    max_chunks_per_document: int = Field(
        5_000,
        ge=1,
        description="Most chunks one document may be cut into; a document that needs more is reported as failed "
        "(at 200 tokens a chunk, about 1.5 MB of Korean text).",
    )


class ApiSettings(BaseModel):
    key: SecretStr | None = Field(
        None,
        description="When set, nothing but the probes is served without it: /v1/* and /metrics take "
        "`Authorization: Bearer <key>`, the chat page a sign-in with the key (or a user of `users_file`). "
        "Set but blank is an error, never 'no key'.",
    )
    users_file: Path | None = Field(
        None,
        description="Named sign-ins for the chat page, one `name:scrypt-hash` a line (`python -m api add-user "
        "NAME` writes them); needs `key`, which the API keeps using.",
    )
    session_hours: float = Field(12.0, gt=0, le=24 * 90, description="How long a chat-page sign-in lasts.")
    upload_dir: Path = Field(Path("storage/uploads"), description="Where files sent to POST /v1/ingest are kept.")
    max_request_mb: float = Field(4.0, gt=0, description="Largest body /v1/answer and /v1/search accept (413 past it).")
    max_upload_mb: float = Field(200.0, gt=0, description="Largest upload (all files together) /v1/ingest accepts.")
    max_upload_files: int = Field(
        100, ge=1, description="Most files one POST /v1/ingest may carry; a request with more is refused (422)."
    )
    max_upload_chars: int = Field(
        5_000_000,
        ge=1_000,
        description="Most characters of text (after extraction, all files together) one POST /v1/ingest ingests; "
        "the documents past it are reported as failed, to be sent in another request. Bounds the time one request "
        "keeps the service busy.",
    )
    max_inflight: int = Field(
        8,
        ge=1,
        le=256,
        description="Answers and searches worked on at once (each holds a worker thread). Those waiting on a "
        "remote LLM wait together; CPU-bound steps share the cores.",
    )
    queue_depth: int = Field(
        32, ge=0, le=10_000, description="Requests that may wait for a free slot; past it the API answers 503."
    )
    request_timeout_s: float = Field(
        120.0,
        gt=0,
        description="Longest an answer or search may take, queueing included; then its work is stopped and the "
        "caller gets 503 (still queued) or 504 (running).",
    )

    @field_validator("key")
    @classmethod
    def _key_not_blank(cls, value: SecretStr | None) -> SecretStr | None:
        # an empty variable must not silently mean "no authentication"
        if value is not None and not value.get_secret_value().strip():
            raise ValueError("is set but blank; set a key, or unset the variable to serve without one")
        return value

    @model_validator(mode="after")
    def _users_need_key(self) -> ApiSettings:
        if self.users_file is not None and self.key is None:
            raise ValueError("RAG_API_USERS_FILE needs RAG_API_KEY (the API's key; sign-ins are signed with it)")
        return self

    def key_bytes(self) -> bytes | None:
        return self.key.get_secret_value().encode("utf-8") if self.key else None


class FeedbackSettings(BaseModel):
    path: Path = Field(
        Path("storage/feedback.sqlite3"),
        description="SQLite file where the chat page keeps thumbs up/down and comments on answers "
        "(`python -m eval feedback --export FILE` turns them into test questions).",
    )


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="RAG_",
        env_nested_delimiter="_",
        env_nested_max_split=1,
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    collection: str = Field(
        "news", pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,120}$", description="Qdrant collection name."
    )
    host: str = Field(
        "127.0.0.1",
        description="Address `python app.py` binds to; loopback unless set (`0.0.0.0` for every interface).",
    )
    port: int = Field(8000, ge=1, le=65535, description="Port `python app.py` listens on.")
    allowed_origins: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Origins (`https://qa.example.org`) whose pages may call the app and names clients may reach it "
        "by, beyond localhost and `host`; comma-separated or a JSON list; `*` turns the Host/Origin check off. "
        "Other `Host` or cross-site `Origin` headers get 403 (DNS rebinding, cross-site form posts).",
    )
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = Field("INFO", description="Log level.")
    models: ModelSettings = ModelSettings()
    qdrant: QdrantSettings = QdrantSettings()
    chunking: ChunkingSettings = ChunkingSettings()
    retrieval: RetrievalSettings = RetrievalSettings()
    answer: AnswerSettings = AnswerSettings()
    llm: LLMSettings = LLMSettings()
    openai: OpenAISettings = OpenAISettings()
    api: ApiSettings = ApiSettings()
    feedback: FeedbackSettings = FeedbackSettings()
    ingest: IngestSettings = IngestSettings()

    @field_validator("allowed_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: Any) -> Any:
        if isinstance(value, str):
            text = value.strip()
            if text.startswith("["):
                return json.loads(text)
            return [part.strip() for part in text.split(",") if part.strip()]
        return value

    @field_validator("allowed_origins")
    @classmethod
    def _origins_are_origins(cls, value: list[str]) -> list[str]:
        for origin in value:
            if origin != "*" and not re.fullmatch(r"https?://[^/\s?#]+", origin.rstrip("/")):
                raise ValueError(
                    f"{origin!r} is not an origin; write scheme://host[:port], e.g. https://qa.example.org"
                )
        return [origin.rstrip("/").lower() for origin in value]

    @model_validator(mode="after")
    def _openai_backend_needs_endpoint(self) -> Settings:
        if self.llm.backend == "openai" and not (self.openai.base_url and self.openai.model):
            raise ValueError("RAG_LLM_BACKEND=openai needs RAG_OPENAI_BASE_URL and RAG_OPENAI_MODEL")
        return self

    @model_validator(mode="after")
    def _openai_embeddings_need_endpoint(self) -> Settings:
        if self.models.embedding_backend == "openai" and not self.models.embedding_server_url:
            raise ValueError("RAG_MODELS_EMBEDDING_BACKEND=openai needs RAG_MODELS_EMBEDDING_SERVER_URL")
        return self

    def answer_settings(self) -> AnswerSettings:
        """`answer` with unset refusal cut-offs taken from the values measured for the embedding model; a model
        never measured keeps e5's, with a hint to measure its own."""
        answer = self.answer
        fields = ("min_evidence_score_korean", "min_evidence_score_other", "min_evidence_score_english")
        if all(getattr(answer, name) is not None for name in fields):
            return answer
        model = Path(self.models.embedding).name
        if model not in MEASURED_EVIDENCE_THRESHOLDS and model not in (FAKE_EMBEDDING, AUTO_EMBEDDING):
            logging.getLogger(__name__).warning(
                "no refusal thresholds measured for embedding model %s; using %s's. Measure them with "
                "`python -m eval bench-refusal` and set RAG_ANSWER_MIN_EVIDENCE_SCORE_KOREAN / _OTHER / _ENGLISH",
                model,
                UNMEASURED_FALLBACK,
            )
        measured = MEASURED_EVIDENCE_THRESHOLDS.get(model, MEASURED_EVIDENCE_THRESHOLDS[UNMEASURED_FALLBACK])
        for name, value in zip(fields, (measured.korean, measured.other, measured.english), strict=True):
            if getattr(answer, name) is None:
                answer = answer.model_copy(update={name: value})
        return answer

    def retrieval_settings(self) -> RetrievalSettings:
        """`retrieval` with unset side weights (sound keys, translations) taken from the values measured for the
        embedding model (e5's for a model never measured)."""
        retrieval = self.retrieval
        model = Path(self.models.embedding).name
        updates: dict[str, float] = {}
        for name, measured in (
            ("sparse_weight_sound", MEASURED_SOUND_WEIGHTS),
            ("sparse_weight_translation", MEASURED_TRANSLATION_WEIGHTS),
        ):
            if getattr(retrieval, name) is None:
                updates[name] = measured.get(model, measured[UNMEASURED_FALLBACK])
        return retrieval.model_copy(update=updates) if updates else retrieval

    def lexicon_path(self) -> Path:
        candidate = Path(self.models.lexicon_file)
        return candidate if candidate.is_absolute() else self.models.dir / candidate

    def embedding_model_location(self) -> str:
        """A local folder (a bare name lives under models.dir) or, failing that, a hub id."""
        name = self.models.embedding
        if "/" not in name and "\\" not in name:
            return str(self.models.dir / name)
        return name

    def llm_model_path(self) -> Path:
        candidate = Path(self.models.llm_file)
        return candidate if candidate.is_absolute() else self.models.dir / candidate

    def with_overrides(self, **changes: Any) -> Settings:
        """A copy with top-level fields replaced (e.g. `collection` from `--collection`), checked by the same
        rules as the environment (model_copy alone would let `--collection ../x` through to Qdrant)."""
        updated = self.model_copy(update={k: v for k, v in changes.items() if v is not None})
        for name in changes:
            try:
                self.__pydantic_validator__.validate_assignment(updated.model_copy(), name, getattr(updated, name))
            except ValidationError as exc:
                flag = "--" + name.replace("_", "-")
                error = exc.errors()[0]
                reason = (
                    "use letters, digits, '_', '.' or '-', starting with a letter or digit"
                    if error["type"] == "string_pattern_mismatch"
                    else error["msg"]
                )
                raise ConfigurationError(f"{flag} {getattr(updated, name)!r}: {reason}") from None
        return updated

    def masked(self) -> dict[str, Any]:
        """Effective settings as plain data, secrets masked, for `python -m rag config`; values measured per
        embedding model (refusal cut-offs, sound-key weight) are shown as resolved for the configured model."""
        effective = self.model_copy(update={"retrieval": self.retrieval_settings(), "answer": self.answer_settings()})
        return _mask_secrets(effective.model_dump(mode="python"))


def _mask_secrets(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _mask_secrets(v) for k, v in value.items()}
    if isinstance(value, SecretStr):
        return "********" if value.get_secret_value() else ""
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, str):
        return mask_url(value)
    return value


_SECRET_QUERY_KEYS = ("key", "token", "secret", "password", "passwd", "signature", "sig", "auth")


def mask_url(value: str) -> str:
    """A URL with its password (`https://user:secret@host` → `https://user:***@host`) and the values of query
    parameters that hold credentials (`?api_key=...`) masked, for output and error messages. Other text as is."""
    if "://" not in value:
        return value
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:  # not a URL after all (an odd port, a bracket)
        return value
    pairs = parse_qsl(parts.query, keep_blank_values=True)
    if password is None and not any(_is_secret_key(name) for name, _ in pairs):
        return value
    netloc = parts.netloc
    if password is not None:
        userinfo, _, host = netloc.rpartition("@")
        netloc = f"{userinfo.split(':', 1)[0]}:***@{host}"
    query = urlencode([(k, "***" if _is_secret_key(k) else v) for k, v in pairs], safe="*") if pairs else ""
    return urlunsplit(parts._replace(netloc=netloc, query=query))


def _is_secret_key(name: str) -> bool:
    lowered = name.lower()
    return any(word in lowered for word in _SECRET_QUERY_KEYS)


def load_settings(**overrides: Any) -> Settings:
    """Read settings from the environment; a bad value becomes a ConfigurationError naming the variable."""
    try:
        return Settings(**overrides)
    except ValidationError as exc:
        problems = "; ".join(_describe_validation_problem(err) for err in exc.errors())
        raise ConfigurationError(f"invalid settings: {problems}") from exc


def _describe_validation_problem(err: Any) -> str:
    location = [str(part) for part in err.get("loc", ())]
    variable = "RAG_" + "_".join(location).upper() if location else "settings"
    return f"{variable}: {err.get('msg', 'invalid value')}"


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings (cached; tests build their own Settings instead)."""
    return load_settings()
