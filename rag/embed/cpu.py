"""What this machine's CPU offers the embedding engines: its model name and the instruction sets that decide
their speed.

ONNX Runtime's 8-bit kernels are fast with VNNI (int8 dot products) and slow without it: on a plain AVX2 CPU
EmbeddingGemma's 8-bit export ingested slower than torch (docs/embedding-engines.md). The engine measured
fastest on one CPU is therefore recorded with that CPU's signature, and a record from another CPU (a models
folder copied to another machine) is not trusted.
"""

from __future__ import annotations

import os
import platform
from pathlib import Path

from pydantic import BaseModel, Field

# the flags that select the engines' kernels (x86): vector width, int8 dot products, matrix units
RELEVANT_FLAGS = (
    "avx2",
    "fma",
    "avx512f",
    "avx512bw",
    "avx512_vnni",
    "avx_vnni",
    "avx512_bf16",
    "amx_tile",
    "amx_int8",
)
CPUINFO = Path("/proc/cpuinfo")


class CpuSignature(BaseModel):
    """The CPU as the engines see it; two machines with equal signatures run the engines alike."""

    model: str = Field(description="Model name as the operating system reports it.")
    flags: list[str] = Field(description="The RELEVANT_FLAGS this CPU has, in that order.")
    cores: int = Field(description="Logical cores visible to this process.")

    def describe(self) -> str:
        flags = " ".join(self.flags) or "none of the listed extensions"
        return f"{self.model}, {self.cores} cores, {flags}"

    def same_kind(self, other: CpuSignature) -> bool:
        """Same model and the same relevant flags (the core count may differ between containers)."""
        return self.model == other.model and self.flags == other.flags


def cpu_signature(cpuinfo: Path = CPUINFO) -> CpuSignature:
    """This machine's signature (Linux: from /proc/cpuinfo; elsewhere the platform's processor name, no flags)."""
    model, flags = _read_cpuinfo(cpuinfo)
    return CpuSignature(
        model=model or platform.processor() or platform.machine() or "unknown",
        flags=[flag for flag in RELEVANT_FLAGS if flag in flags],
        cores=len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1,
    )


def _read_cpuinfo(cpuinfo: Path) -> tuple[str, set[str]]:
    try:
        text = cpuinfo.read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "", set()
    model, flags = "", set[str]()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not model:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
        if model and flags:
            break
    return model, flags
