"""The thinnest real path: the sample article through the real embedding model, local Qdrant and
(for `llm` tests) the local GGUF model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from ingest.pipeline import build_ingestor
from rag.answer.llm import LLM
from rag.config import LLMSettings, Settings
from rag.embed.torch_embedder import SentenceTransformerEmbedder
from rag.service import RagService
from rag.text.hangul import hangul_share

from .conftest import PROJECT_ROOT, SAMPLE_ARTICLE, make_settings

pytestmark = pytest.mark.slow

CO_CHAIRS = ("LG CNS", "이큐브랩")


@pytest.fixture(scope="module")
def sample_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    settings = make_settings(tmp_path_factory.mktemp("e2e"))
    service = RagService(settings)
    report = build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    service.close()
    assert report.added == 1 and not report.failed
    return settings


@pytest.fixture(scope="module")
def extractive(sample_settings: Settings, real_embedder: SentenceTransformerEmbedder) -> Iterator[RagService]:
    service = RagService(sample_settings, embedder=real_embedder)
    yield service
    service.close()


def _assert_cites_co_chairs(service: RagService, question: str) -> None:
    answer = service.answer(question)
    assert not answer.refused, answer
    stored = service.store.get_article(answer.citations[0].doc_id)
    assert stored is not None
    for citation in answer.citations:
        assert stored.article.text[citation.start : citation.end] == citation.quote
    assert any(all(name in c.quote for name in CO_CHAIRS) for c in answer.citations), answer


@pytest.mark.parametrize("question", ["얼라이언스 공동의장사는 어디인가?", "Who co-chairs the alliance?"])
def test_question_cites_the_co_chair_sentence_extractively(extractive: RagService, question: str) -> None:
    _assert_cites_co_chairs(extractive, question)


def test_unrelated_questions_are_refused_extractively(extractive: RagService) -> None:
    for question in ("What is the capital of France?", "비트코인 가격은 얼마인가?"):
        assert extractive.answer(question).refused, question


@pytest.mark.llm
def test_local_llm_answers_in_the_askers_language_citing_the_co_chairs(
    sample_settings: Settings, real_embedder: SentenceTransformerEmbedder, extractive: RagService, local_llm: LLM
) -> None:
    extractive.close()  # one client per embedded store folder
    service = RagService(
        sample_settings.model_copy(update={"llm": LLMSettings(backend="local")}), embedder=real_embedder, llm=local_llm
    )
    try:
        english = service.answer("Who co-chairs the alliance?")
        assert not english.refused, english
        assert hangul_share(english.answer) < 0.3, english.answer  # English, quoting Korean sources
        assert "LG CNS" in english.answer
        assert any(all(name in c.quote for name in CO_CHAIRS) for c in english.citations), english

        korean = service.answer("얼라이언스 공동의장사는 어디인가?")
        assert not korean.refused, korean
        assert hangul_share(korean.answer) >= 0.3, korean.answer  # Korean
        assert all(name in korean.answer for name in CO_CHAIRS), korean.answer
        assert any(all(name in c.quote for name in CO_CHAIRS) for c in korean.citations), korean
        stored = service.store.get_article(korean.citations[0].doc_id)
        assert stored is not None
        for citation in english.citations + korean.citations:
            assert stored.article.text[citation.start : citation.end] == citation.quote

        assert service.answer("What is the capital of France?").refused
        assert service.answer("비트코인 가격은 얼마인가?").refused
    finally:
        service.close()


def test_cli_ask_json_matches_the_contract(sample_settings: Settings, extractive: RagService) -> None:
    extractive.close()  # the CLI opens the embedded store itself (one process at a time)
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("RAG_")},
        "RAG_QDRANT_PATH": str(sample_settings.qdrant.path),
        "RAG_COLLECTION": sample_settings.collection,
        "RAG_MODELS_DIR": str(sample_settings.models.dir),
        "RAG_MODELS_EMBEDDING": sample_settings.models.embedding,  # the model the collection was built with
        "RAG_LLM_BACKEND": "none",
    }
    stored = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    for question in ("얼라이언스 공동의장사는 어디인가?", "Who co-chairs the alliance?"):
        result = subprocess.run(
            [sys.executable, "-m", "rag", "ask", question, "--json"],
            cwd=PROJECT_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert result.returncode == 0, result.stderr
        body = json.loads(result.stdout)
        assert set(body) >= {"answer", "refused", "citations", "timings_ms"}
        assert body["refused"] is False, question
        assert any(all(name in c["quote"] for name in CO_CHAIRS) for c in body["citations"]), (question, body)
        for citation in body["citations"]:
            assert set(citation) == {"n", "doc_id", "title", "url", "date", "chunk_id", "quote", "start", "end"}
            assert f"[{citation['n']}]" in body["answer"]
            assert citation["quote"] in stored  # the quote is real article text
