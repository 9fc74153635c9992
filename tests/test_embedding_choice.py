"""Engine measurement and the choices `auto` makes from it (engine and model), on fakes and fixture records: no
model files, milliseconds. The real engines are measured by `python -m rag models` (tests/test_embeddinggemma.py
runs it on the real model)."""

from __future__ import annotations

import json
import logging
import shutil
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rag.__main__ import main as rag_main
from rag.calibration import E5_EMBEDDING, GEMMA_EMBEDDING
from rag.config import Settings
from rag.embed import choice as choice_module
from rag.embed.choice import choose_engine, model_of_fingerprint, resolve_embedding_model
from rag.embed.cpu import CpuSignature, cpu_signature
from rag.embed.engine_record import RECORD_FILE, EngineFigures, EngineRecord, read_record, usable_record
from rag.embed.fake import FakeEmbedder
from rag.embed.onnx_embedder import FP32, INT8, MARKER_FILE, export_dir
from rag.errors import ConfigurationError
from rag.provision import engine_measure
from rag.provision.engine_measure import choose, ensure_engine_record, measure_engines, measurement_texts
from rag.search.store import CollectionSpec, QdrantStore
from rag.service import RagService

from .conftest import make_settings

FAST_CPU = CpuSignature(model="AMD EPYC 9B45", flags=["avx2", "fma", "avx512f", "avx512_vnni"], cores=2)
AVX2_CPU = CpuSignature(model="AMD EPYC 7B13", flags=["avx2", "fma"], cores=2)


def _figures(engine: str, chunks_per_s: float, question_ms: float = 40.0, passed: bool = True) -> EngineFigures:
    return EngineFigures(engine=engine, chunks_per_s=chunks_per_s, question_ms=question_ms, passed=passed)


def _record(model: str, chosen: str, figures: list[EngineFigures], cpu: CpuSignature = FAST_CPU) -> EngineRecord:
    return EngineRecord(
        model=model,
        chosen=chosen,
        reason="fastest at batches",
        engines=figures,
        cpu=cpu,
        threads=2,
        batch_size=32,
        texts=30,
        mean_chars=300.0,
        packages={},
        measured_at="2026-12-06T09:00:00+00:00",
    )


def _fake_export(folder: Path, variant: object = INT8) -> None:
    """Files that make `is_exported` true (no real graph: nothing here loads one)."""
    assert variant in (INT8, FP32)
    target = export_dir(folder, variant)  # type: ignore[arg-type]
    target.mkdir(parents=True)
    (target / variant.model_file).write_bytes(b"graph")  # type: ignore[attr-defined]
    (target / f"{variant.model_file}.data").write_bytes(b"weights")  # type: ignore[attr-defined]
    (target / MARKER_FILE).write_text(json.dumps({"version": variant.version}), encoding="utf-8")  # type: ignore[attr-defined]


def _write(folder: Path, record: EngineRecord) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / RECORD_FILE).write_text(record.model_dump_json(), encoding="utf-8")


@pytest.fixture
def this_cpu(monkeypatch: pytest.MonkeyPatch) -> Iterator[CpuSignature]:
    """The machine the tests pretend to run on (records are compared with it)."""
    monkeypatch.setattr(choice_module, "cpu_signature", lambda: FAST_CPU)
    monkeypatch.setattr("rag.embed.engine_record.cpu_signature", lambda: FAST_CPU)
    yield FAST_CPU


def _models_dir(
    tmp_path: Path, gemma_speed: float | None, *, chosen: str = "onnx", cpu: CpuSignature = FAST_CPU
) -> Path:
    """A models folder with EmbeddingGemma (8-bit export) measured at `gemma_speed` chunks/s, and e5 at 3.2."""
    models = tmp_path / "models"
    gemma = models / GEMMA_EMBEDDING
    gemma.mkdir(parents=True)
    _fake_export(gemma, INT8)
    if gemma_speed is not None:
        figures = [_figures("onnx", gemma_speed), _figures("torch", gemma_speed * 0.8, 120.0)]
        _write(gemma, _record(GEMMA_EMBEDDING, chosen, figures, cpu))
    _write(models / E5_EMBEDDING, _record(E5_EMBEDDING, "torch", [_figures("torch", 3.2)], cpu))
    return models


def _auto_settings(tmp_path: Path, models: Path) -> Settings:
    settings = make_settings(tmp_path)
    settings.models.embedding = "auto"
    settings.models.dir = models
    return settings


# ---- the model `auto` stands for ---------------------------------------------------------------------------


def test_auto_takes_embeddinggemma_when_its_engine_is_fast_enough_here(tmp_path: Path, this_cpu: CpuSignature) -> None:
    settings = _auto_settings(tmp_path, _models_dir(tmp_path, 5.8))
    choice = resolve_embedding_model(settings.models)
    assert choice.model == GEMMA_EMBEDDING
    assert choice.summary() == "auto → embeddinggemma-300m (measured 5.80 chunks/s, threshold 2.0)"
    assert not choice.fell_back


def test_auto_falls_back_to_e5_on_a_slow_cpu_and_says_why(
    tmp_path: Path, this_cpu: CpuSignature, caplog: pytest.LogCaptureFixture
) -> None:
    settings = _auto_settings(tmp_path, _models_dir(tmp_path, 0.6))
    service = RagService(settings, consult_collection=False)
    with caplog.at_level(logging.INFO, logger="rag.embed.choice"):
        assert service.settings.models.embedding == E5_EMBEDDING
    assert service.model_choice is not None and service.model_choice.fell_back
    (line,) = [r for r in caplog.records if r.name == "rag.embed.choice"]
    assert line.levelno == logging.WARNING
    for figure in ("0.60 chunks/s", "threshold 2.0", "multilingual-e5-small: 3.20 chunks/s", "RAG_MODELS_EMBEDDING="):
        assert figure in line.getMessage()
    # the per-model values follow the resolved model (e5's refusal cut-off, not EmbeddingGemma's)
    assert service.settings.answer_settings().min_evidence_score_korean == 0.85
    # the threshold is a setting: lowered, the same measurement is enough
    settings.models.auto_min_chunks_per_second = 0.5
    assert resolve_embedding_model(settings.models).model == GEMMA_EMBEDDING


def test_auto_without_a_usable_measurement_takes_e5(tmp_path: Path, this_cpu: CpuSignature) -> None:
    unmeasured = _auto_settings(tmp_path, _models_dir(tmp_path, None))
    choice = resolve_embedding_model(unmeasured.models)
    assert choice.model == E5_EMBEDDING and "python -m rag models" in choice.reason
    # a record made on another kind of CPU (a models folder copied over) counts as none
    elsewhere = _auto_settings(tmp_path / "b", _models_dir(tmp_path / "b", 5.8, cpu=AVX2_CPU))
    choice = resolve_embedding_model(elsewhere.models)
    assert choice.model == E5_EMBEDDING and "another CPU" in choice.reason
    # EmbeddingGemma not provisioned at all
    bare = _auto_settings(tmp_path / "c", tmp_path / "c" / "models")
    assert resolve_embedding_model(bare.models).model == E5_EMBEDDING


def test_an_existing_collection_keeps_its_model_under_auto(tmp_path: Path, this_cpu: CpuSignature) -> None:
    """Built with EmbeddingGemma when it measured fast; a later measurement below the threshold must not turn
    the store into a model-mismatch error."""
    settings = _auto_settings(tmp_path, _models_dir(tmp_path, 0.6))  # measured slow: a new collection gets e5
    store = QdrantStore(settings.qdrant, settings.collection)
    store.ensure_collection(
        CollectionSpec(dimension=768, fingerprint=f"{GEMMA_EMBEDDING}@0123abcd|dim=768|chunk=200/1")
    )
    service = RagService(settings, store=store)
    try:
        assert service.settings.models.embedding == GEMMA_EMBEDDING
        assert service.model_choice is not None
        assert service.model_choice.summary() == "auto → embeddinggemma-300m (the collection was built with it)"
    finally:
        service.close()
    # eval's fresh collections do not look at the app's collection
    assert RagService(settings, consult_collection=False).settings.models.embedding == E5_EMBEDDING


def test_a_named_model_always_wins(tmp_path: Path, this_cpu: CpuSignature) -> None:
    settings = _auto_settings(tmp_path, _models_dir(tmp_path, 5.8))
    settings.models.embedding = E5_EMBEDDING
    assert RagService(settings).settings.models.embedding == E5_EMBEDDING
    assert resolve_embedding_model(settings.models).summary() == E5_EMBEDDING
    slow = _auto_settings(tmp_path / "slow", _models_dir(tmp_path / "slow", 0.4))
    slow.models.embedding = GEMMA_EMBEDDING
    assert RagService(slow).settings.models.embedding == GEMMA_EMBEDDING
    # a handed-in embedder decides the model it runs
    assert RagService(_auto_settings(tmp_path, tmp_path), embedder=FakeEmbedder()).settings.models.embedding == "fake"


def test_auto_with_an_embedding_server_must_name_the_model(tmp_path: Path) -> None:
    settings = _auto_settings(tmp_path, tmp_path / "models")
    settings.models.embedding_backend = "openai"
    with pytest.raises(ConfigurationError, match="RAG_MODELS_EMBEDDING to name the model"):
        resolve_embedding_model(settings.models)


def test_the_model_is_read_from_a_collection_fingerprint() -> None:
    assert model_of_fingerprint("embeddinggemma-300m@1a2b3c|dim=768|chunk=200/1|sparse=3") == GEMMA_EMBEDDING
    assert model_of_fingerprint("/opt/models/multilingual-e5-small@ff|dim=384") == E5_EMBEDDING
    assert model_of_fingerprint("fake-64|dim=64|chunk=200/1") == "fake"
    assert model_of_fingerprint(None) is None


def test_config_shows_the_choice_its_figures_and_why(
    tmp_path: Path, this_cpu: CpuSignature, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    models = _models_dir(tmp_path, 5.8)
    monkeypatch.setenv("RAG_MODELS_DIR", str(models))
    assert rag_main(["config", "--json"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["models"]["embedding"] == "auto → embeddinggemma-300m (measured 5.80 chunks/s, threshold 2.0)"
    shown = payload["embedding_choice"]
    assert shown["engine"] == "onnx"
    assert shown["measured"] == "onnx 5.80 chunks/s, a question 40 ms; torch 4.64 chunks/s, a question 120 ms"
    assert shown["cpu"] == FAST_CPU.describe() and shown["measured_at"].startswith("2026-12-06")
    assert payload["answer"]["min_evidence_score_korean"] == 0.44  # EmbeddingGemma's, as resolved

    (models / GEMMA_EMBEDDING / RECORD_FILE).write_text(
        _record(GEMMA_EMBEDDING, "torch", [_figures("torch", 0.6), _figures("onnx", 0.4)]).model_dump_json()
    )
    assert rag_main(["config"]) == 0
    payload = json.loads(capsys.readouterr().out)
    assert payload["models"]["embedding"] == "auto → multilingual-e5-small (measured 0.60 chunks/s, threshold 2.0)"
    assert "below RAG_MODELS_AUTO_MIN_CHUNKS_PER_SECOND=2.0" in payload["embedding_choice"]["model_reason"]


# ---- the engine `auto` stands for --------------------------------------------------------------------------


def test_auto_engine_follows_the_record_of_this_cpu(tmp_path: Path, this_cpu: CpuSignature) -> None:
    folder = tmp_path / GEMMA_EMBEDDING
    folder.mkdir()
    assert choose_engine(folder, "auto").engine == "torch"  # no export, no record: as before
    _fake_export(folder, INT8)
    assert choose_engine(folder, "auto").engine == "onnx"  # the 8-bit export when present, as before
    _write(folder, _record(GEMMA_EMBEDDING, "torch", [_figures("torch", 0.6), _figures("onnx", 0.4)]))
    chosen = choose_engine(folder, "auto")
    assert chosen.engine == "torch" and "measured 2026-12-06 on this CPU" in chosen.reason
    assert choose_engine(folder, "onnx").engine == "onnx"  # named explicitly: wins
    _write(folder, _record(GEMMA_EMBEDDING, "onnx-fp32", [_figures("onnx-fp32", 0.9)]))
    assert choose_engine(folder, "auto").engine == "onnx"  # its export is gone: not chosen blindly
    _fake_export(folder, FP32)
    assert choose_engine(folder, "auto").engine == "onnx-fp32"
    _write(folder, _record(GEMMA_EMBEDDING, "torch", [_figures("torch", 0.6)], cpu=AVX2_CPU))
    stale = choose_engine(folder, "auto")
    assert stale.engine == "onnx" and "another CPU" in stale.reason and "--remeasure" in stale.reason


def test_auto_backend_loads_the_recorded_engine(tmp_path: Path, this_cpu: CpuSignature) -> None:
    """Through load_embedder: the tiny real graph exported as full precision is what `auto` runs."""
    from rag.embed.factory import load_embedder
    from rag.embed.onnx_embedder import OnnxEmbedder

    from .test_onnx_backend import _tiny_model

    folder = _tiny_model(tmp_path / "tiny")
    fp32 = export_dir(folder, FP32)
    export_dir(folder, INT8).rename(fp32)
    (fp32 / INT8.model_file).rename(fp32 / FP32.model_file)
    # the graph names its weights file; the marker check wants the variant's own name beside it too
    shutil.copy(fp32 / f"{INT8.model_file}.data", fp32 / f"{FP32.model_file}.data")
    (fp32 / MARKER_FILE).write_text(json.dumps({"version": FP32.version, "dimension": 8}), encoding="utf-8")
    _write(folder, _record("tiny", "onnx-fp32", [_figures("onnx-fp32", 50.0), _figures("torch", 20.0)]))
    embedder = load_embedder(str(folder), threads=1)
    assert isinstance(embedder, OnnxEmbedder) and embedder.engine == "onnx-fp32"
    assert embedder.embed_documents(["budget rail"]).shape == (1, 8)


# ---- measuring ---------------------------------------------------------------------------------------------


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class TimedFake(FakeEmbedder):
    """A fake engine that takes `seconds_per_text` of the fake clock per text; `skew` moves its vectors."""

    def __init__(self, clock: FakeClock, seconds_per_text: float, skew: float = 0.0) -> None:
        super().__init__(dimension=64)
        self.clock, self.seconds_per_text, self.skew = clock, seconds_per_text, skew
        self.batch_calls: list[int] = []

    def embed_documents(self, texts: list[str]) -> np.ndarray:
        self.clock.now += self.seconds_per_text * len(texts)
        self.batch_calls.append(len(texts))
        vectors = super().embed_documents(texts)
        if self.skew:
            vectors = vectors + self.skew * np.roll(vectors, 1, axis=1)
            vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
        return vectors

    def embed_query(self, text: str) -> np.ndarray:
        return self.embed_documents([text])[0]


def test_measurement_times_batches_and_questions_and_checks_vectors() -> None:
    clock = FakeClock()
    engines = {
        "torch": TimedFake(clock, 0.5),  # 2 chunks/s
        "onnx": TimedFake(clock, 0.1),  # 10 chunks/s
        "onnx-fp32": TimedFake(clock, 0.05, skew=0.3),  # fastest, but its vectors are another model's
    }
    loaded: list[str] = []

    def load(engine: str) -> TimedFake:
        loaded.append(engine)
        return engines[engine]

    record = measure_engines(
        GEMMA_EMBEDDING, ["onnx", "onnx-fp32", "torch"], load, cpu=FAST_CPU, threads=2, batch_size=32, clock=clock
    )
    assert loaded == ["torch", "onnx", "onnx-fp32"]  # torch first: the reference
    torch, onnx, fp32 = (record.figures(name) for name in ("torch", "onnx", "onnx-fp32"))
    assert torch and onnx and fp32
    assert (torch.chunks_per_s, onnx.chunks_per_s) == (2.0, 10.0)
    # batches larger than the small-call cut (they run as ingest batches) until the time budget is spent
    assert engines["torch"].batch_calls[0] == engine_measure.MEASURE_BATCH - 1  # the warm-up, not timed
    assert engines["onnx"].batch_calls.count(engine_measure.MEASURE_BATCH) == 2
    assert torch.texts_measured == engine_measure.MEASURE_BATCH  # 5 s for the first batch: over the 2 s budget
    assert onnx.texts_measured == 20  # 1 s per batch: two fill the budget
    assert onnx.question_ms == 100.0 and torch.cosine_to_torch is None and onnx.cosine_to_torch == 1.0
    assert not fp32.passed and "cosine" in fp32.note
    assert record.chosen == "onnx" and "10.0 chunks/s" in record.reason
    assert record.cpu == FAST_CPU and "onnxruntime" in record.packages


def test_the_choice_rule() -> None:
    assert choose([_figures("torch", 0.6), _figures("onnx", 0.4)])[0] == "torch"  # the AVX2 case
    # within 5% at batches: the one quicker per question wins the near-tie
    assert choose([_figures("onnx", 3.0, 40.0), _figures("onnx-fp32", 3.1, 80.0)])[0] == "onnx"
    assert choose([_figures("onnx", 2.0, 40.0), _figures("onnx-fp32", 3.1, 80.0)])[0] == "onnx-fp32"
    assert choose([_figures("onnx", 9.0, passed=False), _figures("torch", 1.0)])[0] == "torch"
    assert choose([])[0] == "torch"


def test_the_record_is_written_once_and_measured_again_when_the_cpu_changes(tmp_path: Path) -> None:
    clock = FakeClock()
    calls: list[str] = []

    def load(engine: str) -> TimedFake:
        calls.append(engine)
        return TimedFake(clock, 0.2 if engine == "torch" else 0.1)

    folder = tmp_path / GEMMA_EMBEDDING
    folder.mkdir()
    first = ensure_engine_record(
        folder, ["torch", "onnx"], threads=2, batch_size=32, load=load, clock=clock, cpu=FAST_CPU
    )
    assert first.chosen == "onnx" and read_record(folder) == first
    assert usable_record(folder, FAST_CPU)[0] == first
    assert calls == ["torch", "onnx"]
    ensure_engine_record(folder, ["torch", "onnx"], threads=2, batch_size=32, load=load, clock=clock, cpu=FAST_CPU)
    assert calls == ["torch", "onnx"]  # current: not measured again
    ensure_engine_record(folder, ["torch", "onnx"], threads=2, batch_size=32, load=load, clock=clock, cpu=AVX2_CPU)
    assert len(calls) == 4 and read_record(folder).cpu == AVX2_CPU  # type: ignore[union-attr]
    ensure_engine_record(
        folder, ["torch", "onnx", "onnx-fp32"], threads=2, batch_size=32, load=load, clock=clock, cpu=AVX2_CPU
    )
    assert len(calls) == 7  # an engine appeared
    ensure_engine_record(
        folder,
        ["torch", "onnx", "onnx-fp32"],
        threads=2,
        batch_size=32,
        load=load,
        clock=clock,
        cpu=AVX2_CPU,
        remeasure=True,
    )
    assert len(calls) == 10
    assert [p.name for p in folder.iterdir()] == [RECORD_FILE]  # no staging file left behind


def test_an_engine_that_fails_to_load_is_reported_not_fatal(tmp_path: Path) -> None:
    clock = FakeClock()

    def load(engine: str) -> TimedFake:
        if engine == "onnx":
            raise RuntimeError("no AVX here")
        return TimedFake(clock, 0.5)

    record = measure_engines("m", ["torch", "onnx"], load, cpu=FAST_CPU, threads=2, batch_size=32, clock=clock)
    onnx = record.figures("onnx")
    assert onnx is not None and not onnx.passed and "no AVX here" in onnx.note
    assert record.chosen == "torch"
    assert "onnx: not used (failed: no AVX here)" in record.summary()


def test_measurement_texts_are_chunk_sized_korean() -> None:
    texts = measurement_texts()
    assert len(texts) == engine_measure.TEXT_COUNT and len(set(texts)) == len(texts)
    assert all(280 <= len(text) <= 300 for text in texts)
    assert all(sum("가" <= ch <= "힣" for ch in text) > 150 for text in texts)


def test_cpu_signature_reads_the_model_and_the_relevant_flags(tmp_path: Path) -> None:
    cpuinfo = tmp_path / "cpuinfo"
    cpuinfo.write_text(
        "processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n\n"
        "processor\t: 1\nmodel name\t: AMD EPYC 7B13\nflags\t\t: fpu sse2 avx avx2 fma bmi2\n",
        encoding="utf-8",
    )
    signature = cpu_signature(cpuinfo)
    assert (signature.model, signature.flags) == ("AMD EPYC 7B13", ["avx2", "fma"])
    assert signature.same_kind(AVX2_CPU) and not signature.same_kind(FAST_CPU)
    assert "avx2 fma" in signature.describe()
    assert cpu_signature(tmp_path / "missing").flags == []


def test_bench_ingest_prints_the_cpu_beside_its_results() -> None:
    from eval.bench import format_ingest

    result = {
        "model": "embeddinggemma-300m@1a2b",
        "engine": "onnx",
        "cpu": FAST_CPU.model_dump(),
        "articles": 644,
        "failed": 0,
        "chunks": 2764,
        "mean_tokens_per_chunk": 161.0,
        "end_to_end_s": 480.0,
        "articles_per_s": 1.34,
        "chunks_per_s": 5.76,
        "embedding_in_pipeline_s": 400.0,
        "raw_embedding_s": 390.0,
        "raw_chunks_per_s": 7.09,
        "pipeline_overhead": 0.231,
        "model_load_s": 2.0,
        "cpu_cores": 2,
        "load_average": {"start": [0.3, 0.2, 0.1], "end": [1.9, 1.2, 0.6]},
    }
    head = format_ingest(result).splitlines()[0]
    assert head == "embeddinggemma-300m@1a2b through onnx on AMD EPYC 9B45, 2 cores, avx2 fma avx512f avx512_vnni"
