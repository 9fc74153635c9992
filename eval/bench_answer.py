"""`python -m eval bench-answer`: answer latency on the sample article's collection, per LLM backend.

Prints time to first token and total time (p50/p95, warm) for `none` (extractive) and `local` (the GGUF),
and the questions answered or refused, so a regression in speed or behaviour shows in one table.
"""

from __future__ import annotations

import json
import re
import sys
import time
from pathlib import Path
from typing import Any

from eval.bench import PROJECT_ROOT
from eval.metrics import latency_summary
from ingest.pipeline import build_ingestor
from rag.config import LLMBackendName, LLMSettings, QdrantSettings, load_settings
from rag.service import RagService

SAMPLE_ARTICLE = PROJECT_ROOT / "data" / "smartcity_alliance_launch.txt"

QUESTIONS = [
    "Who co-chairs the alliance?",
    "Who audits the alliance?",
    "How many companies founded the alliance?",
    "Where was the alliance launched?",
    "How much will the government invest in 2019?",
    "When do the first residents move in?",
    "얼라이언스 공동의장사는 어디인가?",
    "공동감사는 누가 맡나?",
    "얼라이언스 창립기관은 몇 개 기업인가?",
    "얼라이언스 발족식은 어디에서 열렸나?",
    "정부는 2019년에 얼마를 투자하나?",
    "최초 주민입주는 언제 시작하나?",
]
UNANSWERABLE = ["What is the capital of France?", "비트코인 가격은 얼마인가?"]


def run(backends: list[LLMBackendName], repeats: int = 2, as_json: bool = False) -> dict[str, Any]:
    settings = RagService(load_settings(), consult_collection=False).settings  # RAG_MODELS_EMBEDDING=auto resolved
    # one collection per embedding model: a collection remembers the model it was built with
    model = re.sub(r"[^A-Za-z0-9_.-]", "-", Path(settings.models.embedding).name)
    base = settings.model_copy(
        update={
            "collection": f"bench-answer-{model}",
            "qdrant": QdrantSettings(path=PROJECT_ROOT / "storage" / "bench" / "answer"),
        }
    )
    results: dict[str, Any] = {}
    for backend in backends:
        service = RagService(base.model_copy(update={"llm": LLMSettings(backend=backend)}))
        try:
            build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
            results[backend] = _measure(service, repeats)
        finally:
            service.close()
    if as_json:
        sys.stdout.write(json.dumps(results, ensure_ascii=False) + "\n")
    else:
        _print_table(results)
    return results


def _measure(service: RagService, repeats: int) -> dict[str, Any]:
    started = time.perf_counter()
    service.answer(QUESTIONS[0])  # warm: model loads, the article's sentences are embedded and cached
    first_answer_ms = (time.perf_counter() - started) * 1000
    first_tokens: list[float] = []
    totals: list[float] = []
    answers: dict[str, str] = {}
    for _ in range(repeats):
        for question in QUESTIONS + UNANSWERABLE:
            started = time.perf_counter()
            answer = service.answer(question)
            totals.append((time.perf_counter() - started) * 1000)
            if "first_token" in answer.timings_ms:
                first_tokens.append(answer.timings_ms["first_token"] + _before_generation(answer.timings_ms))
            answers[question] = "REFUSED" if answer.refused else answer.answer
    return {
        "first_answer_ms": first_answer_ms,
        "total_ms": latency_summary(totals),
        "first_token_ms": latency_summary(first_tokens) if first_tokens else None,
        "refused": [q for q, a in answers.items() if a == "REFUSED"],
        "answers": answers,
    }


def _before_generation(timings: dict[str, float]) -> float:
    """Time spent before the LLM was called: first token as the user sees it includes retrieval."""
    return sum(timings.get(stage, 0.0) for stage in ("rewrite", "embed", "search", "evidence"))


def _print_table(results: dict[str, Any]) -> None:
    out = sys.stdout
    out.write("| backend | first token p50 | first token p95 | total p50 | total p95 | refused |\n")
    out.write("|---|---|---|---|---|---|\n")
    for backend, figures in results.items():
        first = figures["first_token_ms"] or {"p50": float("nan"), "p95": float("nan")}
        total = figures["total_ms"]
        out.write(
            f"| {backend} | {first['p50']:.0f} ms | {first['p95']:.0f} ms | {total['p50']:.0f} ms | "
            f"{total['p95']:.0f} ms | {len(figures['refused'])}/{len(QUESTIONS) + len(UNANSWERABLE)} |\n"
        )
    for backend, figures in results.items():
        out.write(
            f"\n{backend}: first answer (loads, embeds the article's sentences) {figures['first_answer_ms']:.0f} ms"
        )
    out.write("\n")
    for backend, figures in results.items():
        out.write(f"\n{backend} answers:\n")
        for question, answer in figures["answers"].items():
            out.write(f"  {question} -> {answer[:160]}\n")
