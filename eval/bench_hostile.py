"""`python -m eval bench-hostile`: what crafted files cost to ingest next to a normal file of the same size.

Each case of eval/hostile_inputs.py is written at `--size` bytes and ingested on its own (load, clean, chunk,
embed with the fake embedder, store) into a throwaway collection; so is a normal file of each type, at the same
size (for the PDF bomb: at the bomb's own file size). The goal: no crafted file costs more than
GOAL_RATIO times the normal one. Both are timed in the same run, so a busy machine slows both.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from eval.hostile_inputs import HOSTILE_CASES, HostileCase, normal_case, write_case
from eval.report import fmt, format_table
from eval.runner import load_average, local_store
from ingest.pipeline import Ingestor, build_ingestor
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService

GOAL_RATIO = 10.0
DEFAULT_SIZE = 1_000_000


def run(settings: Settings, *, size: int = DEFAULT_SIZE, only: list[str] | None = None) -> dict[str, Any]:
    """Time every case (or those named in `only`) and the normal file of its type, in one collection."""
    cases = [case for case in HOSTILE_CASES if not only or case.name in only]
    load_before = load_average()
    with tempfile.TemporaryDirectory(prefix="bench-hostile-") as folder:
        store, files = Path(folder) / "store", Path(folder) / "files"
        files.mkdir()
        own = settings.model_copy(update={"collection": "bench-hostile", "qdrant": local_store(settings, store)})
        service = RagService(own, embedder=FakeEmbedder())
        try:
            ingestor = build_ingestor(service)
            rows = _time_cases(ingestor, cases, files, size)
        finally:
            service.close()
    return {
        "date": dt.date.today().isoformat(),
        "size_bytes": size,
        "goal_ratio": GOAL_RATIO,
        "goal_met": all(row["ratio"] <= GOAL_RATIO for row in rows),
        "cases": rows,
        "cpu_cores": os.cpu_count(),
        "load_average": {"start": load_before, "end": load_average()},
    }


def _time_cases(ingestor: Ingestor, cases: list[HostileCase], folder: Path, size: int) -> list[dict[str, Any]]:
    normals: dict[tuple[str, int], dict[str, Any]] = {}
    rows = []
    for case in cases:
        crafted = _time_one(ingestor, case, folder, size)
        normal_size = crafted["bytes"] if case.suffix == ".pdf" else size
        key = (case.suffix, normal_size)
        if key not in normals:
            normals[key] = _time_one(ingestor, normal_case(case.suffix), folder, normal_size)
        normal = normals[key]
        rows.append(
            {
                **crafted,
                "normal_seconds": normal["seconds"],
                "normal_bytes": normal["bytes"],
                "ratio": round(crafted["seconds"] / normal["seconds"], 2) if normal["seconds"] else 0.0,
            }
        )
    return rows


def _time_one(ingestor: Ingestor, case: HostileCase, folder: Path, size: int) -> dict[str, Any]:
    path = write_case(case, folder, size)
    started = time.perf_counter()
    report = ingestor.ingest_paths([path])
    seconds = time.perf_counter() - started
    outcome = f"{report.chunks} chunks" if not report.failed else f"failed: {report.failed[0].reason}"
    return {
        "case": case.name,
        "what": case.what,
        "bytes": path.stat().st_size,
        "seconds": round(seconds, 3),
        "outcome": outcome,
    }


def format_result(result: dict[str, Any]) -> str:
    rows = [
        [
            row["case"],
            f"{row['bytes']:,}",
            fmt(row["seconds"], 2),
            fmt(row["normal_seconds"], 2),
            fmt(row["ratio"], 2),
            _short(row["outcome"]),
        ]
        for row in result["cases"]
    ]
    table = format_table(["case", "bytes", "seconds", "normal file, s", "ratio", "outcome"], rows)
    verdict = "met" if result["goal_met"] else "NOT met"
    worst = max(result["cases"], key=lambda row: row["ratio"], default=None)
    worst_text = f"; worst {worst['case']} at {worst['ratio']:.2f}x" if worst else ""
    return (
        f"{result['date']}, {result['cpu_cores']} cores, load average {result['load_average']['start']} → "
        f"{result['load_average']['end']}; fake embedder; each crafted file next to a normal file of its type and "
        f"size (the PDF bomb: a normal PDF of the bomb's own size)\n\n{table}\n\n"
        f"goal: no crafted file costs more than {result['goal_ratio']:.0f}x a normal one: {verdict}{worst_text}\n"
    )


def _short(text: str, width: int = 70) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"
