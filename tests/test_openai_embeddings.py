"""RAG_MODELS_EMBEDDING_BACKEND=openai against a fake OpenAI-compatible embedding server (tests/doubles.py) that
returns the local model's vectors: the fake embedder's in the fast tests, e5-small's through torch in the slow one."""

from __future__ import annotations

import json
import pickle
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from pydantic import SecretStr

from rag.__main__ import main as rag_main
from rag.config import Settings, load_settings
from rag.embed.base import model_identity
from rag.embed.factory import create_embedder
from rag.embed.fake import FakeEmbedder
from rag.embed.openai_embedder import OpenAIEmbedder
from rag.errors import ConfigurationError, EmbeddingServerError, ModelProvisioningError
from rag.service import RagService

from .conftest import SAMPLE_ARTICLE, make_settings
from .doubles import FakeEmbeddingServer

SERVED = "test/tiny-embedder"
DIMENSION = 64
WORDS = ["[UNK]", "query:", "passage:", "a", "b", "c", "d", "e", "f", "g", "h", "예산", "철도"]


def _model_folder(folder: Path, *, max_seq_length: int = 512) -> Path:
    """A model folder as provisioning leaves it, minus the weights: the server computes the vectors."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    (folder / "1_Pooling").mkdir(parents=True)
    tokenizer = Tokenizer(models.WordLevel({w: i for i, w in enumerate(WORDS)}, unk_token="[UNK]"))
    tokenizer.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tokenizer.save(str(folder / "tokenizer.json"))
    files = {
        "config_sentence_transformers.json": {"prompts": {"query": "query: ", "document": "passage: "}},
        "sentence_bert_config.json": {"max_seq_length": max_seq_length},
        "modules.json": [
            {"idx": 0, "name": "0", "path": "", "type": "sentence_transformers.models.Transformer"},
            {"idx": 1, "name": "1", "path": "1_Pooling", "type": "sentence_transformers.models.Pooling"},
        ],
        "1_Pooling/config.json": {"word_embedding_dimension": DIMENSION},
        "provenance.json": {"weights_sha256": "0" * 64},
    }
    for name, content in files.items():
        (folder / name).write_text(json.dumps(content), encoding="utf-8")
    return folder


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return _model_folder(tmp_path / "tiny-embedder")


@pytest.fixture
def server() -> Iterator[FakeEmbeddingServer]:
    with FakeEmbeddingServer(FakeEmbedder(DIMENSION).embed_documents, served_model=SERVED) as running:
        yield running


def _client(folder: Path, server: FakeEmbeddingServer, **options: object) -> OpenAIEmbedder:
    embedder = OpenAIEmbedder(folder, base_url=server.url, served_model=SERVED, **options)  # type: ignore[arg-type]
    server.requests.clear()  # the start-up probe
    server.arrivals.clear()
    return embedder


def test_batches_of_the_configured_size_in_the_callers_order(folder: Path, server: FakeEmbeddingServer) -> None:
    embedder = _client(folder, server, batch_size=16, concurrency=2)
    server.delay_s = 0.05  # long enough for the two workers' requests to overlap
    texts = [f"문장 {i} " + "단어 " * (i % 7) for i in range(70)]
    vectors = embedder.embed_documents(texts)
    assert sorted(server.batch_sizes()) == [6, 16, 16, 16, 16]
    assert server.max_in_flight == 2  # bounded by embedding_server_concurrency, and used
    assert {body["model"] for body in server.requests} == {SERVED}
    expected = FakeEmbedder(DIMENSION).embed_documents(["passage: " + text for text in texts])
    np.testing.assert_allclose(vectors, expected, atol=1e-6)  # the caller's order, the folder's passage prompt


def test_questions_carry_the_query_prompt_and_the_collection_sees_the_local_model(
    folder: Path, server: FakeEmbeddingServer
) -> None:
    embedder = _client(folder, server)
    np.testing.assert_allclose(
        embedder.embed_query("예산"), FakeEmbedder(DIMENSION).embed_query("query: 예산"), atol=1e-6
    )
    assert server.requests[-1]["input"] == ["query: 예산"]
    # the same identity as the local engines give the folder: vectors from either mix in one collection
    assert (embedder.model_id, embedder.dimension) == (model_identity(folder), DIMENSION)
    assert embedder.count_tokens("a b c") == 4  # "passage:" + three words, in the model's own tokenizer
    assert embedder.embed_documents([]).shape == (0, DIMENSION)


def test_ingest_workers_count_tokens_as_the_server_backend_does(folder: Path, server: FakeEmbeddingServer) -> None:
    """`python -m ingest --workers K` hands the workers a picklable counter read from the same model folder."""
    embedder = _client(folder, server)
    counter = embedder.token_counter()
    assert counter is not None
    copy = pickle.loads(pickle.dumps(counter))
    texts = ["a b c", "예산 철도 예산", "", "unknown words here"]
    assert [copy(text) for text in texts] == [embedder.count_tokens(text) for text in texts] == [4, 4, 1, 4]


def test_429_and_503_are_retried_with_the_servers_retry_after(folder: Path, server: FakeEmbeddingServer) -> None:
    embedder = _client(folder, server, retries=3)
    server.failures = [(429, "1"), (503, None)]
    vector = embedder.embed_query("철도")
    np.testing.assert_allclose(vector, FakeEmbedder(DIMENSION).embed_query("query: 철도"), atol=1e-6)
    assert len(server.requests) == 3 and all(body["input"] == ["query: 철도"] for body in server.requests)
    assert server.arrivals[1] - server.arrivals[0] >= 0.9  # waited the second the 429 asked for
    assert server.arrivals[2] > server.arrivals[1]  # then backed off and tried again


def test_a_server_that_keeps_failing_is_an_embedding_error_after_the_retries(
    folder: Path, server: FakeEmbeddingServer, caplog: pytest.LogCaptureFixture
) -> None:
    embedder = _client(folder, server, retries=1)
    server.failures = [(503, None)] * 3
    with pytest.raises(EmbeddingServerError) as caught:
        embedder.embed_documents(["a b"])
    assert len(server.requests) == 2  # the request and one retry
    # users get a short message; the status, the address and the server's words go to the log
    assert caught.value.message == "the embedding service failed; try again later"
    assert caught.value.http_status == 502
    assert "answered 503" in caplog.text and server.url in caplog.text and "busy" in caplog.text


def test_an_unreachable_server_is_an_embedding_error(
    folder: Path, server: FakeEmbeddingServer, caplog: pytest.LogCaptureFixture
) -> None:
    closed = server.url.replace(str(server.port), "9")  # discard port: nothing listens
    with pytest.raises(EmbeddingServerError, match="cannot be reached") as caught:
        OpenAIEmbedder(folder, base_url=closed, served_model=SERVED, retries=0, timeout_s=5)
    assert closed not in caught.value.message and closed in caplog.text


def test_a_server_running_another_model_is_refused(folder: Path, server: FakeEmbeddingServer) -> None:
    server.reported_model = "BAAI/bge-m3"
    with pytest.raises(ConfigurationError, match="RAG_MODELS_EMBEDDING_SERVER_MODEL") as caught:
        OpenAIEmbedder(folder, base_url=server.url, served_model=SERVED)
    assert "'BAAI/bge-m3'" in caught.value.message


def test_vectors_of_another_size_are_refused(folder: Path, server: FakeEmbeddingServer) -> None:
    server.dimension_cut = 32
    with pytest.raises(ConfigurationError, match="32-dimensional") as caught:
        OpenAIEmbedder(folder, base_url=server.url, served_model=SERVED)
    assert "RAG_MODELS_EMBEDDING" in caught.value.message


def test_long_texts_are_cut_at_the_models_limit(tmp_path: Path, server: FakeEmbeddingServer) -> None:
    embedder = _client(_model_folder(tmp_path / "short", max_seq_length=6), server)
    embedder.embed_documents(["a b c d e f g h", "a b"])
    assert server.requests[-1]["input"] == ["passage: a b c d", "passage: a b"]
    assert embedder.count_tokens("a b c d e f g h") == 9  # counts stay whole: chunk budgets see every token


def test_a_folder_that_is_not_provisioned_says_how_to_provision_it(tmp_path: Path, server: FakeEmbeddingServer) -> None:
    with pytest.raises(ModelProvisioningError, match="python -m rag models --embedding multilingual-e5-small"):
        OpenAIEmbedder(tmp_path / "multilingual-e5-small", base_url=server.url, served_model=SERVED)


def test_the_backend_needs_an_endpoint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BACKEND", "openai")
    with pytest.raises(ConfigurationError, match="RAG_MODELS_EMBEDDING_SERVER_URL"):
        load_settings(_env_file=None)


def _server_settings(tmp_path: Path, folder: Path, server: FakeEmbeddingServer, settings: Settings) -> Settings:
    models = settings.models.model_copy(
        update={
            "dir": folder.parent,
            "embedding": folder.name,
            "embedding_backend": "openai",
            "embedding_server_url": server.url,
            "embedding_batch_size": 2,
        }
    )
    return settings.model_copy(update={"models": models})


def test_the_service_embeds_through_the_server_its_settings_name(
    tmp_path: Path, folder: Path, server: FakeEmbeddingServer, settings: Settings
) -> None:
    from ingest.pipeline import build_ingestor

    configured = _server_settings(tmp_path, folder, server, settings)
    configured.models.embedding_server_model = SERVED
    configured.models.embedding_server_api_key = SecretStr("s3cret")
    service = RagService(configured)
    try:
        assert isinstance(service.embedder, OpenAIEmbedder)
        report = build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
        assert report.added == 1 and not report.failed
        assert max(server.batch_sizes()) == 2 and len(server.requests) >= 3  # the probe, then batches of two
        answer = service.answer("스마트시티 융합 얼라이언스는 언제 출범했나?")
        assert not answer.refused and answer.citations
        assert service.collection_spec().fingerprint.startswith(model_identity(folder) + "|dim=64|")
    finally:
        service.close()
    assert {headers["authorization"] for headers in server.headers} == {"Bearer s3cret"}


def test_the_served_name_defaults_to_the_models_hub_id(tmp_path: Path, settings: Settings) -> None:
    folder = _model_folder(tmp_path / "models" / "multilingual-e5-small")
    served = "intfloat/multilingual-e5-small"
    with FakeEmbeddingServer(FakeEmbedder(DIMENSION).embed_documents, served_model=served) as server:
        embedder = create_embedder(_server_settings(tmp_path, folder, server, settings))
        assert isinstance(embedder, OpenAIEmbedder) and embedder.served_model == served
        assert server.requests[0]["model"] == served


def test_config_masks_the_servers_key_and_names_the_server(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("RAG_MODELS_EMBEDDING", "multilingual-e5-small")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_BACKEND", "openai")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_SERVER_URL", "http://gpu-box:8080/v1")
    monkeypatch.setenv("RAG_MODELS_EMBEDDING_SERVER_API_KEY", "very-secret")
    assert rag_main(["config"]) == 0
    out = capsys.readouterr().out
    assert "very-secret" not in out
    payload = json.loads(out)
    assert payload["models"]["embedding_server_api_key"] == "********"
    assert payload["embedding_choice"]["engine"] == "openai"
    assert payload["embedding_choice"]["served_model"] == "intfloat/multilingual-e5-small"


@pytest.mark.slow
def test_answers_through_the_server_equal_answers_through_the_local_model(
    tmp_path: Path, real_model_path: Path
) -> None:
    """A server running e5-small (here: torch in this process) and the local engine give one collection the same
    vectors: ingested through the server, it answers alike through either."""
    from eval.bench import SAMPLE_QUESTIONS
    from ingest.pipeline import build_ingestor
    from rag.embed.torch_embedder import SentenceTransformerEmbedder

    # the server's model embeds what it is sent: the client has added the prompts
    server_model = SentenceTransformerEmbedder(real_model_path, threads=2, query_prefix="", passage_prefix="")
    local_settings = make_settings(tmp_path)
    with FakeEmbeddingServer(server_model.embed_documents, served_model="intfloat/multilingual-e5-small") as server:
        remote_settings = local_settings.model_copy(deep=True)
        remote_settings.models.embedding_backend = "openai"
        remote_settings.models.embedding_server_url = server.url
        remote = RagService(remote_settings)
        try:
            assert isinstance(remote.embedder, OpenAIEmbedder)
            assert build_ingestor(remote).ingest_paths([SAMPLE_ARTICLE]).added == 1
            through_server = [remote.answer(question) for question in SAMPLE_QUESTIONS]
            passages = [line for line in SAMPLE_ARTICLE.read_text(encoding="utf-8").splitlines() if line.strip()][:12]
            server_vectors = remote.embedder.embed_documents(passages)
        finally:
            remote.close()
        assert len(server.requests) > 1
    local = RagService(local_settings)  # the same collection, opened with the local engine
    try:
        through_local = [local.answer(question) for question in SAMPLE_QUESTIONS]
        local_vectors = local.embedder.embed_documents(passages)
    finally:
        local.close()
    assert np.sum(server_vectors * local_vectors, axis=1).min() >= 0.9999
    for remote_answer, local_answer in zip(through_server, through_local, strict=True):
        assert remote_answer.answer == local_answer.answer
        assert remote_answer.refused == local_answer.refused
        assert [(c.doc_id, c.quote, c.start, c.end) for c in remote_answer.citations] == [
            (c.doc_id, c.quote, c.start, c.end) for c in local_answer.citations
        ]
