"""The real embedder: small calls run on `query_threads` and leave torch's thread count as it was."""

from __future__ import annotations

import threading

import numpy as np
import pytest

from rag.embed.fake import FakeEmbedder


@pytest.mark.slow
def test_small_calls_use_query_threads_and_restore_the_setting(real_embedder) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(2)
    seen: list[int] = []
    original = real_embedder._encode_now

    def spy(texts: list[str]) -> np.ndarray:
        seen.append(torch.get_num_threads())
        return original(texts)

    real_embedder._encode_now = spy
    try:
        one = real_embedder.embed_query("얼라이언스 공동의장사는 어디인가?")
        many = real_embedder.embed_queries(["얼라이언스 공동의장사는 어디인가?"] * 20)
    finally:
        del real_embedder._encode_now
    assert seen == [1, 2]  # a question on one thread; a large call on all of them
    assert torch.get_num_threads() == 2
    assert float(one @ many[0]) == pytest.approx(1.0, abs=1e-4)  # same vector either way
    assert (real_embedder.query_prefix, real_embedder.passage_prefix) == ("query: ", "passage: ")  # the folder's


@pytest.mark.slow
def test_concurrent_small_calls_restore_the_thread_count(real_embedder) -> None:  # type: ignore[no-untyped-def]
    import torch

    torch.set_num_threads(2)
    errors: list[BaseException] = []

    def ask(i: int) -> None:
        try:
            real_embedder.embed_query(f"question {i}")
        except BaseException as exc:  # pragma: no cover - reported below
            errors.append(exc)

    workers = [threading.Thread(target=ask, args=(i,)) for i in range(6)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    assert not errors
    assert torch.get_num_threads() == 2


def test_fake_embedder_is_deterministic_and_unit_length() -> None:
    fake = FakeEmbedder()
    first, second = fake.embed_query("공동의장사"), fake.embed_query("공동의장사")
    assert np.array_equal(first, second)
    assert float(np.linalg.norm(first)) == pytest.approx(1.0)
