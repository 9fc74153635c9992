"""Which engine runs an embedding model fastest on this machine: measured once at provisioning, recorded beside
the model (rag/embed/engine_record.py), read at run time by RAG_MODELS_EMBEDDING_BACKEND=auto.

Why measure instead of always taking the 8-bit ONNX export: its speed depends on the CPU. With AVX-512 VNNI
EmbeddingGemma's 8-bit export embedded ~5.8 chunks/s here, several times torch's; on a plain AVX2 2-core CPU (no
VNNI) the same export managed 0.40 chunks/s against torch's 0.60 (docs/embedding-engines.md). ONNX Runtime
picks its kernels by the CPU's instruction sets, so only running the candidates on this machine tells.

How: each candidate (torch first: its vectors are the reference) is loaded as the service would load it, warmed
up, then timed on batches of chunk-sized Korean passages (what ingest does) until a few seconds have passed, and
on single questions. A candidate whose vectors fall below the export check's cosine to torch's is not chosen.
The fastest at batches wins; one within 5% of it and quicker per question wins the near-tie (noise). The whole
measurement, both models, took 45 s on the development machine while it was busy; the first batch of each
engine is timed whatever the budget, so a CPU 5x slower takes a few minutes.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import os
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np

from rag.embed.base import Embedder
from rag.embed.cpu import CpuSignature, cpu_signature
from rag.embed.engine_record import (
    RECORD_VERSION,
    TORCH,
    EngineFigures,
    EngineRecord,
    read_record,
    record_path,
)
from rag.embed.factory import load_embedder
from rag.files import staged_file
from rag.provision.onnx_export import MIN_COSINE, package_versions

logger = logging.getLogger(__name__)

# Korean policy news of the length ingest embeds (~300 characters, the chunk budget of 200 model tokens)
PASSAGES = (
    "정부는 올해 하반기부터 지역 균형 발전을 위한 스마트시티 시범 사업을 전국 열두 개 도시로 확대한다고 밝혔다. "
    "국토교통부에 따르면 이번 사업에는 총 삼천억 원의 예산이 투입되며, 교통·에너지·안전 분야의 데이터를 하나의 "
    "플랫폼으로 묶어 시민에게 실시간 정보를 제공하는 것이 핵심이다. 참여 지방자치단체는 내년 3월까지 세부 계획을 "
    '제출해야 하며, 민간 기업과 대학이 함께 구성한 협의체가 계획의 타당성을 검토한다. 정부 관계자는 "도시마다 '
    '여건이 다른 만큼 주민 의견을 충분히 반영하겠다"고 말했다.',
    "한국은행 금융통화위원회는 기준금리를 연 3.25%로 동결했다. 위원회는 물가 상승률이 목표 수준에 가까워지고 "
    '있으나 가계부채 증가세와 환율 변동성이 여전히 크다고 판단했다. 총재는 기자간담회에서 "경기 하방 위험과 금융 '
    '안정 사이의 균형을 신중하게 살피겠다"며 추가 인하 시점에 대해서는 말을 아꼈다. 시장에서는 내년 상반기 중 한 '
    "차례 인하가 이뤄질 것이라는 전망이 우세하다. 한편 시중은행들은 대출 금리를 소폭 조정할 계획이라고 밝혔다.",
    "보건복지부는 저출생 대응을 위해 육아휴직 급여 상한을 월 250만 원으로 올리고, 부모가 함께 휴직할 경우 첫 "
    "6개월 동안 급여를 전액 지원하는 방안을 발표했다. 또한 중소기업이 대체 인력을 채용하면 인건비의 일부를 보전해 "
    "주는 제도도 새로 도입한다. 전문가들은 제도 개선이 실제 이용률로 이어지려면 직장 문화의 변화가 함께 필요하다고 "
    "지적했다. 정부는 관련 법 개정안을 이달 중 국회에 제출할 예정이다.",
    "과학기술정보통신부는 인공지능 반도체 개발을 지원하기 위해 5년간 1조 원 규모의 연구개발 사업을 추진한다. 사업은 "
    "설계, 공정, 소프트웨어 세 분야로 나뉘며, 국내 팹리스 기업과 연구기관이 컨소시엄을 이뤄 참여한다. 정부는 개발된 "
    "칩을 공공 데이터센터에 우선 도입해 초기 수요를 만들어 줄 계획이다. 업계는 환영의 뜻을 밝히면서도 인력 양성과 "
    "장비 확보에 대한 지원이 뒤따라야 한다고 강조했다.",
)
QUESTIONS = ("스마트시티 시범 사업의 예산은 얼마인가?", "Who decided to keep the base rate unchanged?")
TEXT_CHARS = 300
TEXT_COUNT = 30
# texts per timed call: above SMALL_CALL_TEXTS (rag/embed/base.py), so the call runs as an ingest batch would
MEASURE_BATCH = 10
BATCH_BUDGET_S = 2.0  # no further batch starts after this much timed embedding
QUESTION_BUDGET_S = 0.5
MIN_QUESTION_RUNS = 3
NEAR_TIE = 0.95  # within 5% of the fastest at batches, the quicker per question wins

Loader = Callable[[str], Embedder]  # engine name → the embedder the service would load
Clock = Callable[[], float]


def measurement_texts(count: int = TEXT_COUNT, chars: int = TEXT_CHARS) -> list[str]:
    """`count` chunk-sized windows over the passages (fixed: every machine times the same texts)."""
    whole = " ".join(PASSAGES)
    ring = whole + " " + whole
    stride = max(len(whole) // count, 1)
    return [ring[i * stride : i * stride + chars].strip() for i in range(count)]


def ensure_engine_record(
    model_folder: Path,
    engines: Sequence[str],
    *,
    threads: int,
    batch_size: int,
    remeasure: bool = False,
    load: Loader | None = None,
    cpu: CpuSignature | None = None,
    clock: Clock = time.perf_counter,
) -> EngineRecord:
    """The folder's engine record, measuring first when there is none, when it was made on another kind of CPU
    or for other engines, or when `remeasure` asks. `load` and `clock` replace the real engines and time (tests)."""
    cpu = cpu or cpu_signature()
    current = read_record(model_folder)
    why = _why_measure(current, cpu, engines, remeasure)
    if current is not None and not why:
        logger.debug("engine measurement for %s is current: %s", model_folder.name, current.summary())
        return current
    logger.info(
        "Measuring the embedding engines for %s on this CPU (%s; %s): %s",
        model_folder.name,
        cpu.describe(),
        why,
        ", ".join(engines),
    )
    loader = load or _engine_loader(model_folder, threads=threads, batch_size=batch_size)
    record = measure_engines(
        model_folder.name, engines, loader, cpu=cpu, threads=threads, batch_size=batch_size, clock=clock
    )
    with staged_file(record_path(model_folder)) as staging:
        staging.write_text(record.model_dump_json(indent=2) + "\n", encoding="utf-8")
    logger.info("Embedding engine for %s on this CPU: %s (%s)", model_folder.name, record.chosen, record.summary())
    return record


def _why_measure(current: EngineRecord | None, cpu: CpuSignature, engines: Sequence[str], remeasure: bool) -> str:
    if current is None:
        return "no measurement yet"
    if not current.cpu.same_kind(cpu):
        return f"the recorded measurement was made on another CPU ({current.cpu.describe()})"
    if {figures.engine for figures in current.engines} != set(engines):
        return "the engines available changed"
    return "asked to measure again" if remeasure else ""


def _engine_loader(model_folder: Path, *, threads: int, batch_size: int) -> Loader:
    def load(engine: str) -> Embedder:
        gc.collect()  # the previous engine's weights (up to 1.2 GB) go before the next one loads
        return load_embedder(str(model_folder), backend=engine, threads=threads, batch_size=batch_size)

    return load


def measure_engines(
    model: str,
    engines: Sequence[str],
    load: Loader,
    *,
    cpu: CpuSignature,
    threads: int,
    batch_size: int,
    clock: Clock = time.perf_counter,
) -> EngineRecord:
    """Measure `engines` (torch first, the reference) and choose; see the module docstring."""
    texts = measurement_texts()
    load_average = _load_average()
    if load_average is not None and load_average > cpu.cores:
        logger.warning(
            "the machine is busy (load average %.1f on %d cores): the engines measure slower than they are; run "
            "`python -m rag models --remeasure` when it is quiet",
            load_average,
            cpu.cores,
        )
    ordered = sorted(engines, key=lambda engine: engine != TORCH)
    reference: np.ndarray | None = None
    figures: list[EngineFigures] = []
    for engine in ordered:
        measured, vectors = _measure_one(engine, load, texts, clock)
        if vectors is not None and engine == TORCH:
            reference = vectors
        elif vectors is not None and reference is not None:
            measured.cosine_to_torch = round(float(np.sum(vectors * reference, axis=1).min()), 5)
            if measured.cosine_to_torch < MIN_COSINE:
                measured.passed = False
                measured.note = f"vectors at cosine {measured.cosine_to_torch} to torch's (need ≥ {MIN_COSINE})"
        figures.append(measured)
    chosen, reason = choose(figures)
    return EngineRecord(
        version=RECORD_VERSION,
        model=model,
        chosen=chosen,
        reason=reason,
        engines=figures,
        cpu=cpu,
        threads=threads,
        batch_size=batch_size,
        texts=len(texts),
        mean_chars=round(sum(map(len, texts)) / len(texts), 1),
        packages=package_versions(),
        measured_at=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        load_average=load_average,
    )


def _load_average() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:  # not available on this platform
        return None


def _measure_one(engine: str, load: Loader, texts: list[str], clock: Clock) -> tuple[EngineFigures, np.ndarray | None]:
    """The engine's figures, and its vectors for the first batch and the questions (for the cosine check)."""
    started = clock()
    try:
        embedder = load(engine)
        load_s = clock() - started
        embedder.embed_documents(["준비 운동"] * (MEASURE_BATCH - 1))  # thread pools, kernels, first allocations
        embedder.embed_query(QUESTIONS[0])
        done, elapsed, first = _time_batches(embedder, texts, clock)
        question_ms = _time_questions(embedder, clock)
        vectors = np.vstack([first, embedder.embed_queries(list(QUESTIONS))])
    except Exception as exc:  # an engine that cannot run here is reported, not fatal: the others may
        logger.warning("embedding engine %s could not be measured: %s", engine, exc)
        return EngineFigures(engine=engine, passed=False, note=f"failed: {str(exc)[:200]}"), None
    figures = EngineFigures(
        engine=engine,
        chunks_per_s=round(done / elapsed, 3),
        question_ms=round(question_ms, 1),
        load_s=round(load_s, 2),
        texts_measured=done,
        passed=True,
    )
    logger.info(
        "  %s: %.2f chunks/s (%d passages), a question %.0f ms, loaded in %.1f s",
        engine,
        done / elapsed,
        done,
        question_ms,
        load_s,
    )
    return figures, vectors


def _time_batches(embedder: Embedder, texts: list[str], clock: Clock) -> tuple[int, float, np.ndarray]:
    done, elapsed = 0, 0.0
    first: np.ndarray | None = None
    for start in range(0, len(texts), MEASURE_BATCH):
        batch = texts[start : start + MEASURE_BATCH]
        began = clock()
        vectors = embedder.embed_documents(batch)
        elapsed += clock() - began
        done += len(batch)
        first = vectors if first is None else first
        if elapsed >= BATCH_BUDGET_S:
            break
    assert first is not None  # texts is never empty
    return done, max(elapsed, 1e-9), first


def _time_questions(embedder: Embedder, clock: Clock) -> float:
    runs: list[float] = []
    while len(runs) < MIN_QUESTION_RUNS or sum(runs) < QUESTION_BUDGET_S * 1000:
        question = QUESTIONS[len(runs) % len(QUESTIONS)]
        began = clock()
        embedder.embed_query(question)
        runs.append((clock() - began) * 1000)
        if len(runs) >= 200:
            break
    return statistics.median(runs)


def choose(figures: Sequence[EngineFigures]) -> tuple[str, str]:
    """The engine to use and why: the fastest at batches among those that passed; within 5% of it, the quickest
    per question. Torch when none passed (it needs no export and is the reference)."""
    passed = [f for f in figures if f.passed and f.chunks_per_s]
    if not passed:
        return TORCH, "no engine could be measured; torch, the reference"
    best = max(passed, key=lambda f: f.chunks_per_s or 0.0)
    best_speed = best.chunks_per_s or 0.0
    close = [f for f in passed if (f.chunks_per_s or 0.0) >= NEAR_TIE * best_speed]
    quickest = min(close, key=lambda f: f.question_ms if f.question_ms is not None else float("inf"))
    if quickest.engine != best.engine:
        return quickest.engine, (
            f"within 5% of the fastest at batches ({quickest.chunks_per_s} vs {best.engine} {best_speed} chunks/s) "
            f"and quicker per question ({quickest.question_ms} ms)"
        )
    return best.engine, f"fastest at batches of chunk-sized passages ({best_speed} chunks/s)"
