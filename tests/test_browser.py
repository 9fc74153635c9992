"""The real chat page in headless Chromium: type a question, get an answer with its cited sentence."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from .conftest import PROJECT_ROOT

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def served_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    if not Path(CHROMIUM).exists():
        pytest.fail("chromium is not installed; `make test` installs it (apt-get install chromium)")
    folder = tmp_path_factory.mktemp("browser")
    article = folder / "rail.txt"
    article.write_text(
        "철도 안전 대책\n\n국토교통부는 노후 철도 차량을 2027년까지 교체한다고 발표했다.", encoding="utf-8"
    )
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("RAG_")}
    env.update(
        RAG_MODELS_EMBEDDING="fake",
        RAG_LLM_BACKEND="none",
        RAG_QDRANT_PATH=str(folder / "qdrant"),
        RAG_PORT=str(port),
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


def test_chat_page_answers_with_the_cited_sentence(served_app: str, tmp_path: Path) -> None:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, args=["--no-sandbox", "--disable-gpu", "--disable-background-networking"]
        )
        page = browser.new_page()
        page.goto(served_app, wait_until="load")
        box = page.get_by_role("textbox").first
        box.wait_for(timeout=60_000)
        box.fill("노후 철도 차량은 언제까지 교체하나?")
        box.press("Enter")
        page.get_by_text("2027년까지 교체한다고 발표했다", exact=False).last.wait_for(timeout=60_000)
        content = page.content()
        page.screenshot(path=str(tmp_path / "chat.png"), full_page=True)
        browser.close()
    assert "[1]" in content
    assert "철도 안전 대책" in content  # the source's title is shown with the citation
