"""The library used from many threads at once (the app answers requests concurrently, with no process-wide
lock): shared state stays consistent, and the one model that must run alone never waits on a consumer."""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest

from ingest.pipeline import build_ingestor
from rag.answer.evidence import EvidenceSelector
from rag.answer.llm import LLM_FAILED, LlamaCppLLM, Message
from rag.embed.fake import FakeEmbedder
from rag.errors import LLMError
from rag.service import RagService
from rag.text.analyzer import TermAnalyzer
from rag.types import Article, Chunk, Hit, Span

WORDS = [
    "internationalization",
    "responsibilities",
    "administrative",
    "governmental",
    "transportation",
    "relationships",
]


def _article(n: int) -> Article:
    return Article(
        id=f"port-{n}",
        title=f"항만 {n}번 부두 확장",
        text=f"해양수산부는 {n}번 부두를 확장한다고 밝혔다. 공사는 {2025 + n % 5}년에 끝난다.",
        date=dt.date(2024, 1, 1 + n % 28),
    )


def test_english_terms_are_the_same_from_many_threads() -> None:
    analyzer = TermAnalyzer()
    text = " ".join(WORDS * 3)
    expected = analyzer.terms(text)
    with ThreadPoolExecutor(8) as pool:
        results = list(pool.map(lambda _: analyzer.terms(text), range(400)))
    assert all(result == expected for result in results)


def test_the_sentence_vector_cache_survives_concurrent_questions() -> None:
    selector = EvidenceSelector(FakeEmbedder(), TermAnalyzer())
    selector.CACHE_SIZE = 5  # evicting all the time
    hits = []
    for n in range(8):
        text = f"첫 문장은 {n}번 항만 이야기다. 둘째 문장은 {n}번 부두 이야기다."
        chunk = Chunk(
            article_id=f"a{n}",
            index=0,
            text=text,
            start=0,
            end=len(text),
            sentences=[Span(start=0, end=text.index("둘째") - 1), Span(start=text.index("둘째"), end=len(text))],
        )
        hits.append(Hit(chunk=chunk, score=1.0))
    query = FakeEmbedder().embed_query("항만 이야기")

    def select(round_: int) -> int:
        return len(selector.select("항만", query, hits[round_ % 4 : round_ % 4 + 4], limit=8))

    with ThreadPoolExecutor(8) as pool:
        counts = list(pool.map(select, range(300)))
    assert set(counts) == {8}


def test_searches_during_an_ingest_see_whole_articles(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([_article(0)])
    errors: list[BaseException] = []
    writing = threading.Event()

    def ingest() -> None:
        writing.set()
        build_ingestor(fake_service).ingest_articles([_article(n) for n in range(1, 25)])

    def search() -> None:
        writing.wait()
        for _ in range(30):
            try:
                hits = fake_service.search("부두 확장", top_k=10)
                assert all(hit.chunk.text for hit in hits)
            except BaseException as exc:
                errors.append(exc)

    with ThreadPoolExecutor(5) as pool:
        futures = [pool.submit(ingest)] + [pool.submit(search) for _ in range(4)]
        for future in futures:
            future.result(timeout=300)
    assert not errors, errors[:3]
    found = {hit.chunk.article_id for hit in fake_service.search("부두 확장", top_k=30)}
    assert found == {f"port-{n}" for n in range(25)}  # the index searched last is not stale


def test_an_index_built_while_a_write_runs_is_not_kept(fake_service: RagService) -> None:
    build_ingestor(fake_service).ingest_articles([_article(0)])
    store = fake_service.store
    build = store._build_index

    def build_during_a_write() -> Any:
        with store._writing():  # a write begins and ends while the index is being read
            return build()

    store._build_index = build_during_a_write  # type: ignore[method-assign]
    assert fake_service.search("부두 확장")
    assert store._index is None  # the next search reads the store again
    store._build_index = build  # type: ignore[method-assign]
    assert fake_service.search("부두 확장") and store._index is not None


class _SlowLlama:
    """Stands in for llama_cpp.Llama: streams `pieces` chunks, `delay_s` apart, and notes when it was closed."""

    def __init__(self, pieces: int, delay_s: float) -> None:
        self.pieces, self.delay_s = pieces, delay_s
        self.produced = 0
        self.closed = threading.Event()

    def tokenize(self, text: bytes, add_bos: bool = False, special: bool = False) -> list[int]:
        return list(text)

    def create_completion(self, **_: Any) -> Iterator[dict[str, Any]]:
        try:
            for n in range(self.pieces):
                time.sleep(self.delay_s)
                self.produced += 1
                yield {"choices": [{"text": f"p{n} "}]}
        finally:
            self.closed.set()


def _llama(model: _SlowLlama) -> LlamaCppLLM:
    llm = LlamaCppLLM.__new__(LlamaCppLLM)  # the real class without loading a GGUF
    llm.name, llm._model, llm._lock = "local:test", model, threading.Lock()  # type: ignore[assignment]
    return llm


MESSAGES: list[Message] = [{"role": "user", "content": "q"}]


def test_a_reader_that_stops_reading_does_not_hold_the_local_model() -> None:
    llm = _llama(_SlowLlama(pieces=5, delay_s=0.01))
    abandoned = llm.stream(MESSAGES, max_tokens=8, temperature=0)
    assert next(abandoned) == "p0 "  # and then never read again
    answers: list[str] = []
    # a daemon thread: if the model stayed held, the test fails instead of hanging on the thread
    second = threading.Thread(
        target=lambda: answers.append("".join(llm.stream(MESSAGES, max_tokens=8, temperature=0))), daemon=True
    )
    second.start()
    second.join(timeout=60)
    assert answers == ["p0 p1 p2 p3 p4 "]
    abandoned.close()


def test_closing_the_stream_stops_the_local_generation() -> None:
    model = _SlowLlama(pieces=200, delay_s=0.02)
    stream = _llama(model).stream(MESSAGES, max_tokens=8, temperature=0)
    next(stream)
    stream.close()
    assert model.closed.wait(timeout=30)
    assert model.produced < 200


def test_a_local_model_error_reaches_the_reader() -> None:
    class Broken(_SlowLlama):
        def create_completion(self, **_: Any) -> Iterator[dict[str, Any]]:
            raise RuntimeError("llama_decode returned -1")

    with pytest.raises(LLMError) as raised:
        list(_llama(Broken(0, 0)).stream(MESSAGES, max_tokens=8, temperature=0))
    assert raised.value.message == LLM_FAILED and "llama_decode" in str(raised.value.__cause__)
