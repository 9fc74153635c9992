"""The sign-in page for the chat page, and the users file behind named sign-ins.

With `RAG_API_KEY` set, a browser signs in here once, with the key itself or with a name and password from
`RAG_API_USERS_FILE`; Starlette's SessionMiddleware then keeps a signed session cookie (HttpOnly,
SameSite=Strict) that api/access.py accepts for the page and every route it uses. Passwords are stored as
scrypt hashes (`python -m api add-user NAME` writes them), compared in constant time.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import html
import re
import secrets
from functools import lru_cache
from pathlib import Path

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response

from api.access import KEY_USER, SESSION_USER, SIGN_IN_PATH
from rag.errors import ConfigurationError

USER_NAME = re.compile(r"[A-Za-z0-9_.@-]{1,64}")
SCRYPT_N, SCRYPT_R, SCRYPT_P = 2**14, 8, 1
FAILED_SIGN_IN_DELAY_S = 0.5  # each wrong guess costs the guesser half a second
MAX_FIELD_CHARS = 1024
WRONG_CREDENTIALS = "Wrong name, password or key. / 이름, 비밀번호 또는 키가 틀렸습니다."
PAGE_HEADERS = {
    "cache-control": "no-store",
    "content-security-policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'",
    "x-frame-options": "DENY",
}


# ---- users file ----------------------------------------------------------------------------------------


def hash_password(password: str) -> str:
    salt = secrets.token_bytes(16)
    digest = hashlib.scrypt(password.encode("utf-8"), salt=salt, n=SCRYPT_N, r=SCRYPT_R, p=SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${_b64(salt)}${_b64(digest)}"


def verify_password(password: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        expected = base64.b64decode(digest)
        actual = hashlib.scrypt(
            password.encode("utf-8"), salt=base64.b64decode(salt), n=int(n), r=int(r), p=int(p), dklen=len(expected)
        )
    except ValueError:
        return False
    return scheme == "scrypt" and hmac.compare_digest(actual, expected)


def load_users(path: Path) -> dict[str, str]:
    """`name:hash` lines (blank lines and `#` comments skipped) → name → hash."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"RAG_API_USERS_FILE {path} cannot be read ({exc}); fix the path or unset it") from exc
    users: dict[str, str] = {}
    for number, line in enumerate(lines, start=1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        name, _, stored = line.strip().partition(":")
        if not USER_NAME.fullmatch(name) or not stored.startswith("scrypt$"):
            raise ConfigurationError(
                f"{path}:{number}: expected `name:scrypt$...` (write users with `python -m api add-user NAME`)"
            )
        users[name] = stored
    return users


def add_user(path: Path, name: str, password: str) -> None:
    """Add or replace one user's line; the file is created readable by its owner only."""
    if not USER_NAME.fullmatch(name):
        raise ConfigurationError(f"user name {name!r}: use 1-64 letters, digits, '_', '.', '@' or '-'")
    if len(password) < 8:
        raise ConfigurationError("the password needs at least 8 characters")
    users = load_users(path) if path.exists() else {}
    users[name] = hash_password(password)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.touch(mode=0o600, exist_ok=True)
    path.write_text("".join(f"{user}:{stored}\n" for user, stored in users.items()), encoding="utf-8")


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ---- the page ------------------------------------------------------------------------------------------


def sign_in_router(api_key: bytes | None, users: dict[str, str]) -> APIRouter:
    router = APIRouter(include_in_schema=False)

    @router.get(SIGN_IN_PATH)
    async def sign_in_page(next: str = "/") -> Response:
        if api_key is None:  # nothing to sign in to
            return RedirectResponse(_safe_next(next), status_code=303)
        return _page(_safe_next(next), bool(users))

    @router.post(SIGN_IN_PATH)
    async def sign_in(request: Request) -> Response:
        form = await request.form()
        name, password, target = (
            str(form.get(field) or "")[:MAX_FIELD_CHARS] for field in ("name", "password", "next")
        )
        target = _safe_next(target)
        if api_key is None:
            return RedirectResponse(target, status_code=303)
        user = _check(name.strip(), password, api_key, users)
        if user is None:
            await asyncio.sleep(FAILED_SIGN_IN_DELAY_S)
            return _page(
                target, bool(users), error="Wrong name, password or key. / 이름, 비밀번호 또는 키가 틀렸습니다."
            )
        request.session.clear()
        request.session[SESSION_USER] = user
        return RedirectResponse(target, status_code=303, headers={"cache-control": "no-store"})

    @router.api_route("/logout", methods=["GET", "POST"])
    async def sign_out(request: Request) -> Response:
        if api_key is not None:  # without a key there is no session (nor its middleware)
            request.session.clear()
        return RedirectResponse(SIGN_IN_PATH, status_code=303)

    return router


def _check(name: str, password: str, api_key: bytes, users: dict[str, str]) -> str | None:
    if not name:
        return KEY_USER if hmac.compare_digest(password.encode("utf-8"), api_key) else None
    stored = users.get(name)
    if stored is None:
        verify_password(password, _unknown_user_hash())  # as slow as a real user's check: names stay secret
        return None
    return name if verify_password(password, stored) else None


@lru_cache(maxsize=1)
def _unknown_user_hash() -> str:
    return hash_password(secrets.token_urlsafe(16))


def _safe_next(target: str) -> str:
    """Only a path on this site: `//evil.example` or `https://evil.example` would make the sign-in an open
    redirect."""
    if not target.startswith("/") or target.startswith("//") or "\\" in target or any(ord(ch) < 32 for ch in target):
        return "/"
    return target


def _page(target: str, with_users: bool, error: str | None = None) -> HTMLResponse:
    name_field = (
        "<label>Name / 이름 <small>(empty: sign in with the access key / 비우면 접속 키로 로그인)</small>"
        '<input name="name" autocomplete="username"></label>'
        if with_users
        else ""
    )
    secret_label = "Password or access key / 비밀번호 또는 접속 키" if with_users else "Access key / 접속 키"
    message = f'<p role="alert" class="error">{html.escape(error)}</p>' if error else ""
    body = f"""<!doctype html>
<html lang="ko"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>Sign in · Policy news QA</title>
<style>
body {{ font-family: system-ui, sans-serif; max-width: 24rem; margin: 4rem auto; padding: 0 1rem; color: #222; }}
label {{ display: block; margin: 1rem 0 .25rem; }}
input {{ display: block; width: 100%; padding: .5rem; margin-top: .25rem; box-sizing: border-box; }}
button {{ margin-top: 1.25rem; padding: .5rem 1.5rem; }}
.error {{ color: #b00020; }}
</style></head>
<body><main>
<h1>Policy news QA</h1>
<p>Sign in to ask questions. / 질문하려면 로그인하세요.</p>
{message}
<form method="post" action="{SIGN_IN_PATH}">
{name_field}
<label>{secret_label}<input name="password" type="password" autocomplete="current-password" required autofocus></label>
<input type="hidden" name="next" value="{html.escape(target, quote=True)}">
<button type="submit">Sign in / 로그인</button>
</form>
</main></body></html>
"""
    return HTMLResponse(body, status_code=401 if error else 200, headers=PAGE_HEADERS)
