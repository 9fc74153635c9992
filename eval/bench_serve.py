"""`python -m eval bench-serve`: N clients asking the running app for T seconds; throughput, latency, statuses.

Starts `python app.py` on a free loopback port with the configured collection (ingesting `data/` first when
the collection is empty), waits until it is ready, asks one warm-up pass of the questions, then lets
`--clients` threads ask `/v1/answer` back to back for `--seconds`, each with a keep-alive connection. Runs
extractive (`RAG_LLM_BACKEND=none`) and, when the GGUF is provisioned, the local LLM with fewer clients
(`--llm-clients`, `--llm-seconds`). `--url` measures an app that is already running instead.
"""

from __future__ import annotations

import json
import math
import os
import socket
import subprocess
import sys
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import httpx

from eval.bench import PROJECT_ROOT
from eval.bench_answer import QUESTIONS, UNANSWERABLE
from eval.metrics import percentile
from rag.config import Settings
from rag.errors import ConfigurationError, RagError
from rag.search.store import QdrantStore

START_TIMEOUT_S = 300  # model loading on a busy 2-core machine
REQUEST_TIMEOUT_S = 300


@dataclass
class Tally:
    """What the clients saw (they report from their own threads)."""

    latencies_ms: list[float] = field(default_factory=list)
    statuses: Counter[str] = field(default_factory=Counter)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, status: str, elapsed_ms: float) -> None:
        with self.lock:
            self.statuses[status] += 1
            if status == "200":
                self.latencies_ms.append(elapsed_ms)


def run(
    settings: Settings,
    *,
    clients: int,
    seconds: float,
    llm_clients: int,
    llm_seconds: float,
    url: str | None = None,
    as_json: bool = False,
) -> dict[str, Any]:
    key = settings.api.key.get_secret_value() if settings.api.key else None
    results: dict[str, Any] = {}
    if url is not None:
        results["running app"] = drive(url, key, clients=clients, seconds=seconds)
    else:
        _ensure_ingested(settings)
        plans = [("extractive", "none", clients, seconds)]
        if settings.llm_model_path().exists():
            plans.append(("local LLM", "local", llm_clients, llm_seconds))
        else:
            sys.stderr.write(f"{settings.llm_model_path()} is missing: the local LLM is not measured\n")
        for name, backend, count, duration in plans:
            # extractive: every question once, so each is measured warm; with an LLM one question warms the
            # article's sentence vectors and the index, and generation dominates anyway
            warm_up = None if backend == "none" else 1
            with _served_app(backend) as served_url:
                results[name] = drive(served_url, key, clients=count, seconds=duration, warm_up=warm_up)
    if as_json:
        sys.stdout.write(json.dumps(results, ensure_ascii=False) + "\n")
    else:
        sys.stdout.write(format_results(results))
    return results


def drive(url: str, key: str | None, *, clients: int, seconds: float, warm_up: int | None = None) -> dict[str, Any]:
    """`warm_up`: questions asked before the clock starts (None: all of them)."""
    headers = {"Authorization": f"Bearer {key}"} if key else {}
    questions = QUESTIONS + UNANSWERABLE
    with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as warm:
        for question in questions[:warm_up]:  # sentence vectors and the index are built before the clock starts
            warm.post("/v1/answer", json={"question": question})
    tally = Tally()
    stop_at = time.monotonic() + seconds

    def client(number: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=REQUEST_TIMEOUT_S) as http:
            turn = number
            while time.monotonic() < stop_at:
                question = questions[turn % len(questions)]
                turn += clients
                started = time.perf_counter()
                try:
                    status = str(http.post("/v1/answer", json={"question": question}).status_code)
                except httpx.HTTPError as exc:
                    status = type(exc).__name__
                tally.add(status, (time.perf_counter() - started) * 1000)

    started = time.monotonic()
    threads = [threading.Thread(target=client, args=(n,), daemon=True) for n in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    return summarise(tally, clients=clients, elapsed_s=elapsed)


def summarise(tally: Tally, *, clients: int, elapsed_s: float) -> dict[str, Any]:
    answered = tally.latencies_ms
    total = sum(tally.statuses.values())
    return {
        "clients": clients,
        "seconds": round(elapsed_s, 1),
        "requests": total,
        "answered": len(answered),
        "throughput_per_s": round(len(answered) / elapsed_s, 2) if elapsed_s else math.nan,
        "latency_ms": {f"p{q}": round(percentile(answered, q), 1) for q in (50, 95, 99)},
        "statuses": dict(sorted(tally.statuses.items())),
        "overloaded_503": tally.statuses.get("503", 0),
        "errors": total - len(answered) - tally.statuses.get("503", 0),
    }


def format_results(results: dict[str, Any]) -> str:
    lines = [
        "| run | clients | seconds | answers/s | p50 ms | p95 ms | p99 ms | 503 | errors | statuses |",
        "|" + "---|" * 10,
    ]
    for name, result in results.items():
        latency = result["latency_ms"]
        statuses = ", ".join(f"{status}: {count}" for status, count in result["statuses"].items())
        lines.append(
            f"| {name} | {result['clients']} | {result['seconds']} | {result['throughput_per_s']} | "
            f"{latency['p50']} | {latency['p95']} | {latency['p99']} | {result['overloaded_503']} | "
            f"{result['errors']} | {statuses} |"
        )
    return "\n".join(lines) + "\n"


def _ensure_ingested(settings: Settings) -> None:
    store = QdrantStore(settings.qdrant, settings.collection)
    try:
        empty = not store.exists() or store.count_chunks() == 0
    finally:
        store.close()
    if empty:
        sys.stderr.write(f"collection {settings.collection!r} is empty: ingesting data/ first\n")
        subprocess.run([sys.executable, "-m", "ingest", "data/"], cwd=PROJECT_ROOT, check=True, stdout=sys.stderr)


@contextmanager
def _served_app(backend: str) -> Iterator[str]:
    """`python app.py` with the given LLM backend on a free loopback port; its URL once ready."""
    port = _free_port()
    # warnings only (no access log), and to stderr: stdout carries the results (one JSON object with --json)
    env = dict(os.environ, RAG_LLM_BACKEND=backend, RAG_HOST="127.0.0.1", RAG_PORT=str(port), RAG_LOG_LEVEL="WARNING")
    process = subprocess.Popen([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env, stdout=sys.stderr)
    try:
        url = f"http://127.0.0.1:{port}"
        _wait_until_ready(url, process)
        yield url
    finally:
        process.terminate()
        process.wait(timeout=60)


def _wait_until_ready(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise ConfigurationError(f"`python app.py` exited with status {process.returncode}; see its log above")
        try:
            if httpx.get(f"{url}/readyz", timeout=5).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise RagError(f"the app did not become ready within {START_TIMEOUT_S} s")


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
