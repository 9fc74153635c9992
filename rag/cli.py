"""Helpers shared by the command lines: logging to stderr, one-line errors, exit codes."""

from __future__ import annotations

import json
import logging
import os
import sys
from typing import Any

from rag.types import without_surrogates

EXIT_OK = 0
EXIT_PARTIAL = 1
EXIT_USAGE = 2


def configure_logging(level: str = "INFO") -> None:
    """Logs go to stderr so that `--json` output on stdout stays one clean object."""
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "sentence_transformers", "urllib3", "qdrant_client"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    # "Token indices sequence length is longer than the specified maximum": the chunker counts the tokens of
    # whole sentences to cut them to size; nothing that long is ever sent to the model
    logging.getLogger("transformers.tokenization_utils_base").setLevel(logging.ERROR)


def limit_native_threads() -> None:
    """docs/architecture.md, trap 3: numpy's BLAS threads fight torch's on 2 cores; keep BLAS single-threaded.

    Must run before numpy is imported anywhere in the process.
    """
    for variable in ("OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS", "OMP_NUM_THREADS"):
        os.environ.setdefault(variable, "1")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def print_json(payload: Any) -> None:
    """One JSON object on stdout, always valid UTF-8 (a non-UTF-8 file name shows as U+FFFD, not a raw byte)."""
    write_out(json.dumps(payload, ensure_ascii=False) + "\n")
    sys.stdout.flush()


def write_out(text: str) -> None:
    sys.stdout.write(without_surrogates(text))


def fail(message: str, code: int = EXIT_USAGE) -> int:
    sys.stderr.write(f"error: {without_surrogates(message)}\n")
    return code
