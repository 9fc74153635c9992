"""Input that costs far more than its size: every crafted megabyte is extracted, and documents past the limits
are refused with a reason. The figures (crafted vs normal files) are `python -m eval bench-hostile`'s job."""

from __future__ import annotations

import json
import multiprocessing
from collections.abc import Callable
from multiprocessing.connection import Connection
from pathlib import Path
from typing import Any

import pytest

from eval.hostile_inputs import HOSTILE_CASES, HostileCase, normal_case, pdf_file, write_case
from ingest.loaders import LoadFailure, load_file
from ingest.loaders.html_charset import declared_charset
from ingest.pipeline import build_ingestor
from rag.config import IngestSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.service import RagService
from rag.types import Article

MEGABYTE = 1_000_000
# A hang detector, not a speed limit: linear extraction of a crafted megabyte takes seconds (the slowest,
# a line of `![`, 15-30 s on a busy 2-core machine); the backtracking it replaced took hours.
HANG_SECONDS = 300
# Patterns the Markdown parser spends 5-10 s a megabyte on: a part of one shows that it stays linear, for a part
# of the suite's time. Emphasis left open took the old regular expressions ~5 min for half a megabyte; the
# others they handled in linear time.
PARSER_HEAVY_BYTES = {
    "md-emphasis-openers": 512_000,
    "md-strong-underscores": 512_000,
    "md-link-openers": 256_000,
    "md-less-than": 256_000,
    "md-table-rows": 256_000,
}
PROSE = "정부는 오늘 새로운 스마트시티 정책을 발표했다."


def _finishes(work: Callable[[], Any], seconds: float = HANG_SECONDS) -> Any:
    """`work()`'s result from a forked process, or a test failure if it is still running after `seconds` (the
    process is then killed: a regular expression that backtracks holds the interpreter and cannot be stopped
    from a thread)."""
    receiving, sending = multiprocessing.Pipe(duplex=False)

    def child(pipe: Connection) -> None:
        pipe.send(work())

    process = multiprocessing.get_context("fork").Process(target=child, args=(sending,))
    process.start()
    sending.close()
    finished = receiving.poll(seconds)
    result = receiving.recv() if finished else None
    if not finished:
        process.kill()
    process.join()
    assert finished, f"still running after {seconds} s: the work grows faster than its input"
    return result


def _load_outcome(path: Path, max_document_chars: int | None = None) -> list[dict[str, Any]]:
    items = load_file(path, max_document_chars=max_document_chars)
    return [{"text": item.text} if isinstance(item, Article) else {"failure": item.reason} for item in items]


@pytest.mark.parametrize("case", HOSTILE_CASES, ids=lambda case: case.name)
def test_a_crafted_megabyte_is_extracted_in_linear_time(case: HostileCase, tmp_path: Path) -> None:
    path = write_case(case, tmp_path, PARSER_HEAVY_BYTES.get(case.name, MEGABYTE))
    # room for the whole text: what is timed is extraction, not the length check
    outcome = _finishes(lambda: _load_outcome(path, max_document_chars=2 * MEGABYTE))
    assert len(outcome) == 1
    if case.refused_for:
        assert case.refused_for in outcome[0]["failure"]
    else:
        assert PROSE in outcome[0]["text"]  # the article around the crafted part is kept


def test_markdown_keeps_the_words_and_drops_the_markup(tmp_path: Path) -> None:
    markdown = (
        "# 정책 발표\n\n"
        "정부는 **새 정책**을 [누리집](https://gov.example/a)에 공개했다. ![사진](https://img.example/p.png)\n\n"
        "<!-- 편집자 메모 -->\n\n"
        "[ref]: https://ref.example\n\n"
        "1. 첫째 항목\n2. 둘째 항목\n\n"
        "| 도시 | 예산 |\n|---|---|\n| 세종 | 150억원 |\n\n"
        "```\n코드 내용\n```\n\n"
        "<div>블록 <b>안의</b> 글</div>\n"
    )
    path = tmp_path / "note.md"
    path.write_text(markdown, encoding="utf-8")
    text = _load_outcome(path)[0]["text"]
    assert text.startswith("정책 발표\n\n정부는 새 정책을 누리집에 공개했다.")
    assert "1. 첫째 항목\n2. 둘째 항목" in text and "| 세종 | 150억원 |" in text
    assert "코드 내용" in text and "블록 안의 글" in text
    for markup in ("**", "](", "https://", "<!--", "편집자", "[ref]", "사진", "<b>", "```"):
        assert markup not in text


def test_the_declared_charset_is_found_after_many_broken_meta_tags() -> None:
    head = b"<html><head>" + b"<meta " * 8_000 + b'<meta http-equiv="Content-Type" content="text/html; charset=EUC-KR">'
    assert declared_charset(head) == "euc-kr"
    assert declared_charset(b"<meta charset = ' utf-8 '>") == "utf-8"
    assert declared_charset(b"<p>charset=utf-8</p>") is None  # only inside a meta tag
    assert declared_charset(b" " * 70_000 + b'<meta charset="cp949">') is None  # past the sniffed head


# --- limits per document ---------------------------------------------------------------------------


def test_a_pdf_over_the_character_limit_is_a_failure_naming_the_setting(tmp_path: Path) -> None:
    path = tmp_path / "report.pdf"
    path.write_bytes(write_case(normal_case(".pdf"), tmp_path, 30_000).read_bytes())
    [failure] = list(load_file(path, max_document_chars=5_000))
    assert isinstance(failure, LoadFailure) and failure.path == str(path)
    assert "over the limit of 5,000" in failure.reason and "RAG_INGEST_MAX_DOCUMENT_CHARS" in failure.reason
    [article] = list(load_file(path, max_document_chars=100_000))
    assert isinstance(article, Article) and len(article.text) > 5_000


def test_a_pdf_bomb_stops_being_read_at_the_first_page_that_would_pass_the_limit(tmp_path: Path) -> None:
    line = b"(" + b"The Committee kept the rate. " * 40 + b") '\n"
    path = tmp_path / "bomb.pdf"
    path.write_bytes(pdf_file(b"BT /F1 11 Tf 72 720 Td 14 TL\n" + line * 20_000 + b"ET\n", pages=200, compress=True))
    assert path.stat().st_size < 150_000  # inflates to 23 MB of text a page
    [failure] = list(load_file(path, max_document_chars=1_000_000))
    assert isinstance(failure, LoadFailure)
    assert "by page 1 of 200, where reading stopped" in failure.reason


def test_a_jsonl_record_over_the_limit_fails_alone_and_names_its_line(tmp_path: Path) -> None:
    path = tmp_path / "dump.jsonl"
    lines = [
        {"id": "a", "text": "짧은 기사다."},
        {"id": "b", "text": "긴 기사. " * 2_000},
        {"id": "c", "text": "또 짧다."},
    ]
    path.write_text("\n".join(json.dumps(line, ensure_ascii=False) for line in lines), encoding="utf-8")
    items = list(load_file(path, max_document_chars=5_000))
    assert [item.id for item in items if isinstance(item, Article)] == ["a", "c"]
    assert [
        (item.path, "RAG_INGEST_MAX_DOCUMENT_CHARS" in item.reason) for item in items if isinstance(item, LoadFailure)
    ] == [(f"{path}:2", True)]


def test_a_document_cut_into_too_many_chunks_fails_and_the_rest_is_ingested(settings: Settings) -> None:
    limited = settings.model_copy(update={"ingest": IngestSettings(max_chunks_per_document=3)})
    service = RagService(limited, embedder=FakeEmbedder())
    long_text = " ".join(f"Sentence {i} is about the port budget." for i in range(200))
    articles = [Article(id="long", text=long_text, origin="long.txt"), Article(id="short", text="Rail news.")]
    report = build_ingestor(service).ingest_articles(articles)
    service.close()
    assert report.added == 1 and [f.path for f in report.failed] == ["long.txt"]
    assert "over the limit of 3" in report.failed[0].reason
    assert "RAG_INGEST_MAX_CHUNKS_PER_DOCUMENT" in report.failed[0].reason
