"""The real chat page in headless Chromium: ask, watch the answer stream, read the source cards, open the
article at the quote, filter, rate, upload; planted articles stay text and make the browser fetch nothing.

One app (fake embedder, real local Qdrant, an LLM double that streams its reply and can be held mid-way)
serves every test here, in a thread of this process, so the tests can read the feedback it stores; one
browser drives them. `SCREENSHOT_DIR=docs` writes the page's screenshots there (Korean text needs a CJK
font: `apt-get install fonts-noto-cjk`).
"""

from __future__ import annotations

import datetime as dt
import os
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn

from app import create_app
from ingest.pipeline import build_ingestor
from rag.answer.llm import Message
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.feedback import FeedbackStore
from rag.service import RagService
from rag.types import Article

from .conftest import SAMPLE_ARTICLE, make_settings

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
PLANTED_HOST = "attacker.invalid"
SAMPLE_TITLE = "스마트시티 융합 얼라이언스 출범"
ALLIANCE_QUESTION = "얼라이언스 창립기관은 몇 곳인가?"
HOSTILE_QUESTION = "해양수산부가 발표한 항만 보안 점검 결과는?"

HOSTILE = Article(
    id="planted-hostile",
    title=f'<img src="http://{PLANTED_HOST}/title.png" onerror="window.__pwned=1">항만 보안 점검',
    text=(
        f"해양수산부는 항만 보안 점검 결과를 발표했다 ![p](http://{PLANTED_HOST}/p.png) "
        f"<img src=http://{PLANTED_HOST}/i.png onerror=window.__pwned=2> [자세히](javascript:window.__pwned=3) "
        f"[원문](http://{PLANTED_HOST}/more) <script>window.__pwned=4</script> "
        f'<a href="javascript:window.__pwned=5">링크</a> <iframe src="http://{PLANTED_HOST}/f"></iframe>.\n\n'
        "다음 점검은 내년 상반기에 한다."
    ),
    date=dt.date(2025, 1, 5),
    url="javascript:window.__pwned=6",
    source=f'<b onmouseover="window.__pwned=7"><img src=http://{PLANTED_HOST}/s.png>해양일보</b>',
)
ECONOMY = Article(
    id="planted-economy",
    title="항만 물동량 증가",
    text="항만 물동량 증가\n\n부산항의 항만 물동량이 지난해보다 늘었다고 해양수산부가 밝혔다.",
    date=dt.date(2023, 6, 1),
    url=f"https://{PLANTED_HOST}/economy",  # a link may point anywhere; showing it fetches nothing
    source="경제일보",
)


class EchoLLM:
    """Answers with the first evidence sentence and its marker, in pieces; with `release` cleared it pauses
    after the first pieces until the test sets it, so the page can be seen mid-stream. A follow-up question
    is kept as asked (each test question stands alone)."""

    name = "echo"

    def __init__(self) -> None:
        self.release = threading.Event()
        self.release.set()
        self.paused = threading.Event()

    def stream(self, messages: list[Message], *, max_tokens: int, temperature: float) -> Iterator[str]:
        prompt = messages[-1]["content"]
        follow_up = re.search(r"^Last question: (.+)$", prompt, flags=re.MULTILINE)
        if follow_up:
            yield follow_up.group(1)
            return
        evidence = re.search(r"^\[1\] (.+)$", prompt, flags=re.MULTILINE)
        reply = f"{evidence.group(1) if evidence else 'NOT_FOUND'} [1]"
        pieces = [reply[i : i + 6] for i in range(0, len(reply), 6)]
        for index, piece in enumerate(pieces):
            if index == 2 and not self.release.is_set():
                self.paused.set()
                self.release.wait(timeout=120)
            yield piece


@dataclass
class Served:
    url: str
    service: RagService
    settings: Settings
    llm: EchoLLM
    requests: list[str] = field(default_factory=list)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("browser")
    settings = make_settings(folder)
    settings.answer.min_evidence_score_korean = settings.answer.min_evidence_score_other = 0.05
    settings.answer.min_evidence_score_english = 0.05
    llm = EchoLLM()
    service = RagService(settings, embedder=FakeEmbedder(), llm=llm)
    ingestor = build_ingestor(service)
    assert ingestor.ingest_paths([SAMPLE_ARTICLE]).added == 1
    assert ingestor.ingest_articles([HOSTILE, ECONOMY]).added == 2
    port = _free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(service), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 120  # a hang detector, not a speed limit
    while time.monotonic() < deadline:
        try:
            if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                break
        except httpx.HTTPError:
            time.sleep(0.2)
    else:
        pytest.fail("app did not start")
    yield Served(url=url, service=service, settings=settings, llm=llm)
    server.should_exit = True
    thread.join(timeout=30)
    service.close()


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        yield launched
        launched.close()


@dataclass
class Page:
    """A browser tab on the page, with every request it made and every dialog, script error or console error
    it raised."""

    tab: Any
    requests: list[str]
    incidents: list[str]

    def ask(self, question: str) -> None:
        box = self.tab.locator("#question textarea")
        box.fill(question)
        box.press("Enter")

    def last_reply(self) -> Any:
        return self.tab.locator("#conversation .turn").last.locator(".reply")

    def wait_for_final_reply(self, turns: int) -> Any:
        reply = self.tab.locator("#conversation .turn").nth(turns - 1).locator(".reply.answer, .reply.refusal")
        reply.wait_for(timeout=60_000)
        return reply


def _open(browser: Any, served: Served, locale: str = "ko-KR") -> Iterator[Page]:
    context = browser.new_context(locale=locale, viewport={"width": 1280, "height": 900})
    tab = context.new_page()
    requests: list[str] = []
    incidents: list[str] = []
    tab.on("request", lambda request: requests.append(request.url))
    tab.on("dialog", lambda dialog: (incidents.append(f"dialog: {dialog.message}"), dialog.dismiss()))
    tab.on("pageerror", lambda error: incidents.append(f"page error: {error}"))
    # a console error is how the browser reports what the page's Content-Security-Policy refused
    tab.on("console", lambda message: message.type == "error" and incidents.append(f"console: {message.text}"))
    tab.goto(served.url, wait_until="load")
    tab.locator("#question textarea").wait_for(timeout=60_000)
    # the labels follow the browser's language once the page has loaded
    tab.locator("#ask").get_by_text("Ask" if locale.startswith("en") else "질문하기").wait_for(timeout=60_000)
    yield Page(tab, requests, incidents)
    context.close()


@pytest.fixture
def page(browser: Any, served: Served) -> Iterator[Page]:
    yield from _open(browser, served)


def _screenshot(page: Page, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("SCREENSHOT_DIR") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.tab.screenshot(path=str(folder / name), full_page=True)


def test_ask_streams_the_answer_then_shows_source_cards_and_the_article_at_the_quote(
    page: Page, served: Served, tmp_path: Path
) -> None:
    served.llm.release.clear()
    served.llm.paused.clear()
    try:
        page.ask(ALLIANCE_QUESTION)
        assert served.llm.paused.wait(timeout=60)
        pending = page.tab.locator("#conversation .reply.pending .answer-text")
        pending.wait_for(timeout=60_000)
        partial = pending.inner_text()
        assert partial and page.tab.locator("#conversation .card").count() == 0  # text first, cards later
    finally:
        served.llm.release.set()
    reply = page.wait_for_final_reply(1)
    expected = served.service.answer(ALLIANCE_QUESTION, top_k=5)
    assert expected.citations and not expected.refused
    assert reply.locator(".answer-text").inner_text().startswith(partial.strip())
    cards = reply.locator(".card")
    assert cards.count() == len(expected.citations)
    first = expected.citations[0]
    card = cards.first
    assert card.locator(".title").inner_text() == SAMPLE_TITLE and card.locator(".date").inner_text() == "2024-04-20"
    assert card.locator("mark.quote").inner_text() == first.quote
    assert len(card.locator("blockquote.context").inner_text()) >= len(first.quote)  # within its paragraph
    assert reply.locator("a.cite").first.get_attribute("href") == f"#cite-0-{first.n}"
    _screenshot(page, "chat-page.png", tmp_path)

    card.locator("button.show-article").click()
    marked = page.tab.locator("#article-view mark#article-quote")
    marked.wait_for(timeout=60_000)
    stored = served.service.article(first.doc_id)
    assert stored is not None and marked.inner_text() == stored.text[first.start : first.end] == first.quote
    page.tab.wait_for_function(
        "() => { const m = document.querySelector('#article-view mark#article-quote');"
        " const r = m.getBoundingClientRect(); return r.top >= 0 && r.bottom <= window.innerHeight; }",
        timeout=30_000,
    )  # scrolled to the quote
    assert page.tab.locator("#article-view .article-title").inner_text() == SAMPLE_TITLE
    _screenshot(page, "chat-page-article.png", tmp_path)
    assert not page.incidents


def test_filters_change_what_is_cited(page: Page) -> None:
    def cited_titles(turn: int) -> list[str]:
        return page.wait_for_final_reply(turn).locator(".card .title").all_inner_texts()

    page.ask("부산항의 항만 물동량")
    assert cited_titles(1) == [ECONOMY.title]
    page.tab.locator("#date-from textarea").fill("2024-01-01")
    page.ask("부산항의 항만 물동량")
    assert ECONOMY.title not in cited_titles(2)  # it is dated 2023
    page.tab.locator("#date-from textarea").fill("")
    # the source list holds the collection's sources, the planted name among them as text
    page.tab.locator("#source input").click()
    assert page.tab.get_by_role("option").filter(has_text="해양일보").count() == 1
    page.tab.get_by_role("option", name="경제일보").click()
    page.ask(HOSTILE_QUESTION)
    assert cited_titles(3) == [ECONOMY.title]  # unfiltered, this question cites the planted article
    page.tab.locator("#date-from textarea").fill("2030-01-01")
    page.ask(HOSTILE_QUESTION)
    refusal = page.wait_for_final_reply(4)
    assert "refusal" in (refusal.get_attribute("class") or "")
    assert "근거를 찾지 못했습니다" in refusal.inner_text() and refusal.locator(".card").count() == 0
    page.tab.locator("#date-from textarea").fill("2024-13-40")
    page.ask(HOSTILE_QUESTION)
    page.tab.locator("#notice .error").get_by_text("YYYY-MM-DD").wait_for(timeout=30_000)


def test_thumbs_and_a_comment_are_stored(page: Page, served: Served) -> None:
    store = FeedbackStore(served.settings.feedback.path)
    before = {entry.id for entry in store.entries()}
    page.ask(ALLIANCE_QUESTION)
    reply = page.wait_for_final_reply(1)
    reply.locator("button.rate.down").click()
    page.tab.locator("#comment textarea").wait_for(timeout=30_000)
    page.tab.locator("#comment textarea").fill("장소는 맞지만 날짜가 빠졌어요")
    page.tab.locator("#send-comment").click()
    page.tab.locator("#notice").get_by_text("의견을 저장했습니다").wait_for(timeout=30_000)
    [entry] = [entry for entry in store.entries() if entry.id not in before]
    assert (entry.rating, entry.comment, entry.question) == (-1, "장소는 맞지만 날짜가 빠졌어요", ALLIANCE_QUESTION)
    assert entry.citations and entry.citations[0].doc_id == served.service.answer(ALLIANCE_QUESTION).citations[0].doc_id
    assert entry.settings["top_k"] == 5 and not entry.refused
    reply.locator("button.rate.up").click()
    page.tab.locator('#conversation button.rate.up[aria-pressed="true"]').wait_for(timeout=30_000)
    [revised] = [e for e in store.entries() if e.id == entry.id]
    assert revised.rating == 1 and revised.comment == entry.comment


def test_planted_articles_render_as_text_and_make_the_browser_fetch_nothing(page: Page, served: Served) -> None:
    page.ask(HOSTILE_QUESTION)
    reply = page.wait_for_final_reply(1)
    card = reply.locator(".card").filter(has_text="항만 보안 점검").first
    assert card.locator(".title").inner_text() == HOSTILE.title  # the markup, shown as characters
    assert card.locator(".url").inner_text() == HOSTILE.url and card.locator("a.url").count() == 0
    assert "![p](http://attacker.invalid/p.png)" in reply.inner_text()
    card.locator("button.show-article").click()
    page.tab.locator("#article-view mark#article-quote").wait_for(timeout=60_000)
    assert "<script>window.__pwned=4</script>" in page.tab.locator("#article-view").inner_text()
    page.ask("부산항 항만 물동량")
    linked = page.wait_for_final_reply(2).locator("a.url")
    linked.first.wait_for(timeout=30_000)
    assert linked.first.get_attribute("href") == ECONOMY.url
    assert linked.first.get_attribute("rel") == "noopener noreferrer nofollow"
    assert linked.first.get_attribute("target") == "_blank"
    page.tab.locator("#source input").click()  # the planted source name in the filter list
    page.tab.get_by_role("option").filter(has_text="해양일보").wait_for(timeout=30_000)
    page.tab.wait_for_timeout(500)  # give any stray image or frame a moment to be requested

    planted = [url for url in page.requests if PLANTED_HOST in url]
    assert planted == [], f"the page fetched what a document named: {planted}"
    assert page.tab.evaluate("window.__pwned") is None
    assert not page.incidents
    for scope in ("#conversation", "#article-view"):
        assert page.tab.locator(f"{scope} img, {scope} iframe, {scope} script").count() == 0
        for href in page.tab.locator(f"{scope} a[href]").evaluate_all("links => links.map(a => a.href)"):
            assert href.startswith(("http://", "https://")) and "javascript" not in href.lower()
    foreign = {url for url in page.requests if not url.startswith((served.url, "data:", "blob:"))}
    assert not foreign, f"the page reached beyond the app: {foreign}"


def test_the_page_forbids_images_from_other_hosts(page: Page) -> None:
    """The Content-Security-Policy behind the escaping: an image from elsewhere is refused by the browser."""
    violated = page.tab.evaluate(
        """() => new Promise(resolve => {
            document.addEventListener('securitypolicyviolation', e => resolve(e.effectiveDirective), {once: true});
            const image = new Image();
            image.src = 'http://attacker.invalid/csp.png';
            document.body.appendChild(image);
            setTimeout(() => resolve('no violation'), 5000);
        })"""
    )
    # (Playwright still lists the attempt among the page's requests: the request assertions of the planted-article
    # test hold with or without this policy, so they test the escaping itself)
    assert violated == "img-src"
    assert any("Content Security Policy" in incident for incident in page.incidents)  # and the browser says so


def test_english_browsers_get_english_labels_and_upload_works(browser: Any, served: Served, tmp_path: Path) -> None:
    for page in _open(browser, served, locale="en-US"):
        assert page.tab.locator("#date-from").get_by_text("From (YYYY-MM-DD)").count() == 1
        page.tab.get_by_text("Add articles").click()
        upload = tmp_path / "rail.txt"
        upload.write_text(
            "철도 안전 대책\n\n국토교통부는 노후 철도 차량을 2027년까지 교체한다고 발표했다.", encoding="utf-8"
        )
        page.tab.locator("#upload-files input[type=file]").set_input_files(str(upload))
        page.tab.locator("#upload-files").get_by_text("rail.txt").wait_for(timeout=30_000)
        page.tab.locator("#upload").click()
        page.tab.locator("#upload-result").get_by_text("added 1").wait_for(timeout=60_000)
        page.ask("노후 철도 차량은 언제까지 교체하나?")
        reply = page.wait_for_final_reply(1)
        assert "2027년까지 교체한다고 발표했다" in reply.locator(".card mark.quote").first.inner_text()
        assert reply.locator("button.show-article").first.inner_text() == "Show the article"
        assert not page.incidents
