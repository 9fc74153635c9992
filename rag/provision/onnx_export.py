"""Export a sentence-transformers folder to one ONNX graph with 8-bit weights, for rag/embed/onnx_embedder.py.

Why: EmbeddingGemma-300M reads English questions over Korean articles far better than e5-small, but through
torch a question takes ~110-150 ms on one CPU thread. One ONNX graph (transformer, pooling, both dense layers,
normalisation) run by ONNX Runtime with its matrix weights stored as 8-bit blocks (MatMulNBits, blocks of 128,
int8 compute) takes ~38 ms on 2 threads for a 31-token question (51 ms on one), and its vectors stay within
cosine 0.999 of torch's, so a collection embedded by either backend serves the other.

How, measured on Gemma 3 (2026-11-29): `torch.onnx.export(..., dynamo=True)` with dynamic batch and sequence
axes (the legacy TorchScript exporter fails on it), then ONNX Runtime's weight-only quantiser. Dynamic int8
quantisation (`quantize_dynamic`, per channel) was faster still (33 ms on one thread) but moved vectors to
cosine 0.96-0.99; 4-bit weights 0.96-0.97; full precision took 81 ms. The export is checked against torch
on fixed texts before it is moved into place, and a marker records what made it, so a folder under its
final name is complete and verified.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import tempfile
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from rag.embed.onnx_embedder import (
    FP32,
    INPUT_NAMES,
    INT8,
    MARKER_FILE,
    MODEL_FILE,
    OnnxSession,
    OnnxVariant,
    export_dir,
    is_exported,
)
from rag.errors import ModelProvisioningError
from rag.files import staged_directory

logger = logging.getLogger(__name__)

OUTPUT_NAME = "sentence_embedding"
WEIGHT_BITS = 8
BLOCK_SIZE = 128  # 32: cosine 0.9997 but questions ~25% slower; 256: 0.998
INT8_COMPUTE = 4  # MatMulNBits accuracy_level 4: int8 activations per block, the fast path on x86 CPUs
MIN_COSINE = 0.998  # measured 0.9991-0.9994 for EmbeddingGemma at block 128; 4-bit weights fall to ~0.96
# texts of both languages, both prompts' lengths, padded together: the check covers masks and batching
CHECK_TEXTS = (
    "task: search result | query: Who co-chairs the alliance?",
    "task: search result | query: 공동감사는 누가 맡나?",
    "title: none | text: 얼라이언스는 공동의장사로 LG CNS와 아이큐브랩을 선임하고, 공동감사는 두 회사가 맡는다.",
    "title: none | text: The Federal Reserve decided to maintain the target range for the federal funds rate.",
)


def ensure_onnx_export(model_folder: Path, *, full_precision: bool = True) -> Path:
    """Return `model_folder/onnx`, exporting and quantising the model there first if needed (~2 min, ~3 GB
    peak memory for EmbeddingGemma), and keeping the graph before quantisation in `model_folder/onnx-fp32`
    (~1.2 GB: the fastest engine on CPUs whose 8-bit kernels are slow) unless `full_precision` is False.
    Raises ModelProvisioningError if an export's vectors differ from torch's."""
    target = export_dir(model_folder)
    need_int8 = not is_exported(model_folder, INT8)
    need_fp32 = full_precision and not is_exported(model_folder, FP32)
    if not need_int8 and not need_fp32:
        logger.debug("ONNX exports already in %s", model_folder)
        return target
    started = time.perf_counter()
    logger.info("Exporting %s to ONNX (about a minute, once)", model_folder.name)
    model = _load_torch_model(model_folder)  # once: exported, then the reference for the checks
    with contextlib.ExitStack() as stack:
        # the full-precision graph is built in its staging folder when kept, else in a scratch folder
        fp32_target = export_dir(model_folder, FP32)
        if need_fp32:
            fp32_scratch = stack.enter_context(staged_directory(fp32_target))
        else:
            fp32_scratch = Path(stack.enter_context(tempfile.TemporaryDirectory(dir=model_folder)))
        graph = fp32_scratch / fp32_target.name / FP32.model_file
        with _exporters_quiet():
            _export(model, graph)
        if need_fp32:
            _check_and_mark(model, model_folder, graph, FP32, {})
        if need_int8:
            built = stack.enter_context(staged_directory(target)) / target.name
            logger.info("Storing its weights as %d-bit blocks", WEIGHT_BITS)
            with _exporters_quiet():
                _quantize(graph, built / MODEL_FILE)
            _check_and_mark(
                model, model_folder, built / MODEL_FILE, INT8, {"weight_bits": WEIGHT_BITS, "block_size": BLOCK_SIZE}
            )
    del model
    logger.info("ONNX export ready in %.0f s: %s", time.perf_counter() - started, model_folder)
    return target


def _check_and_mark(
    model: Any, model_folder: Path, onnx_file: Path, variant: OnnxVariant, facts: dict[str, Any]
) -> None:
    """Compare the export's vectors with torch's; write its marker (what made it) only if they match."""
    cosine, dimension = _compare_with_torch(model, model_folder, onnx_file)
    if cosine < MIN_COSINE:
        raise ModelProvisioningError(
            f"the ONNX export of {model_folder} ({variant.engine}) gives vectors at cosine {cosine:.4f} to torch's "
            f"(need ≥ {MIN_COSINE}); it was not installed. Set RAG_MODELS_EMBEDDING_BACKEND=torch to use the model "
            "without it, and report the torch/onnxruntime versions."
        )
    marker = {
        "version": variant.version,
        **facts,
        "dimension": dimension,
        "min_cosine_to_torch": round(cosine, 6),
        "packages": package_versions(),
    }
    (onnx_file.parent / MARKER_FILE).write_text(json.dumps(marker, indent=2) + "\n", encoding="utf-8")
    logger.info("ONNX export %s checked: cosine to torch ≥ %.4f", variant.engine, cosine)


@contextlib.contextmanager
def _exporters_quiet() -> Iterator[None]:
    """The exporter prints its progress and the graph rewriter logs every rule at INFO: hundreds of lines that
    say nothing to a user provisioning models. They go to this module's debug log instead."""
    noisy = [logging.getLogger(name) for name in ("onnxscript", "onnx_ir", "torch.onnx", "onnxruntime")]
    levels = [log.level for log in noisy]
    for log in noisy:
        log.setLevel(logging.ERROR)  # e.g. "torchvision is not installed. Skipping torchvision::nms"
    printed = io.StringIO()
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(printed):
            warnings.simplefilter("ignore")
            yield
    finally:
        for log, level in zip(noisy, levels, strict=True):
            log.setLevel(level)
        logger.debug("exporter output:\n%s", printed.getvalue())


def _load_torch_model(model_folder: Path) -> Any:
    # torch, onnx and the quantiser take seconds to import; only an export needs them
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(model_folder), device="cpu", local_files_only=True).eval()


def _export(model: Any, destination: Path) -> None:
    # torch, onnx and the quantiser take seconds to import; only an export needs them
    import torch

    class _SentenceEmbedding(torch.nn.Module):
        """The whole sentence-transformers pipeline as one function of (ids, mask)."""

        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            return self.model({"input_ids": input_ids, "attention_mask": attention_mask})[OUTPUT_NAME]

    example = model.tokenizer(list(CHECK_TEXTS[:2]), padding=True, return_tensors="pt")
    batch = torch.export.Dim("batch", min=1, max=4096)
    sequence = torch.export.Dim("sequence", min=2, max=int(model.max_seq_length or 512))
    axes = {0: batch, 1: sequence}
    with torch.no_grad():
        program = torch.onnx.export(
            _SentenceEmbedding().eval(),
            (example["input_ids"], example["attention_mask"]),
            dynamo=True,
            input_names=list(INPUT_NAMES),
            output_names=[OUTPUT_NAME],
            dynamic_shapes={name: axes for name in INPUT_NAMES},
            verbose=False,
        )
    if program is None:  # pragma: no cover - dynamo=True always returns a program
        raise ModelProvisioningError(f"torch.onnx.export returned nothing for {destination}")
    destination.parent.mkdir(parents=True)
    program.save(str(destination), external_data=True)


def _quantize(source: Path, destination: Path) -> None:
    # torch, onnx and the quantiser take seconds to import; only an export needs them
    import onnx
    from onnxruntime.quantization.matmul_nbits_quantizer import DefaultWeightOnlyQuantConfig, MatMulNBitsQuantizer

    config = DefaultWeightOnlyQuantConfig(
        block_size=BLOCK_SIZE, is_symmetric=True, accuracy_level=INT8_COMPUTE, bits=WEIGHT_BITS
    )
    quantizer = MatMulNBitsQuantizer(onnx.load(str(source)), algo_config=config)
    quantizer.process()
    destination.parent.mkdir(parents=True, exist_ok=True)
    quantizer.model.save_model_to_file(str(destination), use_external_data_format=True)


def _compare_with_torch(model: Any, model_folder: Path, onnx_file: Path) -> tuple[float, int]:
    """Lowest cosine between torch's and the export's vectors for CHECK_TEXTS (one padded batch), and the
    vector size."""
    expected = model.encode(list(CHECK_TEXTS), normalize_embeddings=True, show_progress_bar=False)
    session = OnnxSession(model_folder, onnx_file, threads=2)
    actual = session.run(list(CHECK_TEXTS))
    cosines = np.sum(np.asarray(expected, dtype=np.float32) * actual, axis=1)
    return float(cosines.min()), int(actual.shape[1])


def package_versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    versions = {}
    for package in ("torch", "onnx", "onnxscript", "onnxruntime", "sentence-transformers", "numpy"):
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "?"
    return versions
