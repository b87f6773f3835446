"""The daemon's token for TCP clients, and the ASGI guard that asks for it.

Over the Unix socket (0600, in a 0700 directory) the kernel already says who may talk to
the daemon, so no token is needed there.  A TCP listener (``cargobayd --listen-tcp``)
has no such check: every request on it must carry the token, as
``Authorization: Bearer <token>`` or as the ``cargobay_token`` cookie.  A browser gets
the cookie by opening ``/ui/?token=<token>`` once: the guard answers with a redirect to
the same address without the token (so it leaves the address bar and the history) and
sets the cookie (``HttpOnly``, ``SameSite=Strict``: another site's page cannot make the
browser send it).  Anything else is ``401`` with a body that says how to get in.

The token is made at the daemon's first start (32 random bytes, URL-safe) into a 0600
file under the state directory and reused afterwards.  :func:`decide` is the whole
policy, free of I/O; :class:`TokenGuard` applies it to ASGI scopes.
"""

from __future__ import annotations

import hmac
import json
import os
import secrets
from dataclasses import dataclass
from http.cookies import CookieError, SimpleCookie
from pathlib import Path
from typing import Literal
from urllib.parse import parse_qsl, urlencode

from starlette.types import ASGIApp, Receive, Scope, Send

__all__ = [
    "COOKIE",
    "Decision",
    "TokenGuard",
    "decide",
    "load_or_create_token",
    "over_unix_socket",
]

COOKIE = "cargobay_token"
TOKEN_FILE = "ui-token"


def load_or_create_token(path: Path) -> str:
    """The token in ``path``; made (0600, atomically) when the file is missing or empty."""
    try:
        token = path.read_text().strip()
    except FileNotFoundError:
        token = ""
    if token:
        if path.stat().st_mode & 0o077:
            os.chmod(path, 0o600)
        return token
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        os.write(fd, token.encode() + b"\n")
    finally:
        os.close(fd)
    os.replace(tmp, path)
    return token


@dataclass(frozen=True, slots=True)
class Decision:
    action: Literal["allow", "redirect", "deny"]
    location: str = ""
    """``redirect``: where to (the path and the query without the token)."""
    message: str = ""
    """``deny``: why, and how to get in."""


def _same(given: str | None, token: str) -> bool:
    return given is not None and hmac.compare_digest(given.encode(), token.encode())


def _bearer(authorization: str | None) -> str | None:
    if not authorization:
        return None
    scheme, _, value = authorization.strip().partition(" ")
    return value.strip() if scheme.lower() == "bearer" else None


def _cookie(header: str | None) -> str | None:
    if not header:
        return None
    jar: SimpleCookie = SimpleCookie()
    try:
        jar.load(header)
    except CookieError:
        return None
    morsel = jar.get(COOKIE)
    return morsel.value if morsel is not None else None


def decide(
    token: str,
    *,
    method: str,
    path: str,
    query: str,
    authorization: str | None,
    cookie: str | None,
    token_file: str = "the daemon's ui-token file",
) -> Decision:
    """What to do with one request that came over TCP."""
    if _same(_bearer(authorization), token) or _same(_cookie(cookie), token):
        return Decision("allow")
    pairs = parse_qsl(query, keep_blank_values=True)
    offered = [value for key, value in pairs if key == "token"]
    if offered and method in ("GET", "HEAD"):
        if _same(offered[-1], token):
            rest = urlencode([(k, v) for k, v in pairs if k != "token"])
            return Decision("redirect", location=path + (f"?{rest}" if rest else ""))
        return Decision("deny", message="the token in the address is not this daemon's token")
    if authorization or (cookie and COOKIE in cookie):
        problem = "the token sent is not this daemon's token"
    else:
        problem = "this request came over TCP without the daemon's token"
    return Decision(
        "deny",
        message=f"{problem}: send 'Authorization: Bearer <token>' or open /ui/?token=<token> "
        f"in the browser (the token is in {token_file}; `cargobay ui` prints the address)",
    )


def over_unix_socket(scope: Scope) -> bool:
    """uvicorn gives a Unix-socket connection ``server == (path, None)``; a TCP one has a
    port.  Anything else (no ``server``) counts as TCP: the guard fails closed."""
    server = scope.get("server")
    return isinstance(server, tuple | list) and len(server) == 2 and server[1] is None


class TokenGuard:
    """ASGI middleware: requests over TCP need the token (see the module docstring)."""

    def __init__(self, app: ASGIApp, token: str, token_file: Path | None = None) -> None:
        self.app = app
        self.token = token
        self.token_file = str(token_file) if token_file else "the daemon's ui-token file"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket") or over_unix_socket(scope):
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        decision = decide(
            self.token,
            method=scope.get("method", "GET"),
            path=scope.get("path", "/"),
            query=scope.get("query_string", b"").decode("latin-1"),
            authorization=headers.get("authorization"),
            cookie=headers.get("cookie"),
            token_file=self.token_file,
        )
        if decision.action == "allow":
            await self.app(scope, receive, send)
            return
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401, "reason": "unauthorized"})
            return
        if decision.action == "redirect":
            cookie = f"{COOKIE}={self.token}; Path=/; HttpOnly; SameSite=Strict"
            response_headers = [
                (b"location", decision.location.encode("latin-1")),
                (b"set-cookie", cookie.encode("latin-1")),
                (b"cache-control", b"no-store"),
                (b"content-length", b"0"),
            ]
            await send({"type": "http.response.start", "status": 303, "headers": response_headers})
            await send({"type": "http.response.body", "body": b""})
            return
        body = json.dumps({"error": {"code": "unauthorized", "message": decision.message}})
        await send(
            {
                "type": "http.response.start",
                "status": 401,
                "headers": [
                    (b"content-type", b"application/json"),
                    (b"www-authenticate", b'Bearer realm="cargobayd"'),
                    (b"content-length", str(len(body)).encode()),
                ],
            }
        )
        await send({"type": "http.response.body", "body": body.encode()})
