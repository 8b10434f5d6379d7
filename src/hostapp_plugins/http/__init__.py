"""Built-in outbound-HTTP trace processors: ``urllib``, ``http.client``, ``urllib3``,
``requests`` and ``httpx`` (sync and async clients).

Each library is its own plugin (``http.urllib``, ``http.client``, ``http.urllib3``,
``http.requests``, ``http.httpx``; disable one with ``plugins.disable`` or a processor
with ``--no-processor NAME`` / ``tracing.disable``), contributing one
:class:`~hostapp.TraceProcessor` named after the library. A library that is not installed
makes its processor *not applicable* (``requires``), not an error, and nothing here
imports the libraries: the processors select their code by name and path only.

Events follow Kolo's convention (``docs/tracing.md`` lists every field):

``outbound_http_request`` (the call)
    ``library``, ``method``, ``url``, ``method_and_full_url``, ``headers`` (a dict),
    ``body`` (text, cut at ``tracing.max_body_bytes``), ``body_truncated``, ``body_size``
    (bytes, when known), ``nested_in``;
``outbound_http_response`` (the return, or the exception exit)
    ``library``, ``method``, ``url``, ``status_code``, ``headers``, ``body``,
    ``body_truncated``, ``body_size``, ``duration_ns``, ``nested_in``, and on an exception
    ``exception_type`` / ``exception_message`` (from the engine).

``subtype`` is the library. The request and its response share ``frame_id``.

Nesting. When libraries nest (``requests`` -> ``urllib3`` -> ``http.client``), the outermost
call is *the* HTTP call; a call made from inside another HTTP call (its function is on the
call stack) carries ``nested_in`` = the ``frame_id`` of the innermost one. ``hostapp
events`` shows only calls with ``nested_in`` = ``None`` unless asked for ``--nested``, so
each HTTP call appears once, with the outer library's name. The calls in progress are kept
in a :class:`contextvars.ContextVar`, so concurrent asyncio tasks on one thread never see
one another's calls.

Redaction. Header values named in ``tracing.redact_headers`` (default ``Authorization``,
``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``, ``X-Api-Key``) and query parameter
values named in ``tracing.redact_params`` (default ``token``, ``api_key``, ``password``,
``secret``), compared case-insensitively, become ``[REDACTED]``, as does the password of a
URL's ``user:password@``. Bodies are not parsed or redacted.

Response bodies: captured where the library has already read them (``requests`` and
``httpx`` unless streaming, ``urllib3`` with ``preload_content``). ``urllib`` and
``http.client`` hand the program an unread stream; reading it would change the program,
so their response ``body`` is ``None`` (``body_size`` comes from ``Content-Length``).
"""

from __future__ import annotations

import contextvars
import time
from types import FrameType as _FrameType
from collections.abc import Iterable, Mapping
from typing import Any, Final

from hostapp.events import new_id

__all__ = [
    "REDACTED",
    "HttpSettings",
    "begin",
    "body_fields",
    "build_context",
    "finish",
    "in_progress",
    "redact_headers",
    "redact_url",
]

#: What a redacted value is replaced with.
REDACTED: Final = "[REDACTED]"

REQUEST: Final = "outbound_http_request"
RESPONSE: Final = "outbound_http_response"

_DEFAULT_HEADERS: Final = ("Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key")
_DEFAULT_PARAMS: Final = ("token", "api_key", "password", "secret")
_DEFAULT_MAX_BODY: Final = 65_536


class HttpSettings:
    """The ``tracing.*`` settings the HTTP processors use, read once per run.

    Attributes:
        max_body_bytes: bodies are cut at this many bytes (``tracing.max_body_bytes``).
        redact_headers: lower-cased header names whose values are redacted.
        redact_params: lower-cased query parameter names whose values are redacted.
    """

    __slots__ = ("max_body_bytes", "redact_headers", "redact_params")

    def __init__(
        self,
        max_body_bytes: int = _DEFAULT_MAX_BODY,
        redact_headers: Iterable[str] = _DEFAULT_HEADERS,
        redact_params: Iterable[str] = _DEFAULT_PARAMS,
    ) -> None:
        self.max_body_bytes = max_body_bytes
        self.redact_headers = frozenset(h.lower() for h in redact_headers)
        self.redact_params = frozenset(p.lower() for p in redact_params)

    @classmethod
    def from_config(cls, config: Any) -> HttpSettings:
        """Read ``tracing.max_body_bytes``, ``tracing.redact_headers`` and
        ``tracing.redact_params`` from a :class:`hostapp.Config` (or any mapping with
        ``.get``); defaults for what is missing, and for ``config=None``."""
        get = getattr(config, "get", None)
        if get is None:
            return cls()

        def value(key: str, default: Any) -> Any:
            found = get(key, None)
            return default if found is None else found

        return cls(
            int(value("tracing.max_body_bytes", _DEFAULT_MAX_BODY)),
            value("tracing.redact_headers", _DEFAULT_HEADERS),
            value("tracing.redact_params", _DEFAULT_PARAMS),
        )


def build_context(config: Any) -> dict[str, Any]:
    """``build_context`` of every HTTP processor: ``{"settings": HttpSettings}``."""
    return {"settings": HttpSettings.from_config(config)}


# -- calls in progress --------------------------------------------------------------------


class _Call:
    __slots__ = ("id", "key", "library", "method", "nested_in", "start_ns", "url")

    def __init__(self, key: object, library: str, method: str, url: str, nested_in: str | None) -> None:
        self.start_ns = time.time_ns()
        self.id = new_id(self.start_ns)
        self.key = key
        self.library = library
        self.method = method
        self.url = url
        self.nested_in = nested_in


#: Most calls kept in progress per thread/task; beyond it the oldest are forgotten (a
#: program that calls ``HTTPConnection.request`` and never ``getresponse``).
_MAX_ACTIVE: Final = 64

_ACTIVE: contextvars.ContextVar[tuple[_Call, ...]] = contextvars.ContextVar("hostapp_http_active", default=())


def in_progress(key: object, context: Mapping[str, Any]) -> bool:
    """Whether a call begun with ``key`` (a frame, or a connection) is in progress here."""
    return any(c.key is key for c in _ACTIVE.get())


def begin(
    context: Mapping[str, Any],
    key: object,
    library: str,
    method: Any,
    url: Any,
    headers: Any,
    body: Any,
    *,
    frame: Any = None,
) -> dict[str, Any]:
    """Record an HTTP call starting and return its request event data.

    Args:
        context: the processor's context (from :func:`build_context`).
        key: what :func:`finish` finds the call by: the frame of a function that spans
            the whole call, or the connection object for ``http.client``.
        library: ``"requests"``, ``"urllib3"``, ...
        method: the HTTP method (``str`` or ``bytes``).
        url: the full URL (redacted here).
        headers: a mapping, or an iterable of ``(name, value)`` pairs, or ``None``.
        body: ``bytes``, ``str``, ``None`` or anything else (then only its type is kept).
        frame: the frame of the call (default ``key``, when it is a frame): the calls in
            progress on its stack enclose this one.

    Returns:
        the data of the ``outbound_http_request`` event, with ``frame_id`` set to the
        call's id (the response carries the same).
    """
    settings: HttpSettings = context["settings"]
    stack = _ACTIVE.get()
    outer = None
    if stack:
        stack, outer = _enclosing(stack, key if frame is None else frame)
    method_s = _text(method).upper() if method is not None else "GET"
    url_s = redact_url(_text(url), settings.redact_params)
    call = _Call(key, library, method_s, url_s, outer)
    _ACTIVE.set((*stack[-_MAX_ACTIVE + 1:], call))
    data = {
        "frame_id": call.id,
        "library": library,
        "method": method_s,
        "url": url_s,
        "method_and_full_url": f"{method_s} {url_s}",
        "headers": redact_headers(headers, settings.redact_headers),
        "nested_in": outer,
    }
    data.update(body_fields(body, settings.max_body_bytes))
    return data


def finish(
    context: Mapping[str, Any],
    key: object,
    status: Any = None,
    headers: Any = None,
    body: Any = None,
    *,
    body_size: int | None = None,
) -> dict[str, Any]:
    """Record an HTTP call ending (a response, or an exception) and return the response
    event data. ``key`` is the one given to :func:`begin`; a call not in progress gives
    data without ``frame_id``/``nested_in`` (the engine's ``frame_id`` stays)."""
    settings: HttpSettings = context["settings"]
    stack = _ACTIVE.get()
    call = None
    for i in range(len(stack) - 1, -1, -1):
        if stack[i].key is key:
            call = stack[i]
            _ACTIVE.set(stack[:i] + stack[i + 1:])
            break
    data: dict[str, Any] = {
        "status_code": status if isinstance(status, int) or status is None else _int_or_none(status),
        "headers": redact_headers(headers, settings.redact_headers),
    }
    data.update(body_fields(body, settings.max_body_bytes))
    if body is None and body_size is not None:
        data["body_size"] = body_size
    if call is not None:
        data["frame_id"] = call.id
        data["library"] = call.library
        data["method"] = call.method
        data["url"] = call.url
        data["nested_in"] = call.nested_in
        data["duration_ns"] = time.time_ns() - call.start_ns
    return data


def _enclosing(stack: tuple[_Call, ...], current: Any) -> tuple[tuple[_Call, ...], str | None]:
    """The calls still in progress, and the id of the innermost one the frame ``current``
    is inside.

    A call keyed by a frame encloses the new call when that frame is on the new call's
    stack (``key.f_back`` chain); a frame-keyed call that is not is left over from a call
    the engine did not see end (it stopped mid-call) and is dropped. Calls keyed by a
    connection (``http.client``) are kept until their response and enclose nothing.
    """
    frames = {id(c.key): c for c in stack if isinstance(c.key, _FrameType)}
    if not frames:
        return stack, None
    found: list[_Call] = []
    wanted = len(frames)
    frame = getattr(current, "f_back", None)
    while frame is not None:
        call = frames.get(id(frame))
        if call is not None and call.key is frame:
            found.append(call)
            if len(found) == wanted:  # every call in progress found: no need to go further up
                break
        frame = frame.f_back
    outer = found[0].id if found else None
    if len(found) != len(frames):
        live = {id(c) for c in found}
        stack = tuple(c for c in stack if not isinstance(c.key, _FrameType) or id(c) in live)
    return stack, outer


# -- values -------------------------------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return str(value)


def _int_or_none(value: Any) -> int | None:
    try:
        return int(value)
    except (TypeError, ValueError):
        return None


def body_fields(body: Any, max_bytes: int) -> dict[str, Any]:
    """``{"body", "body_truncated", "body_size"}`` for a request or response body.

    ``bytes``/``str`` bodies become text (UTF-8, undecodable bytes replaced) cut at
    ``max_bytes`` bytes; a file, generator or other stream is not read: ``body`` is
    ``"<TypeName>"`` and ``body_size`` ``None``.
    """
    if body is None:
        return {"body": None, "body_truncated": False, "body_size": None}
    if isinstance(body, str):
        raw = body.encode("utf-8", "surrogateescape")
    elif isinstance(body, (bytes, bytearray, memoryview)):
        raw = bytes(body)
    else:
        return {"body": f"<{type(body).__name__}>", "body_truncated": False, "body_size": None}
    size = len(raw)
    cut = size > max_bytes
    if cut:
        raw = raw[:max_bytes]
    return {"body": raw.decode("utf-8", "replace"), "body_truncated": cut, "body_size": size}


def redact_headers(headers: Any, names: frozenset[str]) -> dict[str, str]:
    """Headers as a ``{name: value}`` dict (repeated names joined with ``", "``), the
    values of ``names`` (lower-case) replaced by ``[REDACTED]``.

    Args:
        headers: a mapping (``dict``, ``email.message.Message``, ``requests``'
            ``CaseInsensitiveDict``, ``httpx.Headers``: anything with ``.items()``), an
            iterable of ``(name, value)`` pairs, or ``None``.
    """
    if headers is None:
        return {}
    out: dict[str, str] = {}
    items = _header_items(headers)
    try:
        for name, value in items:
            key = name if type(name) is str else _text(name)
            if key.lower() in names:
                text = REDACTED
            else:
                text = value if type(value) is str else _text(value)
            out[key] = f"{out[key]}, {text}" if key in out else text
    except (TypeError, ValueError):
        return {"<headers>": f"<{type(headers).__name__}>"}
    return out


def _header_items(headers: Any) -> Iterable[tuple[Any, Any]]:
    """``(name, value)`` pairs of a header container, without the per-item Python calls
    of the generic ``Mapping.items()`` where the container is one we know: requests'
    ``CaseInsensitiveDict`` (``_store``: lower name -> (name, value)) and urllib3's
    ``HTTPHeaderDict`` (``_container``: lower name -> [name, value, ...]; the repeated
    values joined here, where ``items()`` would give one pair per value)."""
    store = getattr(headers, "_store", None)
    if isinstance(store, dict) and type(headers).__name__ == "CaseInsensitiveDict":
        return store.values()
    container = getattr(headers, "_container", None)
    if isinstance(container, dict) and type(headers).__name__ == "HTTPHeaderDict":
        return [(v[0], ", ".join(v[1:])) for v in container.values()]
    return headers.items() if hasattr(headers, "items") else headers


def redact_url(url: str, params: frozenset[str]) -> str:
    """``url`` with the values of query parameters named in ``params`` (lower-case) and
    the password of ``user:password@`` replaced by ``[REDACTED]``. Everything else is
    kept byte for byte (no re-encoding)."""
    if "@" in url:
        scheme, sep, rest = url.partition("://")
        if sep:
            netloc, slash, tail = rest.partition("/")
            userinfo, at, host = netloc.rpartition("@")
            if at and ":" in userinfo:
                user = userinfo.split(":", 1)[0]
                url = f"{scheme}://{user}:{REDACTED}@{host}{slash}{tail}"
    if "?" not in url or not params:
        return url
    base, _, rest = url.partition("?")
    query, hash_, fragment = rest.partition("#")
    parts = query.split("&")
    changed = False
    for i, part in enumerate(parts):
        name, eq, _value = part.partition("=")
        if eq and _unquote_plus(name).lower() in params:
            parts[i] = f"{name}={REDACTED}"
            changed = True
    if not changed:
        return url
    return f"{base}?{'&'.join(parts)}{hash_}{fragment}"


def _unquote_plus(name: str) -> str:
    if "%" not in name and "+" not in name:
        return name
    from urllib.parse import unquote_plus  # imported on first use only (import cost)

    return unquote_plus(name)


# -- processors ---------------------------------------------------------------------------


def http_processor(
    *,
    name: str,
    path_fragment: str,
    co_names: tuple[str, ...],
    on_call: Any,
    on_return: Any,
    requires: tuple[str, ...] = (),
    call: Any = None,
    description: str | None = None,
) -> Any:
    """A :class:`~hostapp.TraceProcessor` for one HTTP library, with the conventions above.

    Args:
        name: the processor name, also the ``subtype`` and ``library`` of its events.
        path_fragment, co_names: what it selects (Kolo's fields).
        on_call: ``on_call(frame, context) -> dict``: the request data, made with
            :func:`begin` (keyed by ``frame``).
        on_return: ``on_return(frame, event, arg, context) -> dict``: the response data,
            made with :func:`finish`; ``event`` is ``"return"`` (``arg`` the return value)
            or ``"unwind"`` (``arg`` the exception).
        requires: the library's top-level module (not applicable when missing).
        call: the ``call`` filter; default: every call, and a return only when its call
            is in progress (:func:`in_progress` keyed by the frame).
        description: one line for listings.
    """
    from hostapp.types import TraceProcessor

    def process(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
        if event == "call":
            return on_call(frame, context)  # type: ignore[no-any-return]
        return on_return(frame, event, arg, context)  # type: ignore[no-any-return]

    def default_call(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> bool:
        return event == "call" or in_progress(frame, context)

    return TraceProcessor(
        name=name,
        co_names=co_names,
        path_fragment=path_fragment,
        call_type=REQUEST,
        return_type=RESPONSE,
        subtype=name,
        call=call or default_call,
        process=process,
        build_context=build_context,
        events=("call", "return", "unwind"),
        requires=requires,
        description=description,
    )


def full_url(scheme: str, host: Any, port: Any, path: Any) -> str:
    """``scheme://host[:port]path``, the port left out when it is the scheme's default;
    ``path`` already absolute (a proxy request) is returned as it is."""
    path_s = _text(path) if path is not None else "/"
    if path_s.startswith(("http://", "https://")):
        return path_s
    host_s = _text(host) if host is not None else ""
    if ":" in host_s and not host_s.startswith("["):
        host_s = f"[{host_s}]"  # IPv6
    default = 443 if scheme == "https" else 80
    netloc = host_s if port in (None, default) else f"{host_s}:{port}"
    return f"{scheme}://{netloc}{path_s}"
