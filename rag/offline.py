"""Keeps hub-aware libraries off the network: no machine this project runs on can reach a model hub."""

from __future__ import annotations

import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger(__name__)


def configure_offline_environment() -> None:
    """Point the hub-aware libraries at local data before they are imported.

    huggingface_hub reads HF_HUB_OFFLINE when it is imported, so call this first. Without it, loading a
    local folder still probes the hub (4x slower here, and it hangs where the network drops packets).
    tiktoken and NLTK download data on first use; llama-index-core ships both, so point them there.
    `setdefault` keeps any value the user set.
    """
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    static = _llama_index_static_dir()
    if static is None:
        logger.debug("llama-index-core not installed; TIKTOKEN_CACHE_DIR and NLTK_DATA left unset")
        return
    os.environ.setdefault("TIKTOKEN_CACHE_DIR", str(static / "tiktoken_cache"))
    os.environ.setdefault("NLTK_DATA", str(static / "nltk_cache"))


def _llama_index_static_dir() -> Path | None:
    """Locate llama_index/core/_static without importing llama_index.core (a slow import)."""
    try:
        spec = importlib.util.find_spec("llama_index.core")
    except ModuleNotFoundError:
        return None
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations))) / "_static"
