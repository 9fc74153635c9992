from __future__ import annotations

import itertools

from ingest.chunking import ChunkingPlan, chunk_article, embedding_text, split_sentences
from rag.embed.fake import FakeEmbedder
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


def _sentences(text: str) -> list[str]:
    return [text[s.start : s.end] for s in split_sentences(text)]


def test_korean_dotted_dates_do_not_end_sentences() -> None:
    # government press releases write dates as "2026. 7. 1." and "’26. 8. 31."
    text = "시행일(2026. 7. 1.)부터 적용된다. 정부는 2019. 3. 1. 발표했다. 기한은 ’26. 8. 31.까지이다."
    assert _sentences(text) == [
        "시행일(2026. 7. 1.)부터 적용된다.",
        "정부는 2019. 3. 1. 발표했다.",
        "기한은 ’26. 8. 31.까지이다.",
    ]


def test_english_sentences_before_a_number_still_split() -> None:
    assert _sentences("Rates rose 5%. 3 members dissented. The Fed met.") == [
        "Rates rose 5%.",
        "3 members dissented.",
        "The Fed met.",
    ]


def test_a_caption_in_brackets_stays_one_sentence() -> None:
    text = "스마트시티 융합 얼라이언스 출범 (사진. 벤처기업협회)\nThe Fed (Federal Reserve. Board) met. It rose."
    assert _sentences(text) == [
        "스마트시티 융합 얼라이언스 출범 (사진. 벤처기업협회)",
        "The Fed (Federal Reserve. Board) met.",
        "It rose.",
    ]


def test_a_bracket_that_never_closes_changes_nothing() -> None:
    text = "괄호가 열림 ( 그리고. 닫히지 않음. 끝."
    assert _sentences(text) == ["괄호가 열림 ( 그리고.", "닫히지 않음.", "끝."]
    # nor does one closed only on the next line: a line break always ends a sentence
    assert _sentences("Next (x.\ny) z.") == ["Next (x.", "y) z."]


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


def test_an_unbroken_run_is_cut_with_work_linear_in_its_length() -> None:
    # base64 blobs and tables flattened to one line: the search for each cut used to re-count the whole rest
    # of the run at every step (hours for a 10 MB field); count how many characters the counter is shown
    counted: list[int] = []

    def counter(text: str) -> int:
        counted.append(len(text))
        return len(text) // 4 + 1

    text = "x" * 200_000
    chunks = chunk_article(Article(id="blob", text=text), counter, ChunkingPlan(max_tokens=100, overlap_sentences=0))
    assert all(counter(c.text) <= 100 for c in chunks)
    assert "".join(c.text for c in chunks) == text
    assert sum(counted) < 50 * len(text)
