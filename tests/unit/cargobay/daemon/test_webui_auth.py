"""The TCP token: its file, the policy (``decide``) and the ASGI guard around the daemon
app (driven through httpx's ASGI transport, which presents itself as a TCP peer; the Unix
socket's ``server == (path, None)`` scope is given directly), plus the ``/proc`` parsers
behind the machine metrics."""

from __future__ import annotations

import os
import stat
from collections.abc import MutableMapping
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI

from cargobay.daemon.webui.auth import (
    COOKIE,
    TokenGuard,
    decide,
    load_or_create_token,
    over_unix_socket,
)

TOKEN = "s3cret-token_value"


def test_token_file_is_made_private_once(tmp_path: Path) -> None:
    path = tmp_path / "state" / "ui-token"
    first = load_or_create_token(path)
    assert len(first) >= 40
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert load_or_create_token(path) == first  # reused, not replaced
    os.chmod(path, 0o644)
    assert load_or_create_token(path) == first
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # tightened again
    path.write_text("")
    assert load_or_create_token(path) not in ("", first)  # an empty file gets a new one
    assert [p.name for p in path.parent.iterdir()] == ["ui-token"]  # no temp file left


def _decide(**kwargs: Any) -> Any:
    base: dict[str, Any] = {"method": "GET", "path": "/v1/info", "query": ""}
    base.update(authorization=None, cookie=None)
    base.update(kwargs)
    return decide(TOKEN, **base)


def test_bearer_or_cookie_lets_in() -> None:
    assert _decide(authorization=f"Bearer {TOKEN}").action == "allow"
    assert _decide(authorization=f"bearer  {TOKEN} ").action == "allow"
    assert _decide(cookie=f"theme=dark; {COOKIE}={TOKEN}").action == "allow"


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({}, "came over TCP without the daemon's token"),
        ({"authorization": "Bearer wrong"}, "not this daemon's token"),
        ({"authorization": f"Basic {TOKEN}"}, "not this daemon's token"),
        ({"cookie": f"{COOKIE}=wrong"}, "not this daemon's token"),
        ({"cookie": "other=1"}, "without the daemon's token"),
        ({"authorization": f"Bearer {TOKEN}x"}, "not this daemon's token"),
    ],
)
def test_anything_else_is_denied_with_directions(kwargs: dict[str, Any], says: str) -> None:
    d = _decide(**kwargs)
    assert d.action == "deny"
    assert says in d.message
    assert "Authorization: Bearer <token>" in d.message
    assert "/ui/?token=" in d.message


def test_token_in_the_address_redirects_without_it() -> None:
    d = _decide(path="/ui/", query=f"token={TOKEN}")
    assert d.action == "redirect"
    assert d.location == "/ui/"
    d = _decide(path="/ui/index.html", query=f"a=1&token={TOKEN}&b=two")
    assert d.location == "/ui/index.html?a=1&b=two"
    assert _decide(path="/ui/", query="token=nope").action == "deny"
    # only for a page load: a POST with the token in the address is refused
    assert _decide(method="POST", path="/v1/machines", query=f"token={TOKEN}").action == "deny"


def test_unix_socket_scope_is_recognised() -> None:
    assert over_unix_socket({"server": ("/run/cargobayd.sock", None)})
    assert not over_unix_socket({"server": ("127.0.0.1", 8765)})
    assert not over_unix_socket({})  # unknown: fail closed


def _app() -> FastAPI:
    app = FastAPI()

    @app.get("/v1/info")
    async def info() -> dict[str, str]:
        return {"ok": "yes"}

    @app.get("/ui/")
    async def ui() -> dict[str, str]:
        return {"page": "index"}

    return app


async def test_guard_over_tcp() -> None:
    guard = TokenGuard(_app(), TOKEN, Path("/state/ui-token"))
    transport = httpx.ASGITransport(app=guard)
    async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8765") as c:
        r = await c.get("/v1/info")
        assert r.status_code == 401
        assert r.headers["www-authenticate"].startswith("Bearer")
        body = r.json()["error"]
        assert body["code"] == "unauthorized"
        assert "/state/ui-token" in body["message"]
        r = await c.get("/v1/info", headers={"Authorization": f"Bearer {TOKEN}"})
        assert r.json() == {"ok": "yes"}
        r = await c.get(f"/ui/?token={TOKEN}")
        assert r.status_code == 303
        assert r.headers["location"] == "/ui/"
        assert r.headers["set-cookie"] == f"{COOKIE}={TOKEN}; Path=/; HttpOnly; SameSite=Strict"
        r = await c.get("/ui/", headers={"Cookie": f"{COOKIE}={TOKEN}"})
        assert r.json() == {"page": "index"}


async def test_guard_lets_the_unix_socket_through() -> None:
    sent: list[dict[str, Any]] = []

    async def receive() -> dict[str, Any]:
        return {"type": "http.request", "body": b"", "more_body": False}

    async def send(message: MutableMapping[str, Any]) -> None:
        sent.append(dict(message))

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": "GET",
        "scheme": "http",
        "path": "/v1/info",
        "raw_path": b"/v1/info",
        "query_string": b"",
        "root_path": "",
        "headers": [(b"host", b"localhost")],
        "server": ("/run/cargobayd.sock", None),
        "client": None,
    }
    await TokenGuard(_app(), TOKEN)(scope, receive, send)
    assert sent[0]["status"] == 200
    assert b'"ok":"yes"' in sent[1]["body"]

