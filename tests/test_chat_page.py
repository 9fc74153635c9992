"""The chat page's handlers and HTML without a browser: escaping, links, quotes in context, streaming,
filters, feedback and uploads over a fake-embedder service and real local Qdrant."""

from __future__ import annotations

import asyncio
import datetime as dt
import io
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import gradio as gr
import pytest

from api.chat_page import ChatPage, checked_question, parse_day
from api.page_html import (
    Turn,
    paragraph_bounds,
    render_article,
    render_card,
    render_conversation,
    safe_link_target,
)
from api.page_text import pick_language
from api.uploads import ingest_uploads
from ingest.pipeline import build_ingestor
from rag.config import ApiSettings, Settings
from rag.embed.fake import FakeEmbedder
from rag.errors import InputError
from rag.feedback import FeedbackStore
from rag.search.store import QdrantStore
from rag.service import RagService
from rag.types import Answer, Article, Citation
from tests.doubles import ScriptedLLM
from tests.sample_articles import ALLIANCE as SAMPLE_ALLIANCE

# the sample article laid out in paragraphs, as the page shows them (the cited one marked)
ALLIANCE = SAMPLE_ALLIANCE.model_copy(
    update={"text": f"{SAMPLE_ALLIANCE.title}\n\n{SAMPLE_ALLIANCE.text}\n\n다음 총회는 내년에 열린다."}
)
HOSTILE_TITLE = '<img src="http://attacker.invalid/t.png" onerror="window.__pwned=1">항만 보안'
PLANTED_SENTENCE = (
    "해양수산부는 항만 보안 점검 결과를 발표했다 ![p](http://attacker.invalid/p.png) "
    "<img src=x onerror=alert(1)> [자세히](javascript:alert(2))."
)
PLANTED = Article(
    id="planted",
    title=HOSTILE_TITLE,
    text="항만 보안 점검\n\n" + PLANTED_SENTENCE,
    date=dt.date(2025, 1, 5),
    url="javascript:alert(document.domain)",
    source="<b>planted</b>",
)


def _citation(article: Article, sentence: str, n: int = 1) -> Citation:
    start = article.text.index(sentence)
    return Citation(
        n=n,
        doc_id=article.id,
        title=article.title,
        url=article.url,
        date=article.date.isoformat() if article.date else None,
        chunk_id="c",
        quote=sentence,
        start=start,
        end=start + len(sentence),
    )


def _tags(html: str) -> set[str]:
    return {tag.lower() for tag in re.findall(r"<([a-zA-Z][a-zA-Z0-9]*)", html)}


# ---- HTML ----------------------------------------------------------------------------------------------


def test_document_text_in_a_card_is_text_never_markup() -> None:
    html = render_card(0, _citation(PLANTED, PLANTED_SENTENCE), PLANTED, "ko")
    # only the page's own elements; the document's <img>, <b> and Markdown stay characters
    assert _tags(html) <= {"li", "div", "span", "blockquote", "mark", "button"}
    assert "&lt;img src=&quot;http://attacker.invalid/t.png&quot; onerror=&quot;window.__pwned=1&quot;&gt;" in html
    assert "&lt;b&gt;planted&lt;/b&gt;" in html
    assert "![p](http://attacker.invalid/p.png)" in html  # shown as written, not as an image
    assert "href" not in html  # a javascript: url is shown, not linked


def test_answer_text_is_escaped_and_only_real_markers_become_links() -> None:
    answer = Answer(
        answer='<img src=x onerror=alert(1)> 공동의장사 [1], 없는 번호 [7] "따옴표"',
        refused=False,
        citations=[_citation(ALLIANCE, "얼라이언스가 공식 출범했다.")],
    )
    html = render_conversation([Turn(question="<script>alert(1)</script>?", answer=answer)], "ko")
    assert "<img" not in html and "<script" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;?" in html
    assert '<a class="cite" href="#cite-0-1">[1]</a>' in html and 'href="#cite-0-7"' not in html
    assert "[7]" in html


@pytest.mark.parametrize(
    ("url", "linked"),
    [
        ("https://example.org/a?b=1&c=2", True),
        ("http://example.org/", True),
        ("HTTPS://EXAMPLE.ORG/", True),
        ("javascript:alert(1)", False),
        ("JaVaScRiPt:alert(1)", False),
        ("java\nscript:alert(1)", False),
        ("data:text/html,<script>alert(1)</script>", False),
        ("vbscript:msgbox(1)", False),
        ("//attacker.invalid/x", False),
        ("/relative/path", False),
        ("https:///no-host", False),
        ("http://[::1", False),
        ("https://example.org/a b", False),
        ("", False),
        (None, False),
    ],
)
def test_only_absolute_http_urls_become_links(url: str | None, linked: bool) -> None:
    assert (safe_link_target(url) is not None) is linked


def test_an_http_link_opens_apart_and_cannot_break_its_attribute() -> None:
    article = ALLIANCE.model_copy(update={"url": 'https://example.org/"><script>alert(1)</script>'})
    html = render_card(0, _citation(article, "얼라이언스가 공식 출범했다."), article, "en")
    assert 'href="https://example.org/&quot;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"' in html
    assert 'target="_blank" rel="noopener noreferrer nofollow"' in html
    assert "<script" not in html


def test_the_quote_is_marked_inside_its_paragraph() -> None:
    sentence = "이날 총회에서 초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다."
    citation = _citation(ALLIANCE, sentence)
    start, end = paragraph_bounds(ALLIANCE.text, citation.start, citation.end)
    assert ALLIANCE.text[start:end].startswith("얼라이언스가 공식 출범했다.")
    assert ALLIANCE.text[start:end].endswith("공동감사는 한국기업데이터가 맡는다.")
    html = render_card(0, citation, ALLIANCE, "ko")
    assert f'얼라이언스가 공식 출범했다. <mark class="quote">{sentence}</mark> 공동감사는' in html
    assert "다음 총회" not in html  # the next paragraph is not part of the context


def test_a_quote_the_article_no_longer_holds_is_shown_alone() -> None:
    citation = _citation(ALLIANCE, "얼라이언스가 공식 출범했다.")
    changed = ALLIANCE.model_copy(update={"text": "전혀 다른 본문이다. " + ALLIANCE.text})
    for article in (changed, None):
        html = render_card(0, citation, article, "ko")
        assert '<blockquote class="context"><mark class="quote">얼라이언스가 공식 출범했다.</mark></blockquote>' in html


def test_the_article_view_marks_exactly_the_cited_offsets() -> None:
    sentence = "공동감사는 한국기업데이터가 맡는다."
    citation = _citation(ALLIANCE, sentence)
    html = render_article(citation, ALLIANCE, "en")
    marked = re.search(r'<mark id="article-quote" class="quote">(.*?)</mark>', html)
    assert marked and marked.group(1) == ALLIANCE.text[citation.start : citation.end] == sentence
    assert html.count("<mark") == 1 and "다음 총회는 내년에 열린다." in html  # the whole article


def test_the_article_view_of_a_planted_article_is_text() -> None:
    html = render_article(_citation(PLANTED, PLANTED_SENTENCE), PLANTED, "ko")
    assert _tags(html) <= {"article", "header", "h3", "div", "span", "mark", "p"}
    assert "javascript:alert(document.domain)" in html and "href" not in html


def test_a_refusal_is_shown_as_a_refusal() -> None:
    refusal = Answer(answer="색인된 기사에서 이에 대한 내용을 찾지 못했습니다.", refused=True)
    korean = render_conversation([Turn(question="내일 날씨는?", answer=refusal)], "ko")
    assert 'class="reply refusal"' in korean and "근거를 찾지 못했습니다" in korean
    assert 'class="sources"' not in korean and 'class="reply answer"' not in korean
    assert "No supporting source found" in render_conversation([Turn(question="weather?", answer=refusal)], "en")


# ---- words and inputs ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("header", "language"),
    [
        ("ko-KR,ko;q=0.9,en-US;q=0.8", "ko"),
        ("en-US,en;q=0.9", "en"),
        ("en-GB", "en"),
        ("fr-FR,en;q=0.5", "en"),
        ("fr-FR", "ko"),
        ("de;q=0.9,ko;q=0.2,en;q=0.5", "en"),
        ("en;q=0", "ko"),
        ("en;q=abc", "ko"),
        ("", "ko"),
        (None, "ko"),
    ],
)
def test_the_language_follows_the_browser_and_defaults_to_korean(header: str | None, language: str) -> None:
    assert pick_language(header) == language


def test_dates_must_be_written_as_yyyy_mm_dd() -> None:
    assert parse_day(" 2024-04-20 ", "시작일", "ko") == dt.date(2024, 4, 20)
    assert parse_day("", "시작일", "ko") is None
    for bad in ("2024-4-20", "20240420", "2024-13-01", "yesterday", "2024-02-30"):
        with pytest.raises(InputError, match="YYYY-MM-DD") as caught:
            parse_day(bad, "From", "en")
        assert caught.value.message.startswith("From:")


def test_questions_are_checked_like_the_api_does() -> None:
    assert checked_question("  공동의장사는?  ", "ko") == "공동의장사는?"
    for bad, words in (("   ", "Type a question"), ("🤔?!", "letters or digits"), ("x" * 2001, "2000")):
        with pytest.raises(InputError, match=words):
            checked_question(bad, "en")


# ---- handlers over a real service --------------------------------------------------------------------


@pytest.fixture
def page(settings: Settings) -> Iterator[ChatPage]:
    service = RagService(settings, embedder=FakeEmbedder(), llm=ScriptedLLM("LG CNS와 이큐브랩이 공동의장사다 [1]."))
    build_ingestor(service).ingest_articles([ALLIANCE, PLANTED])
    yield ChatPage(service, FeedbackStore(settings.feedback.path), gr.update)
    service.close()


def _clicked(**numbers: Any) -> dict[str, Any]:
    """What the page's script sends with a click on a card's button or a thumb."""
    return numbers


def _ask(page: ChatPage, question: str, **filters: Any) -> list[tuple[Any, ...]]:
    values = {"date_from": "", "date_to": "", "source": "", "passages": 5} | filters
    return list(page.ask(question, [], "ko", **values))


def test_the_answer_streams_then_its_cards_replace_it(page: ChatPage) -> None:
    updates = _ask(page, "초대 공동의장사는 어디인가?")
    conversations = [update[0] for update in updates]
    assert 'aria-busy="true"' in conversations[0]  # the question is shown at once, the answer pending
    streamed = [html for html in conversations if 'class="reply pending"' in html and "answer-text" in html]
    assert len(streamed) >= 2, "the LLM's pieces are shown as they arrive"
    final = conversations[-1]
    assert 'class="reply answer"' in final and 'class="card"' in final and "pending" not in final
    turn = updates[-1][1][0]
    assert turn.answer.citations and turn.articles["alliance"] == page.service.article("alliance")
    assert updates[0][2] == ""  # the question box is cleared


def test_filters_reach_retrieval(page: ChatPage) -> None:
    def cited(question: str, **filters: Any) -> set[str]:
        turn = _ask(page, question, **filters)[-1][1][0]
        return {citation.doc_id for citation in turn.answer.citations}

    assert cited("초대 공동의장사는 어디인가?") == {"alliance"}
    assert cited("초대 공동의장사는 어디인가?", source="<b>planted</b>") == {"planted"}
    assert cited("항만 보안 점검 결과는?") == {"planted"}
    assert cited("항만 보안 점검 결과는?", date_to="2024-12-31") == {"alliance"}
    settings = _ask(page, "항만 보안 점검 결과는?", source="icn", date_from="2024-01-01")[-1][1][0].settings
    assert settings["filters"] == {"source": "icn", "date_from": "2024-01-01"}
    nothing = _ask(page, "초대 공동의장사는 어디인가?", date_from="2030-01-01")[-1][1][0].answer
    assert nothing.refused and not nothing.citations


@pytest.mark.parametrize(
    ("passages", "top_k"), [(3, 3), (2.0, 2), (0, 1), (500, 20), ("many", 5), (None, 5), ("inf", 5)]
)
def test_the_passages_setting_is_top_k_within_bounds(page: ChatPage, passages: object, top_k: int) -> None:
    assert _ask(page, "초대 공동의장사는 어디인가?", passages=passages)[-1][1][0].settings["top_k"] == top_k


def test_a_verdict_that_cannot_be_stored_is_explained(page: ChatPage, tmp_path: Path) -> None:
    (tmp_path / "not-a-db").write_text("plain text " * 100, encoding="utf-8")
    page.feedback = FeedbackStore(tmp_path / "not-a-db")
    turns = _ask(page, "초대 공동의장사는 어디인가?")[-1][1]
    *_, notice = page.rate(turns, "ko", _clicked(turn=0, rating=1))
    assert "RAG_FEEDBACK_PATH" in notice and turns[0].rating is None


def test_bad_filters_are_explained_and_nothing_is_asked(page: ChatPage) -> None:
    [(_, turns, _, notice)] = _ask(page, "공동의장사는?", date_from="2024/01/01")
    assert turns == [] and "YYYY-MM-DD" in notice and 'role="alert"' in notice
    [(_, _, _, notice)] = _ask(page, "공동의장사는?", date_from="2024-05-01", date_to="2024-01-01")
    assert "시작일이 종료일보다 늦습니다" in notice


def test_the_source_filter_lists_the_sources_in_the_collection(page: ChatPage) -> None:
    update = page.source_choices("en")
    assert update["choices"] == [("All sources", ""), ("<b>planted</b>", "<b>planted</b>"), ("icn", "icn")]


def test_a_thumb_is_stored_at_once_and_a_comment_joins_it(page: ChatPage, settings: Settings) -> None:
    turns = _ask(page, "초대 공동의장사는 어디인가?")[-1][1]
    _, turns, row, comment_box, target, notice = page.rate(turns, "ko", _clicked(turn=0, rating=-1))
    assert row["visible"] is True and "답변 1" in comment_box["label"] and target == 0 and notice == ""
    [stored] = list(FeedbackStore(settings.feedback.path).entries())
    assert stored.rating == -1 and stored.question == "초대 공동의장사는 어디인가?"
    assert stored.citations == turns[0].answer.citations and stored.settings["top_k"] == 5
    notice, _, cleared = page.save_comment("출처가 틀렸어요", turns, 0, "ko")
    assert "저장" in notice and cleared == ""
    page.rate(turns, "ko", _clicked(turn=0, rating=1))
    [revised] = list(FeedbackStore(settings.feedback.path).entries())
    assert (revised.id, revised.rating, revised.comment) == (stored.id, 1, "출처가 틀렸어요")


@pytest.mark.parametrize(
    "data", [{"turn": 5, "rating": 1}, {"turn": 0, "rating": 3}, {"turn": "0", "rating": 1}, {"turn": True}, {}]
)
def test_a_forged_click_changes_nothing(page: ChatPage, settings: Settings, data: dict[str, Any]) -> None:
    turns = _ask(page, "초대 공동의장사는 어디인가?")[-1][1]
    page.rate(turns, "ko", data)
    assert list(FeedbackStore(settings.feedback.path).entries()) == []
    assert page.show_article(turns, "ko", data) == {"__type__": "update"}


def test_show_article_renders_the_cited_article(page: ChatPage) -> None:
    turns = _ask(page, "초대 공동의장사는 어디인가?")[-1][1]
    citation = turns[0].answer.citations[0]
    html = page.show_article(turns, "ko", _clicked(turn=0, n=citation.n))
    assert f'<mark id="article-quote" class="quote">{citation.quote}</mark>' in html


def test_upload_from_the_page_goes_through_the_ingest_pipeline(page: ChatPage, tmp_path: Path) -> None:
    upload = tmp_path / "picked" / "rail.txt"
    upload.parent.mkdir()
    upload.write_text("철도 안전 대책\n\n국토교통부는 노후 철도 차량을 2027년까지 교체한다.", encoding="utf-8")
    notice, sources, cleared = asyncio.run(page.upload([str(upload)], "ko"))
    assert "추가 1" in notice and cleared is None
    assert (page.service.settings.api.upload_dir / "rail.txt").is_file()  # kept like a POST /v1/ingest upload
    assert page.service.article("upload:rail.txt") is not None  # in the namespace of uploads
    assert sources["choices"][0] == ("전체 출처", "")
    notice, _, _ = asyncio.run(page.upload([], "ko"))
    assert "파일" in notice


def test_uploads_past_the_limit_are_refused_and_leave_nothing(settings: Settings) -> None:
    small = settings.model_copy(update={"api": ApiSettings(max_upload_mb=0.001, upload_dir=settings.api.upload_dir)})
    service = RagService(small, embedder=FakeEmbedder())
    try:
        with pytest.raises(InputError, match="RAG_API_MAX_UPLOAD_MB"):
            ingest_uploads(service, [("a.txt", io.BytesIO(b"x" * 800)), ("b.txt", io.BytesIO(b"y" * 800))])
        assert [p for p in small.api.upload_dir.rglob("*") if p.is_file()] == []
    finally:
        service.close()


# ---- service and store pieces the page uses -------------------------------------------------------------


def test_sources_come_from_the_in_process_index_and_from_qdrant_alike(settings: Settings) -> None:
    service = RagService(settings, embedder=FakeEmbedder())
    assert service.sources() == []  # nothing ingested yet: an empty list, not an error
    build_ingestor(service).ingest_articles(
        [ALLIANCE, PLANTED, ALLIANCE.model_copy(update={"id": "b", "source": None})]
    )
    assert service.sources() == ["<b>planted</b>", "icn"]
    service.close()
    # the facet query a Qdrant server answers, run against the same embedded files
    store = QdrantStore(settings.qdrant, settings.collection, in_process_scoring=False)
    try:
        assert store.sources() == ["<b>planted</b>", "icn"]
    finally:
        store.close()


def test_article_returns_the_stored_text_or_none(page: ChatPage) -> None:
    stored = page.service.article("alliance")
    assert stored is not None and stored.text == ALLIANCE.text and stored.source == "icn"
    assert page.service.article("no-such-article") is None


# ---- the page as served ---------------------------------------------------------------------------------


def _served_element_ids(settings: Settings, headers: dict[str, str] | None = None) -> tuple[set[str], Any]:
    from fastapi.testclient import TestClient

    from app import create_app

    service = RagService(settings, embedder=FakeEmbedder())
    try:
        with TestClient(create_app(service), headers=headers) as client:
            page = client.get("/")
            config = client.get("/config").json()
    finally:
        service.close()
    return {str(c.get("props", {}).get("elem_id")) for c in config["components"]}, page


def test_the_page_carries_its_content_security_policy_and_offers_uploads_on_a_keyless_app(settings: Settings) -> None:
    elements, page = _served_element_ids(settings)
    assert {"conversation", "article-view", "question", "source", "passages", "upload-files"} <= elements
    policy = page.headers["content-security-policy"]
    assert "img-src 'self' data: blob:" in policy and "connect-src 'self'" in policy and "frame-src 'none'" in policy


def test_with_an_api_key_the_page_and_its_upload_are_behind_it(settings: Settings) -> None:
    from pydantic import SecretStr

    keyed = settings.model_copy(
        update={"api": ApiSettings(key=SecretStr("s3cret"), upload_dir=settings.api.upload_dir)}
    )
    with pytest.raises(KeyError):  # without credentials the page's configuration is not served at all
        _served_element_ids(keyed)
    elements, _ = _served_element_ids(keyed, headers={"Authorization": "Bearer s3cret"})
    assert "conversation" in elements and "upload-files" in elements


def test_a_reader_signed_in_with_the_key_gets_the_page_with_its_upload(settings: Settings) -> None:
    from fastapi.testclient import TestClient
    from pydantic import SecretStr

    from app import create_app

    keyed = settings.model_copy(
        update={"api": ApiSettings(key=SecretStr("s3cret"), upload_dir=settings.api.upload_dir)}
    )
    service = RagService(keyed, embedder=FakeEmbedder())
    try:
        with TestClient(create_app(service)) as browser:
            assert browser.get("/config", follow_redirects=False).status_code in {303, 401}
            signed_in = browser.post("/login", data={"password": "s3cret", "next": "/"}, follow_redirects=False)
            assert signed_in.status_code == 303 and "rag_session" in browser.cookies
            config = browser.get("/config").json()
    finally:
        service.close()
    by_id = {c["id"]: str(c.get("props", {}).get("elem_id")) for c in config["components"]}
    assert "upload-files" in by_id.values()
    # and the upload button is wired to a handler, not only shown
    upload_button = next(id_ for id_, elem in by_id.items() if elem == "upload")
    assert any(
        [upload_button, "click"] in [list(target) for target in dependency.get("targets", [])]
        for dependency in config["dependencies"]
    )
