"""Built-in outbound-HTTP trace processors: ``urllib``, ``http.client``, ``urllib3``,
``requests`` and ``httpx`` (sync and async clients).

Each library is its own plugin (``http.urllib``, ``http.client``, ``http.urllib3``,
``http.requests``, ``http.httpx``; disable one with ``plugins.disable`` or a processor with
``--no-processor NAME`` / ``tracing.disable``), contributing one
:class:`~hostapp.TraceProcessor` named after the library. A library that is not installed
makes its processor *not applicable* (``requires``), not an error, and nothing here imports
the libraries: the processors select their code by name and path only.

**One record per HTTP call.** The processors are call-record processors
(``record="call"``) of one group, ``"http"``: an HTTP call is one event of type
``outbound_http_request`` (``subtype`` = the library), made when the call ends. When
libraries nest (``requests`` -> ``urllib3`` -> ``http.client``, ``urllib`` -> ``http.client``),
the outermost call is the record and the inner libraries only add their names to its
``via`` list; a redirect followed inside one call (``requests``, ``httpx``) is that call,
with ``redirects`` counting the hops. The record's data (``docs/tracing.md`` lists every
field)::

    method, url, status_code, duration_ns, call_site, thread_name, span_id, via,
    request  = {headers, body, body_size, body_truncated}
    response = {headers, body, body_size, body_truncated}   (None when the call raised)
    error    = {type, message}                               (only when the call raised)

On the traced thread a processor only keeps references (the request object, the
arguments; the response is the call's return value); reading headers and bodies, cutting
bodies at ``tracing.max_body_bytes`` and encoding happen on the sink's thread
(:func:`exchange`). Redaction is not done here: the event bus applies the host's redaction
policy (:mod:`hostapp.events.redaction`) to every HTTP event before any sink sees it.

Response bodies: recorded where the library has already read them (``requests`` and
``httpx`` unless streaming, ``urllib3`` with ``preload_content``). ``urllib`` and
``http.client`` hand the program an unread stream; reading it would change the program,
so their response ``body`` is ``None`` (``body_size`` comes from ``Content-Length``).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any, Final

__all__ = [
    "GROUP",
    "HttpSettings",
    "body_fields",
    "build_context",
    "exchange",
    "full_url",
    "header_dict",
    "http_processor",
]

#: The event type of an HTTP call record (Kolo's name for the request event).
REQUEST: Final = "outbound_http_request"
#: The processor group of the HTTP processors (see ``TraceProcessor.group``).
GROUP: Final = "http"

_DEFAULT_MAX_BODY: Final = 65_536
_STR_ONLY: Final = {str}


class HttpSettings:
    """The ``tracing.*`` settings the HTTP processors use, read once per run.

    Attributes:
        max_body_bytes: bodies are cut at this many bytes (``tracing.max_body_bytes``).
    """

    __slots__ = ("max_body_bytes",)

    def __init__(self, max_body_bytes: int = _DEFAULT_MAX_BODY) -> None:
        self.max_body_bytes = max_body_bytes

    @classmethod
    def from_config(cls, config: Any) -> HttpSettings:
        """Read ``tracing.max_body_bytes`` from a :class:`hostapp.Config` (or any mapping
        with ``.get``); the default when it is missing, and for ``config=None``."""
        get = getattr(config, "get", None)
        found = get("tracing.max_body_bytes", None) if get is not None else None
        return cls(int(found) if found is not None else _DEFAULT_MAX_BODY)


def build_context(config: Any) -> dict[str, Any]:
    """``build_context`` of every HTTP processor: ``{"settings": HttpSettings}``."""
    return {"settings": HttpSettings.from_config(config)}


# -- values (on the sink's thread) ---------------------------------------------------------


def _text(value: Any) -> str:
    if isinstance(value, str):
        return value
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).decode("latin-1")
    return str(value)


def _int_or_none(value: Any) -> int | None:
    if type(value) is int:
        return value
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


def header_dict(headers: Any) -> dict[str, str]:
    """Headers as a ``{name: value}`` dict, repeated names joined with ``", "``.

    Args:
        headers: a mapping (``dict``, ``email.message.Message``, ``requests``'
            ``CaseInsensitiveDict``, ``httpx.Headers``, urllib3's ``HTTPHeaderDict``:
            anything with ``.items()``), an iterable of ``(name, value)`` pairs, or ``None``.
    """
    if headers is None:
        return {}
    store = getattr(headers, "_store", None)
    if isinstance(store, dict) and type(headers).__name__ == "CaseInsensitiveDict":
        # requests' headers: lower name -> (name, value); names are unique ignoring case
        out = dict(store.values())
        if {*map(type, out), *map(type, out.values())} == _STR_ONLY:
            return out
        # bytes somewhere: the general path below
    out = {}
    try:
        for name, value in _header_items(headers):
            key = name if type(name) is str else _text(name)
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


def exchange(headers: Any, body: Any, max_bytes: int, *, body_size: int | None = None) -> dict[str, Any]:
    """One side of a call, as the record holds it: ``{"headers", "body", "body_size",
    "body_truncated"}`` (``body_size`` given for a body that is not read, from
    ``Content-Length``)."""
    if body is None:
        return {"headers": header_dict(headers), "body": None, "body_truncated": False, "body_size": body_size}
    out = body_fields(body, max_bytes)
    out["headers"] = header_dict(headers)
    return out


def content_length(headers: Any) -> int | None:
    """The ``Content-Length`` header of ``headers`` as an int, or ``None``."""
    get = getattr(headers, "get", None)
    value = get("Content-Length") if get is not None else None
    return int(value) if value is not None and str(value).strip().isdigit() else None


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


def method_text(method: Any) -> str:
    """An HTTP method as upper-case text (``GET`` when unknown)."""
    return _text(method).upper() if method is not None else "GET"


# -- processors ---------------------------------------------------------------------------


def http_processor(
    *,
    name: str,
    path_fragment: str,
    co_names: tuple[str, ...],
    capture: Callable[[Any, dict[str, Any]], Any],
    build: Callable[[Any, Any, BaseException | None, dict[str, Any]], dict[str, Any] | None],
    requires: tuple[str, ...] = (),
    description: str | None = None,
) -> Any:
    """A call-record :class:`~hostapp.TraceProcessor` for one HTTP library, with the
    conventions above (type ``outbound_http_request``, subtype ``name``, group ``"http"``).

    Args:
        name: the processor name, also the ``subtype`` of its records.
        path_fragment, co_names: what it selects (Kolo's fields).
        capture: ``capture(args, context)``: on the traced thread at the call, returns the
            references the record is built from (keep it to attribute reads).
        build: ``build(captured, result, error, context) -> dict``: on the sink's thread,
            the record's ``method``, ``url``, ``status_code``, ``request``, ``response``.
        requires: the library's top-level module (not applicable when missing).
        description: one line for listings.
    """
    from hostapp.types import TraceProcessor

    return TraceProcessor(
        name=name,
        co_names=co_names,
        path_fragment=path_fragment,
        call_type=REQUEST,
        subtype=name,
        record="call",
        group=GROUP,
        capture=capture,
        build=build,
        build_context=build_context,
        requires=requires,
        description=description,
    )
