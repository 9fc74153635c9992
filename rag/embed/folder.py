"""What a sentence-transformers model folder says about itself without loading its weights: tokenizer, prompts,
sequence limit, vector size. The ONNX and server backends read these; torch's sentence-transformers reads its own.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rag.errors import ModelProvisioningError

if TYPE_CHECKING:
    from tokenizers import Tokenizer

DEFAULT_MAX_TOKENS = 512


def load_tokenizer(model_folder: Path) -> Tokenizer:
    from tokenizers import Tokenizer  # loaded on first use, like onnxruntime

    try:
        tokenizer = Tokenizer.from_file(str(model_folder / "tokenizer.json"))
    except Exception as exc:  # tokenizers raises a bare Exception for unreadable files
        raise ModelProvisioningError(
            f"cannot read {model_folder / 'tokenizer.json'} ({exc}); provision the model again with "
            "`python -m rag models`"
        ) from exc
    tokenizer.no_truncation()
    tokenizer.no_padding()
    return tokenizer


def read_prompts(model_folder: Path) -> dict[str, str]:
    prompts = _read_json(model_folder / "config_sentence_transformers.json").get("prompts") or {}
    return {str(k): str(v) for k, v in prompts.items()} if isinstance(prompts, dict) else {}


def read_max_tokens(model_folder: Path) -> int:
    value = _read_json(model_folder / "sentence_bert_config.json").get("max_seq_length")
    return int(value) if isinstance(value, int) and value > 0 else DEFAULT_MAX_TOKENS


def read_dimension(model_folder: Path) -> int | None:
    """The size of the vectors the folder's pipeline produces: the last Dense layer's output, else the pooling
    layer's input size; None when the folder does not say."""
    dimension = None
    modules = _read_json_list(model_folder / "modules.json")
    for module in modules:
        config = _read_json(model_folder / str(module.get("path", "")) / "config.json")
        if str(module.get("type", "")).endswith("Dense") and isinstance(config.get("out_features"), int):
            dimension = config["out_features"]
        elif str(module.get("type", "")).endswith("Pooling") and dimension is None:
            size = config.get("word_embedding_dimension")
            dimension = size if isinstance(size, int) else None
    return dimension


def _read_json_list(path: Path) -> list[dict[str, Any]]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return []
    return [item for item in data if isinstance(item, dict)] if isinstance(data, list) else []


def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}
