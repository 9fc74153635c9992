"""One battery of searches (dense, keyword, fused with several weights and both fusions) whose rankings two
stores must agree on: the in-process scorer against Qdrant's query API, Edge against that oracle."""

from __future__ import annotations

from collections.abc import Sequence

from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import SearchFilters

Ranking = list[tuple[str, float]]


def search_battery(
    service: RagService, store: QdrantStore, queries: Sequence[str], filters: SearchFilters | None = None
) -> list[Ranking]:
    """Each query's rankings, (chunk id, score rounded to 4 places), for every search in the battery."""
    out = []
    for query in queries:
        dense = service.embedder.embed_query(query)
        sparse = service.sparse.encode_query(query)
        sound = service.sparse.encode_sound_query(query)
        for hits in (
            store.search_dense(dense, limit=10, filters=filters),
            store.search_sparse(sparse, limit=10, filters=filters),
            store.search(dense, [(sparse, 1.0)], limit=10, candidates=20, fusion="dbsf", filters=filters),
            store.search(dense, [(sparse, 2.0)], limit=10, candidates=20, fusion="dbsf", filters=filters),
            # a fractional weight: the dense side is listed twice, the keyword side once
            store.search(dense, [(sparse, 0.5)], limit=10, candidates=20, fusion="dbsf", filters=filters),
            # two keyword sides (a question's terms and its sound keys)
            store.search(dense, [(sparse, 1.0), (sound, 0.5)], limit=10, candidates=20, fusion="dbsf", filters=filters),
            store.search(dense, [(sparse, 2.0)], limit=10, candidates=20, fusion="rrf", rrf_k=5, filters=filters),
        ):
            out.append([(h.chunk.id, round(h.score, 4)) for h in hits])
    return out
