"""Who may talk to ``hostapp serve``: the bind address, the token, the Host header.

The model (``docs/serve.md``, "Security"):

* the server binds ``127.0.0.1`` unless told otherwise;
* every *mutating* request (any method but GET, HEAD and OPTIONS, and every WebSocket)
  needs the token, sent in a header: ``Authorization: Bearer TOKEN`` or
  ``X-Hostapp-Token: TOKEN``. A browser sends neither on a cross-site form post or
  image, and a cross-site ``fetch`` with such a header needs a CORS pre-flight that is
  never granted, so no cookie-style CSRF is possible;
* on a non-loopback bind *every* request needs the token; a reading request may carry it
  as the ``token`` query parameter too (what a browser can do for a page or an
  ``EventSource``); a mutating one only in a header;
* on a loopback bind the ``Host`` header must name a loopback host (``127.0.0.1``,
  ``localhost``, ``[::1]``), so a web page cannot reach the server by DNS rebinding;
* the token is ``HOSTAPP_SERVE_TOKEN``, or one generated at start and printed once
  (Jupyter's way); a non-loopback bind without ``HOSTAPP_SERVE_TOKEN`` refuses to start.
"""

from __future__ import annotations

import hmac
import ipaddress
import json
import os
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from hostapp.errors import ConfigError

__all__ = ["TOKEN_ENV", "Guard", "is_loopback", "resolve_token"]

#: The environment variable holding the token.
TOKEN_ENV = "HOSTAPP_SERVE_TOKEN"

#: Methods that never change state (RFC 9110 "safe" methods we answer).
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name from ``--host``) is a loopback address:
    ``127.0.0.0/8``, ``::1`` or ``localhost``. ``0.0.0.0`` and ``::`` are not."""
    name = host.strip().strip("[]").lower()
    if name == "localhost" or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def resolve_token(bind: str, environ: Mapping[str, str] | None = None) -> tuple[str, bool]:
    """The token for a server bound to ``bind``.

    Args:
        bind: the ``--host`` address.
        environ: where to read :data:`TOKEN_ENV` (default ``os.environ``).

    Returns:
        ``(token, generated)``: the token, and whether it was generated now (then the
        caller prints it once).

    Raises:
        ConfigError: ``bind`` is not a loopback address and :data:`TOKEN_ENV` is unset or
            empty (exit status 2 in the CLI).
    """
    env = os.environ if environ is None else environ
    token = (env.get(TOKEN_ENV) or "").strip()
    if token:
        return token, False
    if not is_loopback(bind):
        raise ConfigError(
            "--host",
            f"{bind} is not a loopback address, so every request needs a token: set {TOKEN_ENV} "
            "to a secret (e.g. $(python -c 'import secrets; print(secrets.token_urlsafe(32))')) "
            "and send it as 'Authorization: Bearer TOKEN'",
        )
    return secrets.token_urlsafe(32), True


def _headers(scope: Mapping[str, Any]) -> dict[str, str]:
    return {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope.get("headers", ())}


def header_token(headers: Mapping[str, str]) -> str | None:
    """The token a request sends in ``Authorization: Bearer`` or ``X-Hostapp-Token``."""
    value = headers.get("x-hostapp-token")
    if value:
        return value.strip()
    auth = headers.get("authorization", "")
    scheme, _, credentials = auth.partition(" ")
    if scheme.lower() == "bearer" and credentials.strip():
        return credentials.strip()
    return None


def query_token(scope: Mapping[str, Any]) -> str | None:
    """The ``token`` query parameter of a request, or ``None``."""
    from urllib.parse import parse_qs

    raw = scope.get("query_string", b"").decode("latin-1")
    values = parse_qs(raw).get("token")
    return values[0] if values else None


def _host_name(value: str) -> str:
    """The host part of a ``Host`` header (``[::1]:8765`` -> ``::1``)."""
    value = value.strip()
    if value.startswith("["):
        return value[1 : value.find("]")] if "]" in value else value
    return value.rsplit(":", 1)[0] if value.count(":") == 1 else value


class Guard:
    """ASGI middleware enforcing the security model of this module.

    Args:
        app: the ASGI app it protects.
        token: the token, or ``None`` (then every mutating request is refused, and so is
            every request on a non-loopback bind).
        loopback: the server listens on loopback only (reads need no token; the ``Host``
            header must be a loopback name).

    A refused request gets ``401`` (missing or wrong token, with ``WWW-Authenticate:
    Bearer``) or ``403`` (a ``Host`` header that is not loopback), with a JSON body
    ``{"error": "..."}`` saying what to send.
    """

    def __init__(self, app: Callable[..., Any], *, token: str | None, loopback: bool) -> None:
        self.app = app
        self.token = token
        self.loopback = loopback

    def _valid(self, offered: str | None) -> bool:
        return bool(offered) and self.token is not None and hmac.compare_digest(
            offered.encode(), self.token.encode()  # type: ignore[union-attr]
        )

    def check(self, scope: Mapping[str, Any]) -> tuple[int, str] | None:
        """``None`` when the request may go on, else ``(status, reason)``."""
        headers = _headers(scope)
        if self.loopback:
            host = headers.get("host")
            if host is not None and not is_loopback(_host_name(host)):
                return 403, (
                    f"Host {host!r} is not a loopback name; this server listens on loopback only "
                    "(open it as http://127.0.0.1:PORT/)"
                )
        method = scope.get("method", "GET") if scope["type"] == "http" else "WEBSOCKET"
        safe = method in SAFE_METHODS
        if safe and self.loopback:
            return None
        if self._valid(header_token(headers)):
            return None
        if (safe or scope["type"] == "websocket") and self._valid(query_token(scope)):
            return None
        if self.token is None:
            return 401, f"{method} needs a token, and this server has none: set {TOKEN_ENV}"
        if safe:
            return 401, "this server needs its token: send 'Authorization: Bearer TOKEN' (or ?token=TOKEN)"
        return 401, f"{method} needs the token in a header: 'Authorization: Bearer TOKEN' or 'X-Hostapp-Token: TOKEN'"

    async def __call__(self, scope: dict[str, Any], receive: Callable[..., Any], send: Callable[..., Any]) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refused = self.check(scope)
        if refused is None:
            await self.app(scope, receive, send)
            return
        status, reason = refused
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 4401 if status == 401 else 4403, "reason": reason})
            return
        body = json.dumps({"error": reason}).encode()
        headers = [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]
        if status == 401:
            headers.append((b"www-authenticate", b'Bearer realm="hostapp"'))
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})
