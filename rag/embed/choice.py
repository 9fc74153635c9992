"""What `auto` means, for the engine (RAG_MODELS_EMBEDDING_BACKEND) and for the model (RAG_MODELS_EMBEDDING).

Engine: the one measured fastest on this machine by `python -m rag models` (rag/provision/engine_measure.py),
among those whose vectors matched torch's; without a measurement on this kind of CPU, the 8-bit ONNX export
when the folder holds one, else torch.

Model: EmbeddingGemma-300M (better across languages) when it is provisioned and its engine embeds at least
RAG_MODELS_AUTO_MIN_CHUNKS_PER_SECOND chunks per second here, else multilingual-e5-small: on a plain AVX2
2-core machine EmbeddingGemma ingested ~5x slower than e5 (docs/embedding-engines.md). A collection already
built with a model keeps it, so a store never stops opening because a re-measurement came out otherwise; a
model named explicitly always wins. Every path that builds an embedder goes through `resolve_settings`.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rag.calibration import AUTO_EMBEDDING, E5_EMBEDDING, FAKE_EMBEDDING, GEMMA_EMBEDDING, SERVED_MODEL_NAMES
from rag.config import ModelSettings, Settings
from rag.embed.cpu import CpuSignature, cpu_signature
from rag.embed.engine_record import ONNX_INT8, TORCH, EngineFigures, EngineRecord, usable_record
from rag.embed.onnx_embedder import INT8, VARIANTS, is_exported
from rag.errors import ConfigurationError

logger = logging.getLogger(__name__)

AUTO = AUTO_EMBEDDING  # for the model and the engine alike
OPENAI = "openai"


@dataclass(frozen=True)
class EngineChoice:
    engine: str
    reason: str
    record: EngineRecord | None = None

    def figures(self) -> EngineFigures | None:
        return self.record.figures(self.engine) if self.record else None


def engine_is_available(model_folder: Path, engine: str) -> bool:
    """The engine can run this folder: torch always can; an ONNX engine needs its export."""
    variant = VARIANTS.get(engine)
    return engine == TORCH if variant is None else is_exported(model_folder, variant)


def choose_engine(model_folder: Path, backend: str, cpu: CpuSignature | None = None) -> EngineChoice:
    """The local engine for a model folder: `backend` when it names one, else (`auto`) the recorded choice."""
    record, status = usable_record(model_folder, cpu) if model_folder.is_dir() else (None, "")
    if backend != AUTO:
        return EngineChoice(backend, "set by RAG_MODELS_EMBEDDING_BACKEND", record)
    if not model_folder.is_dir():
        return EngineChoice(TORCH, "not a local folder: sentence-transformers loads it")
    if record is not None and engine_is_available(model_folder, record.chosen):
        return EngineChoice(record.chosen, f"{record.reason} ({status})", record)
    if record is not None:
        status = f"the measured choice {record.chosen} is no longer in {model_folder}"
    if is_exported(model_folder, INT8):
        return EngineChoice(ONNX_INT8, f"{status}; the folder holds the 8-bit ONNX export", record)
    return EngineChoice(TORCH, f"{status}; the folder holds no ONNX export", record)


@dataclass(frozen=True)
class ModelChoice:
    requested: str
    model: str
    reason: str
    chunks_per_s: float | None = None
    threshold: float | None = None
    fell_back: bool = False  # EmbeddingGemma is there but was not taken: worth a warning

    @property
    def automatic(self) -> bool:
        return self.requested == AUTO

    def summary(self) -> str:
        """`auto → embeddinggemma-300m (measured 5.80 chunks/s, threshold 2.0)`, or the model as set."""
        if not self.automatic:
            return self.model
        if self.chunks_per_s is None:
            return f"{AUTO} → {self.model} ({self.reason})"
        return f"{AUTO} → {self.model} (measured {self.chunks_per_s:.2f} chunks/s, threshold {self.threshold})"


def model_of_fingerprint(fingerprint: str | None) -> str | None:
    """The model name in a collection's fingerprint (`embeddinggemma-300m@1a2b…|dim=768|…`) or in an embedder's
    model id (`embeddinggemma-300m@1a2b…`, `fake-64`), None if none."""
    if not fingerprint:
        return None
    model_id = fingerprint.split("|", 1)[0].split("@", 1)[0]
    if model_id.startswith(f"{FAKE_EMBEDDING}-"):
        return FAKE_EMBEDDING
    return Path(model_id).name or None


def resolve_embedding_model(
    models: ModelSettings, *, collection_model: str | None = None, cpu: CpuSignature | None = None
) -> ModelChoice:
    """The model `models.embedding` stands for (see the module docstring); cheap: reads the measurement record."""
    threshold = models.auto_min_chunks_per_second
    if models.embedding != AUTO:
        return ModelChoice(models.embedding, models.embedding, "set by RAG_MODELS_EMBEDDING")
    if models.embedding_backend == OPENAI:
        raise ConfigurationError(
            "RAG_MODELS_EMBEDDING_BACKEND=openai needs RAG_MODELS_EMBEDDING to name the model the server runs "
            f"({E5_EMBEDDING} or {GEMMA_EMBEDDING}); `auto` chooses between local engines"
        )
    if collection_model:
        return ModelChoice(AUTO, collection_model, "the collection was built with it", threshold=threshold)
    gemma = models.dir / GEMMA_EMBEDDING
    if not gemma.is_dir():
        reason = f"{GEMMA_EMBEDDING} is not provisioned in {models.dir} (`python -m rag models`)"
        return ModelChoice(AUTO, E5_EMBEDDING, reason, threshold=threshold)
    engine = choose_engine(gemma, models.embedding_backend, cpu)
    figures = engine.figures()
    if figures is None or not figures.passed or figures.chunks_per_s is None:
        _, status = usable_record(gemma, cpu)
        reason = f"no usable measurement of {GEMMA_EMBEDDING} through {engine.engine} on this CPU ({status})"
        reason += "; run `python -m rag models`"
        return ModelChoice(AUTO, E5_EMBEDDING, reason, threshold=threshold, fell_back=True)
    speed = figures.chunks_per_s
    if speed >= threshold:
        reason = f"{GEMMA_EMBEDDING} through {engine.engine} embeds {speed:.2f} chunks/s here (≥ {threshold})"
        return ModelChoice(AUTO, GEMMA_EMBEDDING, reason, speed, threshold)
    e5 = usable_record(models.dir / E5_EMBEDDING, cpu)[0]
    e5_figures = e5.figures(TORCH) if e5 else None
    e5_text = (
        f"; {E5_EMBEDDING}: {e5_figures.chunks_per_s:.2f} chunks/s" if e5_figures and e5_figures.chunks_per_s else ""
    )
    reason = (
        f"{GEMMA_EMBEDDING} through {engine.engine} embeds only {speed:.2f} chunks/s on this CPU, below "
        f"RAG_MODELS_AUTO_MIN_CHUNKS_PER_SECOND={threshold}{e5_text}; set RAG_MODELS_EMBEDDING={GEMMA_EMBEDDING} "
        "to use it anyway"
    )
    return ModelChoice(AUTO, E5_EMBEDDING, reason, speed, threshold, fell_back=True)


def resolve_settings(
    settings: Settings, *, collection_model: str | None = None, cpu: CpuSignature | None = None
) -> tuple[Settings, ModelChoice]:
    """`settings` with `models.embedding` resolved, and the choice; under `auto` one log line says which and why."""
    choice = resolve_embedding_model(settings.models, collection_model=collection_model, cpu=cpu)
    if not choice.automatic:
        return settings, choice
    logger.log(
        logging.WARNING if choice.fell_back else logging.INFO, "embedding model %s: %s", choice.summary(), choice.reason
    )
    return with_model(settings, choice.model), choice


def with_model(settings: Settings, model: str) -> Settings:
    return settings.model_copy(update={"models": settings.models.model_copy(update={"embedding": model})})


def describe_choice(settings: Settings, choice: ModelChoice) -> dict[str, Any]:
    """For `python -m rag config`: the model and engine that will run, why, and the figures measured here."""
    models = settings.models
    described: dict[str, Any] = {"model": choice.summary(), "model_reason": choice.reason}
    if models.embedding == FAKE_EMBEDDING:
        return described | {"engine": FAKE_EMBEDDING}
    if models.embedding_backend == OPENAI:
        served = models.embedding_server_model or SERVED_MODEL_NAMES.get(Path(models.embedding).name)
        return described | {"engine": OPENAI, "server": models.embedding_server_url, "served_model": served}
    here = cpu_signature()
    engine = choose_engine(Path(settings.embedding_model_location()), models.embedding_backend, here)
    described |= {"engine": engine.engine, "engine_reason": engine.reason, "cpu": here.describe()}
    if engine.record is not None:
        described |= {
            "measured": engine.record.summary(),
            "measured_at": engine.record.measured_at,
            "measured_threads": engine.record.threads,
            "measured_load_average": engine.record.load_average,
        }
    return described
