"""The ONNX embedding backend's choices and failures, without model files (the real export is checked against
torch in tests/test_embeddinggemma.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag import onnx_export
from rag.config import Settings
from rag.embeddings import load_embedder
from rag.errors import ModelProvisioningError


def _write_export(folder: Path, *, version: str = onnx_export.EXPORT_VERSION) -> Path:
    target = onnx_export.export_dir(folder)
    target.mkdir(parents=True)
    (target / onnx_export.MODEL_FILE).write_bytes(b"graph")
    (target / f"{onnx_export.MODEL_FILE}.data").write_bytes(b"weights")
    (target / onnx_export.MARKER_FILE).write_text(json.dumps({"version": version, "dimension": 8}), encoding="utf-8")
    return target


def test_an_export_counts_only_when_complete_and_made_by_this_exporter_version(tmp_path: Path) -> None:
    assert not onnx_export.is_exported(tmp_path)
    target = _write_export(tmp_path)
    assert onnx_export.is_exported(tmp_path)
    (target / f"{onnx_export.MODEL_FILE}.data").unlink()  # an interrupted copy
    assert not onnx_export.is_exported(tmp_path)

    older = tmp_path / "older"
    _write_export(older, version="st-onnx-fp32-0")
    assert not onnx_export.is_exported(older)  # provisioning exports it again

    garbled = tmp_path / "garbled"
    _write_export(garbled)
    (onnx_export.export_dir(garbled) / onnx_export.MARKER_FILE).write_text("[1, 2", encoding="utf-8")
    assert onnx_export.read_marker(garbled) is None and not onnx_export.is_exported(garbled)


def test_asking_for_onnx_without_an_export_says_how_to_make_one(tmp_path: Path) -> None:
    folder = tmp_path / "embeddinggemma-300m"
    folder.mkdir()
    with pytest.raises(ModelProvisioningError, match=r"python -m rag models --embedding embeddinggemma-300m"):
        load_embedder(str(folder), backend="onnx")


def test_a_broken_export_is_a_provisioning_error_that_names_it(tmp_path: Path) -> None:
    target = _write_export(tmp_path)  # marker and files present, but the graph is not ONNX
    with pytest.raises(ModelProvisioningError, match="cannot load the ONNX export") as caught:
        load_embedder(str(tmp_path), backend="auto")  # auto takes the export: it is there
    assert str(target / onnx_export.MODEL_FILE) in str(caught.value)
    assert "RAG_MODELS_EMBEDDING_BACKEND=torch" in str(caught.value)


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match="auto, torch, onnx"):
        load_embedder(str(tmp_path), backend="gpu")


def test_the_backend_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().models.embedding_backend == "auto"
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BACKEND", "torch")
    assert Settings().models.embedding_backend == "torch"
