"""Access to everything the app serves: the key or a sign-in for every route (the chat page's framework adds
many), the session cookie's flags, the sign-in page, and the Host/Origin check."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from pydantic import SecretStr

from api.login import add_user, hash_password, load_users, verify_password
from app import create_app
from ingest.pipeline import build_ingestor
from rag.config import Settings
from rag.embed.fake import FakeEmbedder
from rag.errors import ConfigurationError
from rag.service import RagService
from rag.types import Article

from .conftest import make_settings
from .served import serve

KEY = "s3cret-key"
ARTICLE = Article(
    id="alliance",
    title="스마트시티 융합 얼라이언스 출범",
    text="얼라이언스가 공식 출범했다. 이날 총회에서 초대 공동의장사로 LG CNS와 이큐브랩이 선임됐다.",
    date=dt.date(2024, 4, 20),
)
# every route the chat page's framework (Gradio) adds that a browser or gradio_client uses, and the app's own
PAGE_GETS = [
    "/",
    "/config",
    "/gradio_api/info",
    "/gradio_api/openapi.json",
    "/gradio_api/file=/etc/passwd",
    "/gradio_api/file/x.txt",
    "/gradio_api/startup-events",
    "/gradio_api/heartbeat/abc",
    "/gradio_api/queue/data?session_hash=abc",
    "/gradio_api/upload_progress?upload_id=x",
    "/gradio_api/app_id",
    "/gradio_api/user",
    "/gradio_api/login_check",
    "/gradio_api/runs",
    "/theme.css",
    "/assets/index.js",
    "/static/img/logo.svg",
    "/svelte/x.js",
    "/favicon.ico",
    "/manifest.json",
    "/robots.txt",
    "/monitoring",
    "/docs",
    "/redoc",
    "/openapi.json",
    "/metrics",
    "/v1/models",
]
NEVER_ENDING = {"/gradio_api/heartbeat/abc", "/gradio_api/queue/data?session_hash=abc"}  # event streams
PAGE_POSTS = [
    "/gradio_api/queue/join",
    "/gradio_api/upload",
    "/gradio_api/run/respond",
    "/gradio_api/call/respond",
    "/gradio_api/api/respond",
    "/gradio_api/reset",
    "/gradio_api/cancel",
    "/v1/answer",
    "/v1/search",
    "/v1/ingest",
    "/v1/chat/completions",
]


def _secured(settings: Settings, **api: object) -> Settings:
    return settings.model_copy(update={"api": settings.api.model_copy(update={"key": SecretStr(KEY), **api})})


@contextmanager
def _client(settings: Settings, **options: object) -> Iterator[TestClient]:
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_articles([ARTICLE])
    with TestClient(create_app(service, with_ui=True), **options) as client:  # type: ignore[arg-type]
        yield client
    service.close()


@pytest.fixture(scope="module")
def secured_app(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    """One app with the chat page and a key for the module (building the page takes a while)."""
    with _client(_secured(make_settings(tmp_path_factory.mktemp("secured"))), follow_redirects=False) as client:
        yield client


@pytest.fixture
def secured_client(secured_app: TestClient) -> Iterator[TestClient]:
    secured_app.cookies.clear()
    yield secured_app
    secured_app.cookies.clear()


@pytest.mark.parametrize("path", PAGE_GETS)
def test_every_page_route_needs_credentials(secured_client: TestClient, path: str) -> None:
    response = secured_client.get(path)
    assert response.status_code == 401, response.text[:200]
    assert response.json()["error"]["code"] == "unauthorized"
    assert response.headers["www-authenticate"] == "Bearer"
    if path not in NEVER_ENDING:
        keyed = secured_client.get(path, headers={"Authorization": f"Bearer {KEY}"})
        assert keyed.status_code != 401


@pytest.mark.parametrize("path", PAGE_POSTS)
def test_every_posting_route_needs_credentials(secured_client: TestClient, path: str) -> None:
    response = secured_client.post(path, json={"data": ["공동의장사는?"], "fn_index": 0, "session_hash": "x"})
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "unauthorized"


def test_a_browser_is_sent_to_the_sign_in_page(secured_client: TestClient) -> None:
    response = secured_client.get("/?lang=ko", headers={"Accept": "text/html,application/xhtml+xml"})
    assert response.status_code == 303
    assert response.headers["location"] == "/login?next=%2F%3Flang%3Dko"
    page = secured_client.get("/login")
    assert page.status_code == 200 and 'type="password"' in page.text and "gradio" not in page.text.lower()
    assert page.headers["x-frame-options"] == "DENY"


def test_the_probes_and_the_sign_in_page_stay_open(secured_client: TestClient) -> None:
    assert secured_client.get("/healthz").status_code == 200
    assert secured_client.get("/readyz").status_code == 200
    assert secured_client.get("/login").status_code == 200


def test_signing_in_with_the_key_opens_the_page_not_the_api(secured_client: TestClient) -> None:
    response = secured_client.post("/login", data={"password": KEY, "next": "/config"})
    assert response.status_code == 303 and response.headers["location"] == "/config"
    cookie = response.headers["set-cookie"]
    assert cookie.startswith("rag_session=")
    flags = {part.strip().lower() for part in cookie.split(";")}
    assert "httponly" in flags and "samesite=strict" in flags
    assert secured_client.get("/config").status_code == 200
    assert secured_client.get("/gradio_api/info").status_code == 200
    # the API takes the key only: a cookie rides along with any request a browser sends
    assert secured_client.post("/v1/search", json={"query": "공동의장사"}).status_code == 401
    secured_client.get("/logout")
    assert secured_client.get("/config").status_code == 401


def test_a_wrong_key_signs_nobody_in(secured_client: TestClient) -> None:
    response = secured_client.post("/login", data={"password": "guess", "next": "/"})
    assert response.status_code == 401 and "set-cookie" not in response.headers
    assert "Wrong" in response.text
    assert secured_client.get("/config").status_code == 401


def test_the_open_sign_in_form_takes_no_large_body(secured_client: TestClient) -> None:
    response = secured_client.post("/login", data={"password": "x" * (5 << 20)})
    assert response.status_code == 413


@pytest.mark.parametrize("target", ["//evil.example/", "https://evil.example/", "/\\evil.example", "javascript:x"])
def test_the_sign_in_redirects_only_within_the_site(secured_client: TestClient, target: str) -> None:
    response = secured_client.post("/login", data={"password": KEY, "next": target})
    assert response.headers["location"] == "/"


def test_a_session_signed_under_an_old_key_is_refused(settings: Settings) -> None:
    old = RagService(_secured(settings), embedder=FakeEmbedder())
    with TestClient(create_app(old, with_ui=False), follow_redirects=False) as client:
        client.post("/login", data={"password": KEY})
        cookie = client.cookies["rag_session"]
    old.close()
    rotated = _secured(settings).model_copy(deep=True)
    rotated.api.key = SecretStr("a-new-key")
    service = RagService(rotated, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=False), cookies={"rag_session": cookie}) as client:
        assert client.get("/metrics").status_code == 401
    service.close()


def test_named_users_sign_in_with_their_password(settings: Settings, tmp_path: Path) -> None:
    users = tmp_path / "users"
    add_user(users, "minji", "correct horse battery")
    add_user(users, "joon", "another good password")
    assert users.stat().st_mode & 0o077 == 0  # readable by its owner only
    service = RagService(_secured(settings, users_file=users), embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=False), follow_redirects=False) as client:
        assert 'name="name"' in client.get("/login").text
        wrong = client.post("/login", data={"name": "minji", "password": "another good password"})
        assert wrong.status_code == 401
        nobody = client.post("/login", data={"name": "nobody", "password": "correct horse battery"})
        assert nobody.status_code == 401
        right = client.post("/login", data={"name": "minji", "password": "correct horse battery"})
        assert right.status_code == 303
        assert client.get("/metrics").status_code == 200
    service.close()


def test_passwords_are_stored_as_salted_hashes() -> None:
    first, second = hash_password("pw-123456"), hash_password("pw-123456")
    assert first != second and "pw-123456" not in first
    assert verify_password("pw-123456", first) and not verify_password("pw-1234567", first)
    assert not verify_password("pw-123456", "not a hash")


def test_a_malformed_users_file_names_its_line(tmp_path: Path) -> None:
    users = tmp_path / "users"
    users.write_text("# staff\nminji:plaintext\n", encoding="utf-8")
    with pytest.raises(ConfigurationError, match=r"users:2"):
        load_users(users)


def test_without_a_key_the_page_is_open_and_sign_in_leads_to_it(open_client: TestClient) -> None:
    assert open_client.get("/config").status_code == 200
    assert open_client.get("/login?next=/config", follow_redirects=False).headers["location"] == "/config"


# ---- Host and Origin ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def open_client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    with _client(make_settings(tmp_path_factory.mktemp("open"))) as client:
        yield client


def test_a_request_for_another_host_name_is_refused(open_client: TestClient) -> None:
    # DNS rebinding: a hostile name that resolves to this machine reaches the app with its own Host
    for path in ("/", "/config", "/v1/models"):
        response = open_client.get(path, headers={"Host": "evil.example:8000"})
        assert response.status_code == 403 and response.json()["error"]["code"] == "forbidden_origin"
    assert open_client.get("/healthz", headers={"Host": "10.0.0.7:8000"}).status_code == 200  # probes: any name


def test_a_cross_site_post_is_refused(open_client: TestClient) -> None:
    files = {"files": ("x.txt", "철도 안전 대책을 발표했다.".encode(), "text/plain")}
    response = open_client.post("/v1/ingest", files=files, headers={"Origin": "https://evil.example"})
    assert response.status_code == 403 and "RAG_ALLOWED_ORIGINS" in response.json()["error"]["message"]
    assert open_client.post("/v1/search", json={"query": "x"}, headers={"Origin": "null"}).status_code == 403
    same_site = open_client.post("/v1/search", json={"query": "공동의장사"}, headers={"Origin": "http://testserver"})
    assert same_site.status_code == 200


def test_loopback_names_are_always_served(settings: Settings) -> None:
    local = settings.model_copy(update={"allowed_origins": []})
    service = RagService(local, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=False), base_url="http://localhost:8000") as client:
        assert client.get("/v1/models").status_code == 200
        assert client.get("/v1/models", headers={"Host": "127.0.0.1:8000"}).status_code == 200
        assert client.get("/v1/models", headers={"Host": "[::1]:8000"}).status_code == 200
        assert client.get("/v1/models", headers={"Host": "testserver"}).status_code == 403
    service.close()


def test_allowed_origins_widen_the_check(settings: Settings) -> None:
    wider = settings.model_copy(update={"allowed_origins": ["https://qa.example.org", "http://testserver"]})
    service = RagService(wider, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=False)) as client:
        headers = {"Host": "qa.example.org", "Origin": "https://qa.example.org"}
        assert client.get("/v1/models", headers=headers).status_code == 200
        other_page = {"Origin": "https://qa.example.org"}  # a listed page calling the app under another name
        assert client.get("/v1/models", headers=other_page).status_code == 200
    service.close()
    anything = settings.model_copy(update={"allowed_origins": ["*"]})
    service = RagService(anything, embedder=FakeEmbedder())
    with TestClient(create_app(service, with_ui=False)) as client:
        assert (
            client.get("/v1/models", headers={"Host": "any.example", "Origin": "https://x.example"}).status_code == 200
        )
    service.close()


def test_gradio_client_gets_nothing_without_the_key(tmp_path_factory: pytest.TempPathFactory) -> None:
    from gradio_client import Client

    settings = _secured(make_settings(tmp_path_factory.mktemp("client")))
    service = RagService(settings, embedder=FakeEmbedder())
    build_ingestor(service).ingest_articles([ARTICLE])
    with serve(create_app(service, with_ui=True)) as url:
        with pytest.raises(ValueError, match="credentials were not provided"):
            Client(url, verbose=False, analytics_enabled=False)
        # with the key the same client connects: the refusal above was the missing credentials
        keyed = Client(url, headers={"Authorization": f"Bearer {KEY}"}, verbose=False, analytics_enabled=False)
        assert isinstance(keyed.view_api(print_info=False, return_format="dict"), dict)
    service.close()


def test_serving_without_a_key_says_who_can_reach_it(settings: Settings, caplog: pytest.LogCaptureFixture) -> None:
    from api.serve import warn_about_exposure

    with caplog.at_level("WARNING"):
        warn_about_exposure(settings)
    assert "RAG_API_KEY is not set" in caplog.text and "this machine" in caplog.text
    caplog.clear()
    everywhere = settings.model_copy(update={"host": "0.0.0.0", "allowed_origins": []})
    with caplog.at_level("WARNING"):
        warn_about_exposure(everywhere)
    assert "anyone who can reach 0.0.0.0:8000" in caplog.text and "RAG_ALLOWED_ORIGINS" in caplog.text
    caplog.clear()
    with caplog.at_level("WARNING"):
        warn_about_exposure(_secured(settings))
    assert not caplog.text


def test_add_user_command_writes_a_user_who_can_sign_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import io

    from api.__main__ import main

    users = tmp_path / "users"
    monkeypatch.setattr("sys.stdin", io.StringIO("a long password\n"))
    assert main(["add-user", "minji", "--file", str(users)]) == 0
    assert verify_password("a long password", load_users(users)["minji"])
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert main(["add-user", "joon", "--file", str(users)]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
