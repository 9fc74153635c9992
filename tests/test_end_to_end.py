"""The thinnest real path: the sample article through the real embedding model and local Qdrant."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from ingest.pipeline import build_ingestor
from rag.config import Settings
from rag.embeddings import SentenceTransformerEmbedder
from rag.service import RagService

from .conftest import PROJECT_ROOT, SAMPLE_ARTICLE, make_settings

pytestmark = pytest.mark.slow

CO_CHAIRS = ("LG CNS", "이큐브랩")


@pytest.fixture(scope="module")
def sample_settings(tmp_path_factory: pytest.TempPathFactory) -> Settings:
    return make_settings(tmp_path_factory.mktemp("e2e"))


@pytest.fixture(scope="module")
def service(sample_settings: Settings, real_embedder: SentenceTransformerEmbedder) -> Iterator[RagService]:
    service = RagService(sample_settings, embedder=real_embedder)
    report = build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    assert report.added == 1 and not report.failed
    yield service
    service.close()


@pytest.mark.parametrize("question", ["Who co-chairs the alliance?", "얼라이언스 공동의장사는 어디인가?"])
def test_sample_questions_cite_the_co_chair_sentence(service: RagService, question: str) -> None:
    answer = service.answer(question)
    assert not answer.refused, answer
    stored = service.store.get_article(answer.citations[0].doc_id)
    assert stored is not None
    for citation in answer.citations:
        assert stored.article.text[citation.start : citation.end] == citation.quote
    assert any(all(name in c.quote for name in CO_CHAIRS) for c in answer.citations), answer


def test_cli_ask_json_matches_the_contract(sample_settings: Settings, service: RagService, tmp_path: Path) -> None:
    service.close()  # the CLI opens the embedded store itself (one process at a time)
    env = {
        "RAG_QDRANT_PATH": str(sample_settings.qdrant.path),
        "RAG_COLLECTION": sample_settings.collection,
        "RAG_MODELS_DIR": str(sample_settings.models.dir),
        "PATH": "/usr/bin:/bin",
        "HF_HUB_OFFLINE": "1",
    }
    result = subprocess.run(
        [sys.executable, "-m", "rag", "ask", "얼라이언스 공동의장사는 어디인가?", "--json"],
        cwd=PROJECT_ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr
    body = json.loads(result.stdout)
    assert body["refused"] is False
    assert any(all(name in c["quote"] for name in CO_CHAIRS) for c in body["citations"])
    text = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    assert all(c["quote"] in text for c in body["citations"])
