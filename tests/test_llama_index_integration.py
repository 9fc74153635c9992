"""The search and the cited answers as llama-index parts, inside llama-index pipelines (real Qdrant local mode,
fake embedder, scripted LLM), and the README's example run as written."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
from collections.abc import Iterator
from contextlib import redirect_stdout
from pathlib import Path

import pytest
from llama_index.core.llms.mock import MockLLM
from llama_index.core.query_engine import RetrieverQueryEngine
from llama_index.core.schema import MetadataMode
from llama_index.core.tools import QueryEngineTool

from ingest.pipeline import build_ingestor
from rag.answer.llm import Message
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.embed.torch_embedder import SentenceTransformerEmbedder
from rag.integrations.llama_index import CitedAnswerQueryEngine, HybridSearchRetriever
from rag.service import RagService
from rag.types import Article, SearchFilters

from .conftest import PROJECT_ROOT, SAMPLE_ARTICLE, make_settings, models_dir
from .doubles import ScriptedLLM
from .test_api import ARTICLE as ALLIANCE

BUDGET = Article(
    id="budget",
    title="내년 예산안 발표",
    text="정부는 내년 예산안을 656조원으로 편성했다. 보건복지 분야 예산이 가장 크게 늘었다.",
    date=dt.date(2024, 8, 27),
    url="https://example.org/budget",
    source="moef",
)
QUESTION = "초대 공동의장사는 어디인가?"


def _citing(needle: str) -> ScriptedLLM:
    """A model that answers with the evidence sentence holding `needle`, citing its number."""

    def reply(messages: list[Message]) -> str:
        for line in messages[-1]["content"].splitlines():
            if needle in line and line.startswith("["):
                return f"초대 공동의장사는 LG CNS와 이큐브랩이다 [{line[1 : line.index(']')]}]."
        return "NOT_FOUND"

    return ScriptedLLM(reply)


@pytest.fixture
def service(settings: Settings) -> Iterator[RagService]:
    service = RagService(settings, embedder=FakeEmbedder(), llm=_citing("LG CNS"))
    build_ingestor(service).ingest_articles([ALLIANCE, BUDGET])
    yield service
    service.close()


def test_the_retriever_returns_the_search_hits_as_nodes_with_their_place_in_the_article(service: RagService) -> None:
    nodes = HybridSearchRetriever(service, top_k=3).retrieve(QUESTION)
    hits = service.search(QUESTION, top_k=3)
    assert [n.node.node_id for n in nodes] == [h.chunk.id for h in hits]
    assert [n.score for n in nodes] == [h.score for h in hits]
    top = nodes[0]
    assert top.node.metadata == {
        "article_id": "alliance",
        "title": ALLIANCE.title,
        "url": "https://example.org/alliance",
        "date": "2024-04-20",
        "source": "icn",
        "chunk_index": 0,
        "start": top.node.metadata["start"],
        "end": top.node.metadata["end"],
    }
    assert ALLIANCE.text[top.node.metadata["start"] : top.node.metadata["end"]] == top.node.get_content()
    assert top.node.ref_doc_id == "alliance"


def test_the_retriever_applies_filters(service: RagService) -> None:
    only_budget = HybridSearchRetriever(service, filters=SearchFilters(source="moef")).retrieve(QUESTION)
    assert {n.node.metadata["article_id"] for n in only_budget} == {"budget"}


def test_a_retriever_query_engine_builds_its_context_from_the_nodes(service: RagService) -> None:
    # MockLLM answers with the prompt it was given: what a llama-index synthesizer shows its model
    engine = RetrieverQueryEngine.from_args(HybridSearchRetriever(service, top_k=2), llm=MockLLM())
    response = engine.query(QUESTION)
    assert [n.node.metadata["article_id"] for n in response.source_nodes] == ["alliance", "budget"]
    prompt = str(response)
    assert "이큐브랩이 선임됐다" in prompt and "title: 스마트시티 융합 얼라이언스 출범" in prompt
    assert "url: https://example.org/alliance" in prompt
    # offsets and ids are for programs, not for the model
    assert "start:" not in prompt and "article_id:" not in prompt
    assert "start:" in response.source_nodes[0].node.get_content(MetadataMode.ALL)


def test_the_query_engine_returns_the_checked_answer_with_its_citations_as_source_nodes(
    service: RagService,
) -> None:
    engine = CitedAnswerQueryEngine(service, top_k=3)
    response = engine.query(QUESTION)
    answer = service.answer(QUESTION, top_k=3)
    assert str(response) == answer.answer and not answer.refused
    assert "LG CNS" in str(response) and "[1]" in str(response)
    assert response.metadata is not None and response.metadata["refused"] is False
    assert response.metadata["citations"] == [c.model_dump() for c in answer.citations]
    assert [c["verdict"] for c in response.metadata["checks"]] == [c.verdict for c in answer.checks or []]
    first = response.source_nodes[0].node
    assert first.get_content() == answer.citations[0].quote
    assert ALLIANCE.text[first.metadata["start"] : first.metadata["end"]] == first.get_content()
    assert "이큐브랩이 선임됐다" in first.get_content()
    assert {k: first.metadata[k] for k in ("citation", "article_id", "url", "date", "source")} == {
        "citation": 1,
        "article_id": "alliance",
        "url": "https://example.org/alliance",
        "date": "2024-04-20",
        "source": "icn",
    }


def test_a_refusal_is_a_response_without_sources(service: RagService) -> None:
    # no article from this source: nothing to cite
    response = CitedAnswerQueryEngine(service, filters=SearchFilters(source="nowhere")).query(QUESTION)
    assert response.metadata is not None and response.metadata["refused"] is True
    assert response.source_nodes == [] and str(response) == "색인된 기사에서 이에 대한 내용을 찾지 못했습니다."


def test_an_agent_tool_and_async_callers_get_the_same_cited_answer(service: RagService) -> None:
    engine = CitedAnswerQueryEngine(service)
    tool = QueryEngineTool.from_defaults(engine, name="policy_news", description="Cited answers from policy news")
    output = tool.call(QUESTION)
    assert output.content == service.answer(QUESTION).answer
    assert output.raw_output.source_nodes[0].node.metadata["article_id"] == "alliance"
    awaited = asyncio.run(engine.aquery(QUESTION))
    assert str(awaited) == output.content
    nodes = asyncio.run(HybridSearchRetriever(service, top_k=1).aretrieve(QUESTION))
    assert nodes[0].node.metadata["article_id"] == "alliance"


def _readme_example() -> str:
    readme = (PROJECT_ROOT / "README.md").read_text(encoding="utf-8")
    section = readme.split("## Use from llama-index", 1)[1]
    match = re.search(r"```python\n(.*?)```", section, re.DOTALL)
    assert match, "README's llama-index section has no python block"
    return match.group(1)


def test_the_readme_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # a small collection of the sample article under the settings the example reads from the environment
    for name, value in {
        "RAG_QDRANT_PATH": str(tmp_path / "qdrant"),
        "RAG_MODELS_EMBEDDING": "fake",
        "RAG_MODELS_DIR": str(models_dir()),
        "RAG_ANSWER_MIN_EVIDENCE_SCORE_KOREAN": "0.05",
        "RAG_ANSWER_MIN_EVIDENCE_SCORE_OTHER": "0.05",
        "RAG_ANSWER_MIN_EVIDENCE_SCORE_ENGLISH": "0.05",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(tmp_path)  # no .env of the checkout
    text = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    builder = RagService(Settings())
    build_ingestor(builder).ingest_articles([Article(id="sample", text=text, title="스마트시티 융합 얼라이언스 출범")])
    builder.close()
    printed = io.StringIO()
    with redirect_stdout(printed):
        exec(compile(_readme_example(), "README.md", "exec"), {})
    lines = printed.getvalue().splitlines()
    assert any("스마트시티 융합 얼라이언스 출범" in line for line in lines)  # a retrieved chunk's title
    cited = [re.fullmatch(r"\[(\d+)\] (.*) \((\d+)-(\d+)\)", line) for line in lines]
    quotes = [(m.group(2), int(m.group(3)), int(m.group(4))) for m in cited if m]
    assert quotes, "the example printed no cited sentence"
    reader = RagService(Settings())
    stored = reader.article("sample")
    reader.close()
    assert stored is not None
    assert all(stored.text[start:end] == quote for quote, start, end in quotes)


@pytest.mark.slow
def test_with_the_real_model_the_engine_cites_the_co_chair_sentence(
    tmp_path: Path, real_embedder: SentenceTransformerEmbedder
) -> None:
    service = RagService(make_settings(tmp_path), embedder=real_embedder)
    build_ingestor(service).ingest_paths([SAMPLE_ARTICLE])
    try:
        nodes = HybridSearchRetriever(service, top_k=3).retrieve("Who co-chairs the alliance?")
        response = CitedAnswerQueryEngine(service).query("Who co-chairs the alliance?")
        stored = service.article(nodes[0].node.metadata["article_id"])
    finally:
        service.close()
    assert stored is not None and any("이큐브랩" in n.node.get_content() for n in nodes)
    assert response.metadata is not None and not response.metadata["refused"]
    assert any("LG CNS" in n.node.get_content() and "이큐브랩" in n.node.get_content() for n in response.source_nodes)
    for cited in response.source_nodes:
        assert stored.text[cited.node.metadata["start"] : cited.node.metadata["end"]] == cited.node.get_content()
