"""The hybrid search and the checked, cited answers as llama-index parts, for llama-index pipelines and agents.

- `HybridSearchRetriever` is a `BaseRetriever`: each hit becomes a `NodeWithScore` whose node is the stored
  chunk, with the article's id, title, url, date and source and the chunk's offsets in the article as metadata.
- `CitedAnswerQueryEngine` is a `CustomQueryEngine`: `query()` returns the answer RagService gives the API
  (evidence chosen, citations and claims checked, a refusal when the articles do not say) as a `Response`
  whose `source_nodes` are the cited sentences, each with its offsets in the article.

Both run on a RagService, so the settings, the collection and the LLM backend are the ones the API uses. Node
text is document text: a pipeline that puts it into its own prompts should treat it as data.
"""

from __future__ import annotations

import asyncio
from typing import Any

from llama_index.core.base.base_retriever import BaseRetriever
from llama_index.core.base.response.schema import Response
from llama_index.core.query_engine import CustomQueryEngine
from llama_index.core.schema import NodeRelationship, NodeWithScore, QueryBundle, RelatedNodeInfo, TextNode

from rag.service import RagService
from rag.types import Answer, Citation, Hit, SearchFilters

# offsets and ids help a program find the text again; a model reading the context does not need them
_NOT_FOR_THE_MODEL = ["article_id", "chunk_id", "chunk_index", "start", "end", "citation"]


class HybridSearchRetriever(BaseRetriever):
    """The project's hybrid search (Korean morphemes + dense vectors, fused) behind llama-index's retriever
    interface; `top_k` and `filters` as in `RagService.search` (None: the configured defaults)."""

    def __init__(
        self,
        service: RagService,
        *,
        top_k: int | None = None,
        filters: SearchFilters | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.service, self.top_k, self.filters = service, top_k, filters

    def _retrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        hits = self.service.search(query_bundle.query_str, top_k=self.top_k, filters=self.filters)
        return [hit_node(hit) for hit in hits]

    async def _aretrieve(self, query_bundle: QueryBundle) -> list[NodeWithScore]:
        # the search is CPU-bound and blocking: an agent's event loop keeps running meanwhile
        return await asyncio.to_thread(self._retrieve, query_bundle)


class CitedAnswerQueryEngine(CustomQueryEngine):
    """Cited answers as llama-index `Response`s: `str(response)` is the answer, `source_nodes` its citations in
    order (`metadata["citation"]` is the `[n]` in the text), `metadata` holds `refused`, `citations` (as the
    HTTP API returns them) and `checks` (the claim check of each sentence an LLM wrote)."""

    service: RagService
    top_k: int | None = None
    filters: SearchFilters | None = None

    def __init__(self, service: RagService, **kwargs: Any) -> None:
        super().__init__(service=service, **kwargs)

    def custom_query(self, query_str: str) -> Response:
        answer = self.service.answer(query_str, top_k=self.top_k, filters=self.filters)
        return self.as_response(answer)

    async def acustom_query(self, query_str: str) -> Response:
        # retrieval and generation block for seconds on a CPU: an agent's event loop keeps running meanwhile
        return await asyncio.to_thread(self.custom_query, query_str)

    def as_response(self, answer: Answer) -> Response:
        sources: dict[str, str | None] = {}
        for citation in answer.citations:
            if citation.doc_id not in sources:
                article = self.service.article(citation.doc_id)
                sources[citation.doc_id] = article.source if article else None
        return Response(
            response=answer.answer,
            source_nodes=[citation_node(c, sources[c.doc_id]) for c in answer.citations],
            metadata={
                "refused": answer.refused,
                "citations": [c.model_dump() for c in answer.citations],
                "checks": [c.model_dump() for c in answer.checks] if answer.checks is not None else None,
            },
        )


def hit_node(hit: Hit) -> NodeWithScore:
    """A retrieved chunk as a node: its text, and where it sits in which article."""
    chunk = hit.chunk
    metadata = {
        "article_id": chunk.article_id,
        "title": chunk.title,
        "url": chunk.url,
        "date": chunk.date.isoformat() if chunk.date else None,
        "source": chunk.source,
        "chunk_index": chunk.index,
        "start": chunk.start,
        "end": chunk.end,
    }
    node = _node(chunk.id, chunk.text, chunk.article_id, metadata, chunk.start, chunk.end)
    return NodeWithScore(node=node, score=hit.score)


def citation_node(citation: Citation, source: str | None) -> NodeWithScore:
    """A cited sentence as a node: the exact quote and its offsets in the stored article."""
    metadata = {
        "citation": citation.n,
        "article_id": citation.doc_id,
        "title": citation.title,
        "url": citation.url,
        "date": citation.date,
        "source": source,
        "chunk_id": citation.chunk_id,
        "start": citation.start,
        "end": citation.end,
    }
    node_id = f"{citation.chunk_id}:{citation.start}-{citation.end}"
    node = _node(node_id, citation.quote, citation.doc_id, metadata, citation.start, citation.end)
    return NodeWithScore(node=node, score=None)


def _node(node_id: str, text: str, article_id: str, metadata: dict[str, Any], start: int, end: int) -> TextNode:
    return TextNode(
        id_=node_id,
        text=text,
        metadata=metadata,
        start_char_idx=start,
        end_char_idx=end,
        relationships={NodeRelationship.SOURCE: RelatedNodeInfo(node_id=article_id)},
        excluded_llm_metadata_keys=_NOT_FOR_THE_MODEL,
        excluded_embed_metadata_keys=list(metadata),
    )
