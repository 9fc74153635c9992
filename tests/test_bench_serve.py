"""`python -m eval bench-serve`'s client side against a served app (fake embedder), and its report."""

from __future__ import annotations

from app import create_app
from eval.bench_serve import Tally, drive, format_results, summarise
from ingest.pipeline import build_ingestor
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService

from .conftest import SAMPLE_ARTICLE
from .served import serve


def test_clients_are_counted_by_status_and_latency(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    with serve(create_app(service, with_ui=False)) as url:
        result = drive(url, None, clients=3, seconds=1.0, warm_up=1)
    service.close()
    assert result["clients"] == 3 and result["answered"] == result["requests"] > 0
    assert result["errors"] == 0 and result["overloaded_503"] == 0 and result["statuses"] == {"200": result["answered"]}
    assert 0 < result["latency_ms"]["p50"] <= result["latency_ms"]["p95"] <= result["latency_ms"]["p99"]
    assert "| run | 3 |" in format_results({"run": result})


def test_refusals_and_failures_are_kept_apart() -> None:
    tally = Tally()
    for status, elapsed in (("200", 10.0), ("200", 30.0), ("503", 1.0), ("504", 120_000.0), ("ReadTimeout", 5.0)):
        tally.add(status, elapsed)
    result = summarise(tally, clients=2, elapsed_s=2.0)
    assert result["answered"] == 2 and result["throughput_per_s"] == 1.0
    assert result["overloaded_503"] == 1 and result["errors"] == 2
    assert result["latency_ms"]["p50"] == 20.0  # answered requests only
