"""The engine measurement recorded beside a model: which engine ran the model fastest on this machine, with the
figures, the CPU and the library versions.

`python -m rag models` writes it (rag/provision/engine_measure.py); at run time `RAG_MODELS_EMBEDDING_BACKEND=auto`
and `RAG_MODELS_EMBEDDING=auto` read it (rag/embed/choice.py). A record made on another kind of CPU is not used.
"""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, Field, ValidationError

from rag.embed.cpu import CpuSignature, cpu_signature

RECORD_FILE = "engines.json"
RECORD_VERSION = 1

# engine names, as RAG_MODELS_EMBEDDING_BACKEND spells them
TORCH = "torch"
ONNX_INT8 = "onnx"  # the ONNX export with 8-bit weights (the first export the project had, hence the plain name)
ONNX_FP32 = "onnx-fp32"  # the same graph before quantisation
LOCAL_ENGINES = (ONNX_INT8, ONNX_FP32, TORCH)


class EngineFigures(BaseModel):
    """One engine's measurement on the fixed texts."""

    engine: str
    chunks_per_s: float | None = Field(None, description="Chunk-sized Korean passages embedded per second.")
    question_ms: float | None = Field(None, description="Median time to embed one question.")
    load_s: float | None = Field(None, description="Time to load the engine.")
    texts_measured: int = Field(0, description="Passages embedded in the timed batches.")
    cosine_to_torch: float | None = Field(None, description="Lowest cosine to torch's vectors (torch: none).")
    passed: bool = Field(description="Its vectors match torch's (cosine check) and it ran.")
    note: str = ""


class EngineRecord(BaseModel):
    version: int = RECORD_VERSION
    model: str
    chosen: str
    reason: str
    engines: list[EngineFigures]
    cpu: CpuSignature
    threads: int
    batch_size: int
    texts: int
    mean_chars: float
    packages: dict[str, str]
    measured_at: str
    load_average: float | None = Field(
        None, description="1-minute load average when the measurement began: other work slows every engine."
    )

    def figures(self, engine: str) -> EngineFigures | None:
        return next((figures for figures in self.engines if figures.engine == engine), None)

    def summary(self) -> str:
        """One line: every engine's figures, the chosen one first."""
        ordered = sorted(self.engines, key=lambda f: f.engine != self.chosen)
        return "; ".join(_figures_text(figures) for figures in ordered)


def _figures_text(figures: EngineFigures) -> str:
    if not figures.passed:
        return f"{figures.engine}: not used ({figures.note})"
    question = f", a question {figures.question_ms:.0f} ms" if figures.question_ms is not None else ""
    return f"{figures.engine} {figures.chunks_per_s:.2f} chunks/s{question}"


def record_path(model_folder: Path) -> Path:
    return model_folder / RECORD_FILE


def read_record(model_folder: Path) -> EngineRecord | None:
    """The record in the folder, or None when there is none or it is unreadable or of another format version."""
    try:
        record = EngineRecord.model_validate_json(record_path(model_folder).read_text(encoding="utf-8"))
    except (OSError, ValueError, ValidationError):
        return None
    return record if record.version == RECORD_VERSION else None


def usable_record(model_folder: Path, cpu: CpuSignature | None = None) -> tuple[EngineRecord | None, str]:
    """The record if it was made on this kind of CPU, else None; and in either case a few words saying why."""
    record = read_record(model_folder)
    if record is None:
        return None, f"no engine measurement in {model_folder}"
    here = cpu or cpu_signature()
    if not record.cpu.same_kind(here):
        return None, (
            f"the engine measurement in {model_folder} was made on another CPU ({record.cpu.describe()}; this one: "
            f"{here.describe()}); run `python -m rag models --remeasure`"
        )
    return record, f"measured {record.measured_at[:10]} on this CPU"
