"""The ONNX embedding backend's choices and failures, without model files (the real export is checked against
torch in tests/test_embeddinggemma.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rag.config import Settings
from rag.embed import onnx_embedder
from rag.embed.factory import load_embedder
from rag.errors import ModelProvisioningError
from rag.provision import onnx_export


def _write_export(folder: Path, *, version: str = onnx_embedder.EXPORT_VERSION) -> Path:
    target = onnx_embedder.export_dir(folder)
    target.mkdir(parents=True)
    (target / onnx_embedder.MODEL_FILE).write_bytes(b"graph")
    (target / f"{onnx_embedder.MODEL_FILE}.data").write_bytes(b"weights")
    (target / onnx_embedder.MARKER_FILE).write_text(json.dumps({"version": version, "dimension": 8}), encoding="utf-8")
    return target


def test_an_export_counts_only_when_complete_and_made_by_this_exporter_version(tmp_path: Path) -> None:
    assert not onnx_embedder.is_exported(tmp_path)
    target = _write_export(tmp_path)
    assert onnx_embedder.is_exported(tmp_path)
    (target / f"{onnx_embedder.MODEL_FILE}.data").unlink()  # an interrupted copy
    assert not onnx_embedder.is_exported(tmp_path)

    older = tmp_path / "older"
    _write_export(older, version="st-onnx-fp32-0")
    assert not onnx_embedder.is_exported(older)  # provisioning exports it again

    garbled = tmp_path / "garbled"
    _write_export(garbled)
    (onnx_embedder.export_dir(garbled) / onnx_embedder.MARKER_FILE).write_text("[1, 2", encoding="utf-8")
    assert onnx_embedder.read_marker(garbled) is None and not onnx_embedder.is_exported(garbled)


def test_asking_for_onnx_without_an_export_says_how_to_make_one(tmp_path: Path) -> None:
    folder = tmp_path / "embeddinggemma-300m"
    folder.mkdir()
    with pytest.raises(ModelProvisioningError, match=r"python -m rag models --embedding embeddinggemma-300m"):
        load_embedder(str(folder), backend="onnx")


def test_a_broken_export_is_a_provisioning_error_that_names_it(tmp_path: Path) -> None:
    target = _write_export(tmp_path)  # marker and files present, but the graph is not ONNX
    with pytest.raises(ModelProvisioningError, match="cannot load the ONNX export") as caught:
        load_embedder(str(tmp_path), backend="auto")  # auto takes the export: it is there
    assert str(target / onnx_embedder.MODEL_FILE) in str(caught.value)
    assert "RAG_MODELS_EMBEDDING_BACKEND=torch" in str(caught.value)


def test_an_unknown_backend_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ModelProvisioningError, match="auto, torch, onnx"):
        load_embedder(str(tmp_path), backend="gpu")


def test_the_backend_is_a_setting(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().models.embedding_backend == "auto"
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BACKEND", "torch")
    assert Settings().models.embedding_backend == "torch"


# ---- a tiny real graph: masked mean of a word-vector table, normalised, behind a word-level tokenizer ------

WORDS = ["[UNK]", "[PAD]", "query:", "passage:", "budget", "rail", "alliance", "예산", "철도", "얼라이언스"]


def _tiny_model(folder: Path, *, max_seq_length: int = 6) -> Path:
    """A model folder as provisioning leaves it: tokenizer, prompts, sequence limit and an ONNX export whose
    graph is (ids, mask) → unit masked-mean vectors. Padding that leaked into the mean, rows put back in the
    wrong order or a missing prefix would all change its vectors."""
    import numpy as np
    import onnx
    from onnx import TensorProto, helper, numpy_helper
    from tokenizers import Tokenizer, models, pre_tokenizers

    folder.mkdir(parents=True)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    (folder / "config_sentence_transformers.json").write_text(
        json.dumps({"prompts": {"query": "query: ", "document": "passage: "}}), encoding="utf-8"
    )
    (folder / "sentence_bert_config.json").write_text(json.dumps({"max_seq_length": max_seq_length}))
    table = np.random.default_rng(7).normal(size=(len(WORDS), 8)).astype(np.float32)
    nodes = [
        helper.make_node("Gather", ["table", "input_ids"], ["vectors"]),
        helper.make_node("Cast", ["attention_mask"], ["mask"], to=TensorProto.FLOAT),
        helper.make_node("Unsqueeze", ["mask", "last"], ["mask3"]),
        helper.make_node("Mul", ["vectors", "mask3"], ["kept"]),
        helper.make_node("ReduceSum", ["kept", "seq_axis"], ["summed"], keepdims=0),
        helper.make_node("LpNormalization", ["summed"], [onnx_export.OUTPUT_NAME], axis=-1, p=2),
    ]
    graph = helper.make_graph(
        nodes,
        "tiny",
        [
            helper.make_tensor_value_info(name, TensorProto.INT64, ["batch", "sequence"])
            for name in onnx_embedder.INPUT_NAMES
        ],
        [helper.make_tensor_value_info(onnx_export.OUTPUT_NAME, TensorProto.FLOAT, ["batch", 8])],
        initializer=[
            numpy_helper.from_array(table, "table"),
            numpy_helper.from_array(np.array([-1], dtype=np.int64), "last"),
            numpy_helper.from_array(np.array([1], dtype=np.int64), "seq_axis"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 18)])
    target = onnx_embedder.export_dir(folder)
    target.mkdir()
    onnx.save_model(
        model,
        str(target / onnx_embedder.MODEL_FILE),
        save_as_external_data=True,
        location=f"{onnx_embedder.MODEL_FILE}.data",
        size_threshold=64,  # the table goes to the .data file, as real weights do; small constants stay inline
    )
    (target / onnx_embedder.MARKER_FILE).write_text(
        json.dumps({"version": onnx_embedder.EXPORT_VERSION, "dimension": 8}), encoding="utf-8"
    )
    return folder


def test_onnx_embedder_pads_batches_and_keeps_the_callers_order(tmp_path: Path) -> None:
    import numpy as np

    from rag.embed.onnx_embedder import OnnxEmbedder

    embedder = load_embedder(str(_tiny_model(tmp_path / "tiny")), batch_size=2, threads=2)
    assert isinstance(embedder, OnnxEmbedder)  # `auto` took the export
    assert (embedder.dimension, embedder.query_prefix, embedder.passage_prefix) == (8, "query: ", "passage: ")
    texts = ["budget rail alliance 예산", "철도", "alliance alliance", "예산 철도 얼라이언스 budget rail"]
    together = embedder.embed_documents(texts)  # sorted by length inside, batches of two, padded
    alone = np.vstack([embedder.embed_documents([t]) for t in texts])
    assert np.allclose(together, alone, atol=1e-6)  # padding is masked out, rows come back in order
    assert np.allclose(np.linalg.norm(together, axis=1), 1.0, atol=1e-5)
    assert not np.allclose(together[0], together[1])
    # the prompts are the folder's: a question and a passage of the same words differ by the prefix word
    assert not np.allclose(embedder.embed_query("budget"), embedder.embed_documents(["budget"])[0])
    # ten texts take the batch session (all threads), one the question session: the same vectors
    many = embedder.embed_queries(["rail"] * 10)
    assert np.allclose(many, embedder.embed_query("rail"), atol=1e-6)


def test_onnx_embedder_cuts_long_texts_but_counts_every_token(tmp_path: Path) -> None:
    import numpy as np

    embedder = load_embedder(str(_tiny_model(tmp_path / "tiny", max_seq_length=3)), threads=1)
    long_text = "budget rail alliance 예산 철도"
    assert embedder.count_tokens(long_text) == 6  # "passage:" + five words: chunk budgets see them all
    # only "passage: budget rail" reaches the model, as sentence-transformers truncates
    assert np.allclose(embedder.embed_documents([long_text]), embedder.embed_documents(["budget rail"]), atol=1e-6)
