from __future__ import annotations

import itertools

from ingest.chunking import ChunkingPlan, chunk_article, embedding_text, split_sentences
from rag.embeddings import FakeEmbedder
from rag.types import Article

from .conftest import SAMPLE_ARTICLE


def _counter() -> FakeEmbedder:
    return FakeEmbedder()


def test_sentence_spans_slice_the_text_exactly() -> None:
    text = "첫 문장입니다. 두 번째 문장입니다!\n제목 같은 줄\nThird sentence here. Fourth one?"
    spans = split_sentences(text)
    pieces = [text[s.start : s.end] for s in spans]
    assert pieces[0] == "첫 문장입니다."
    assert "제목 같은 줄" in pieces
    assert pieces[-1] == "Fourth one?"
    assert all(p == p.strip() and p for p in pieces)


def test_chunks_fit_the_budget_keep_offsets_and_cover_every_sentence() -> None:
    text = SAMPLE_ARTICLE.read_text(encoding="utf-8")
    article = Article(id="a", text=text, title="스마트시티 융합 얼라이언스 출범")
    counter = _counter()
    plan = ChunkingPlan(max_tokens=80, overlap_sentences=1)
    chunks = chunk_article(article, counter.count_tokens, plan)
    assert len(chunks) > 3
    for index, chunk in enumerate(chunks):
        assert chunk.index == index
        assert text[chunk.start : chunk.end] == chunk.text
        assert counter.count_tokens(embedding_text(chunk)) <= plan.max_tokens
        for span in chunk.sentences:
            assert chunk.start <= span.start < span.end <= chunk.end
    covered = {(s.start, s.end) for c in chunks for s in c.sentences}
    assert covered == {(s.start, s.end) for s in split_sentences(text)}


def test_overlap_repeats_the_last_sentence_of_the_previous_chunk() -> None:
    text = " ".join(f"Sentence number {i} says something." for i in range(30))
    article = Article(id="b", text=text)
    chunks = chunk_article(article, _counter().count_tokens, ChunkingPlan(max_tokens=40, overlap_sentences=1))
    assert len(chunks) > 2
    for previous, current in itertools.pairwise(chunks):
        assert current.sentences[0] == previous.sentences[-1]


def test_a_sentence_longer_than_the_budget_is_cut_into_fitting_pieces() -> None:
    text = "word " * 400 + "end."
    article = Article(id="c", text=text.strip())
    counter = _counter()
    chunks = chunk_article(article, counter.count_tokens, ChunkingPlan(max_tokens=50, overlap_sentences=0))
    assert len(chunks) > 5
    assert all(counter.count_tokens(c.text) <= 50 for c in chunks)
    assert chunks[-1].text.endswith("end.")


def test_empty_text_gives_no_chunks() -> None:
    assert chunk_article(Article(id="d", text="   "), _counter().count_tokens, ChunkingPlan(64, 1)) == []
