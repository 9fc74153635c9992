"""With a key set, the real page in headless Chromium shows a sign-in and nothing else until signed in; signed
in, a reader may add articles from the page."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import PROJECT_ROOT
from .served import free_port

pytestmark = pytest.mark.browser

CHROMIUM = "/usr/bin/chromium"
KEY = "browser-test-key"


@pytest.fixture(scope="module")
def secured_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("browser-sign-in")
    article = folder / "rail.txt"
    article.write_text(
        "철도 안전 대책\n\n국토교통부는 노후 철도 차량을 2027년까지 교체한다고 발표했다.", encoding="utf-8"
    )
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_MODELS_EMBEDDING="fake",
        RAG_LLM_BACKEND="none",
        RAG_QDRANT_PATH=str(folder / "qdrant"),
        RAG_PORT=str(port),
        RAG_API_KEY=KEY,
        RAG_ANSWER_MIN_EVIDENCE_SCORE_KOREAN="0.05",
        RAG_ANSWER_MIN_EVIDENCE_SCORE_OTHER="0.05",
    )
    subprocess.run([sys.executable, "-m", "ingest", str(article)], cwd=PROJECT_ROOT, env=env, check=True, timeout=300)
    server = subprocess.Popen([sys.executable, "app.py"], cwd=PROJECT_ROOT, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/healthz", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.5)
        else:
            pytest.fail("app did not start")
        yield url
    finally:
        server.terminate()
        server.wait(timeout=30)


def test_the_page_shows_a_sign_in_and_nothing_else_until_signed_in(secured_app: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        fetched: list[str] = []
        page.on("response", lambda response: fetched.append(f"{response.status} {response.url}"))
        page.goto(secured_app, wait_until="networkidle")
        assert page.url.startswith(f"{secured_app}/login")
        signed_out = page.content()
        page.screenshot(path=str(tmp_path / "sign-in.png"), full_page=True)
        # nothing of the chat page was served: only the redirect and the sign-in page itself
        assert [line.split(" ", 1)[0] for line in fetched] == ["303", "200"], fetched
        assert "gradio" not in signed_out.lower() and page.locator("input[type=password]").count() == 1

        page.fill("input[type=password]", "not the key")
        page.click("button[type=submit]")
        page.get_by_text("Wrong name, password or key").wait_for(timeout=30_000)
        assert not page.context.cookies()

        page.fill("input[type=password]", KEY)
        page.click("button[type=submit]")
        box = page.get_by_role("textbox").first
        box.wait_for(timeout=60_000)
        cookie = next(c for c in page.context.cookies() if c["name"] == "rag_session")
        assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
        box.fill("노후 철도 차량은 언제까지 교체하나?")
        box.press("Enter")
        page.get_by_text("2027년까지 교체한다고 발표했다", exact=False).last.wait_for(timeout=60_000)
        page.screenshot(path=str(tmp_path / "signed-in.png"), full_page=True)
        browser.close()


def _signed_in_page(browser: Any, url: str) -> Any:
    page = browser.new_page(locale="en-US")
    page.goto(url, wait_until="networkidle")
    page.fill("input[type=password]", KEY)
    page.click("button[type=submit]")
    # the English labels arrive with the page's load event: once they show, its updates cannot overwrite what
    # the test does next (a file chosen before them could be cleared)
    page.locator("#ask").get_by_text("Ask").wait_for(timeout=60_000)
    return page


def test_a_signed_in_reader_adds_an_article_from_the_page(secured_app: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    upload = tmp_path / "harbour.txt"
    upload.write_text(
        "항만 확장 계획\n\n해양수산부는 부산 신항 3부두를 2029년까지 확장한다고 밝혔다.", encoding="utf-8"
    )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = _signed_in_page(browser, secured_app)
        page.get_by_text("Add articles").click()
        page.locator("#upload-files input[type=file]").set_input_files(str(upload))
        page.locator("#upload-files").get_by_text("harbour.txt").wait_for(timeout=30_000)
        page.locator("#upload").click()
        page.locator("#upload-result").get_by_text("added 1").wait_for(timeout=60_000)
        box = page.get_by_role("textbox").first
        box.fill("부산 신항 3부두는 언제까지 확장하나?")
        box.press("Enter")
        page.get_by_text("2029년까지 확장한다고 밝혔다", exact=False).last.wait_for(timeout=60_000)
        browser.close()
    # the page's upload went through the app's one ingest line, the one POST /v1/ingest uses (and counts)
    metrics = httpx.get(f"{secured_app}/metrics", headers={"Authorization": f"Bearer {KEY}"}, timeout=30).text
    assert 'rag_ingest_documents_total{outcome="added"} 1.0' in metrics
