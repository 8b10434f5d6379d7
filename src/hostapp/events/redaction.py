"""Redaction, a policy of the event path: secrets leave an HTTP event before any sink sees it.

The bus applies one :class:`RedactionPolicy` to every event of an HTTP type
(``outbound_http_request``, ``outbound_http_response``), whoever made it: the built-in
processors, Kolo's processors, a custom processor, ``host.emit``. It runs on the sink's
thread when a batch is taken (and on the emitting thread for an event spilled or dropped
from a full queue), never on the traced thread. What it replaces with ``[REDACTED]``:

* the value of every key named like a secret, at any depth of the event's data: header
  names (``Authorization``, ``Proxy-Authorization``, ``Cookie``, ``Set-Cookie``,
  ``X-Api-Key`` and ``tracing.redact_headers``) and parameter names (``token``,
  ``api_key``, ``password``, ``secret``, ... and ``tracing.redact_params``), compared
  case-insensitively — so ``headers``, ``request.headers``, a custom processor's own keys
  and the keys of a JSON body parsed below are all covered;
* in every URL found in a string (``scheme://...``: the ``url`` field, ``Location`` and
  ``Referer`` headers, exception messages, which requests and urllib3 fill with the full
  URL): the values of query parameters named like secrets, the password of
  ``user:password@``, and a user name given alone (``https://TOKEN@host/``, how tokens are
  often passed);
* in a body (a string under a key named ``body``): the values of such keys in a JSON body
  (an object or array) and in a form body (``a=1&password=x``).

A processor can add names (``TraceProcessor.redact``) but never remove the defaults; only
the user's configuration replaces the lists. :meth:`RedactionPolicy.explain` says what the
policy does, for ``hostapp config`` and the docs.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, Final

from hostapp.events.record import Event

__all__ = [
    "DEFAULT_HEADERS",
    "DEFAULT_PARAMS",
    "HTTP_EVENT_TYPES",
    "REDACTED",
    "RedactionPolicy",
]

#: What a redacted value is replaced with.
REDACTED: Final = "[REDACTED]"

#: Header names whose values are secrets (``tracing.redact_headers``' default).
DEFAULT_HEADERS: Final[tuple[str, ...]] = (
    "Authorization", "Proxy-Authorization", "Cookie", "Set-Cookie", "X-Api-Key",
)
#: Query-parameter and body-key names whose values are secrets (``tracing.redact_params``).
DEFAULT_PARAMS: Final[tuple[str, ...]] = (
    "token", "access_token", "refresh_token", "id_token", "api_key", "apikey", "password",
    "passwd", "secret", "client_secret",
)
#: The event types the policy applies to.
HTTP_EVENT_TYPES: Final[frozenset[str]] = frozenset({"outbound_http_request", "outbound_http_response"})

#: A URL in running text: a scheme, ``://``, then up to whitespace or a quote.
_URL: Final = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://[^\s'\"<>]+")
#: A form body: ``name=value`` pairs joined by ``&`` (and nothing that looks like prose).
_FORM: Final = re.compile(r"^[^\s=&]+=[^\s&]*(&[^\s=&]+=[^\s&]*)*$")
#: A query parameter in running text without its URL's scheme (``url: /x?token=abc``, as
#: urllib3 writes it in its exceptions): ``?name=value`` or ``&name=value``.
_PARAM_IN_TEXT: Final = re.compile(r"(?<=[?&])([^=&\s?#'\"()]+)=([^&\s#'\"()]*)")
#: What a key's string value is to the policy.
_PLAIN, _SECRET, _BODY, _NETLOC = 0, 1, 2, 3

#: The keys of a call record's data (``hostapp_plugins.http``); data with no other key takes
#: the fast path, which reads only ``url``, ``method``, the two sides' headers and bodies and
#: ``error``; the other keys hold numbers, names and the call site.
_RECORD_KEYS: Final = frozenset({
    "method", "url", "status_code", "duration_ns", "call_site", "thread_name", "span_id", "trace_id",
    "parent_span_id", "via", "redirects", "request", "response", "error", "build_error",
})
_SIDE_KEYS: Final = frozenset({"headers", "body", "body_size", "body_truncated"})
#: Headers whose value is a host or URL that may carry userinfo (``user:pass@host``).
_NETLOC_HEADERS: Final = frozenset({"host", "location", "content-location", "referer", "origin"})


class RedactionPolicy:
    """The names whose values are secrets, and how to take them out of an event.

    Args:
        headers: header names (any case).
        params: query-parameter and body-key names (any case).
        event_types: the event types the policy applies to (default: the HTTP types).

    Attributes:
        names: every secret name, lower-cased (headers and parameters together: a key is a
            secret wherever it appears).
        event_types: as given.
    """

    __slots__ = ("_keys", "_mention", "_plain", "_secret", "event_types", "header_names", "names", "param_names")

    def __init__(
        self,
        headers: Iterable[str] = DEFAULT_HEADERS,
        params: Iterable[str] = DEFAULT_PARAMS,
        event_types: Iterable[str] = HTTP_EVENT_TYPES,
    ) -> None:
        self.header_names = frozenset(h.lower() for h in headers)
        self.param_names = frozenset(p.lower() for p in params)
        self.names = self.header_names | self.param_names
        self.event_types = frozenset(event_types)
        #: key -> its role (see :meth:`_role`), filled as keys are met
        self._keys: dict[str, int] = {}
        #: the keys seen whose role is plain (a header dict of only these is judged in C)
        self._plain: set[str] = set()
        #: the keys seen whose role is secret
        self._secret: set[str] = set()
        #: the fewest names whose presence tells any secret name is there (``token`` stands
        #: for ``access_token``), for :meth:`_mentions`
        self._mention = _minimal(self.names)

    @classmethod
    def from_config(cls, config: Any, extra: Iterable[str] = ()) -> RedactionPolicy:
        """The policy of ``tracing.redact_headers`` and ``tracing.redact_params`` (the
        defaults where a key is missing, or for ``config=None``), plus ``extra`` names
        (the processors' ``redact`` fields), which count as both."""
        get = getattr(config, "get", None)
        headers: Iterable[str] = DEFAULT_HEADERS
        params: Iterable[str] = DEFAULT_PARAMS
        if get is not None:
            found = get("tracing.redact_headers", None)
            headers = DEFAULT_HEADERS if found is None else found
            found = get("tracing.redact_params", None)
            params = DEFAULT_PARAMS if found is None else found
        extra = tuple(extra)
        return cls((*headers, *extra), (*params, *extra))

    def extended(self, names: Iterable[str]) -> RedactionPolicy:
        """This policy with ``names`` added (as header and parameter names)."""
        names = tuple(names)
        if not names:
            return self
        return RedactionPolicy((*self.header_names, *names), (*self.param_names, *names), self.event_types)

    def explain(self) -> list[str]:
        """What the policy redacts, one sentence per rule (for ``hostapp config`` and docs)."""
        return [
            f"event types: {', '.join(sorted(self.event_types))}",
            f"values of keys named (any depth, any case): {', '.join(sorted(self.names))}",
            "in URLs inside any string: those query parameters, the password of user:password@, "
            "and a user name given alone",
            "in bodies (a string under 'body'): those keys of a JSON or form body",
        ]

    # -- applying it -----------------------------------------------------------------

    def applies(self, event: Event) -> bool:
        """Whether ``event`` is of a type this policy covers."""
        return event.type in self.event_types

    def redact_event(self, event: Event) -> Event:
        """``event`` with its data redacted: the same object when nothing changed, else a
        copy (same id and fields; the data dicts on the changed path are new, the emitter's
        are never modified)."""
        data = event.data
        new = self._record(data) if data.keys() <= _RECORD_KEYS else self._mapping(data)
        return event if new is data else event.with_data(new)

    def _record(self, data: dict[str, Any]) -> dict[str, Any]:
        """The fast path for data of the call record's shape (built-in HTTP processors: only
        the keys of :data:`_RECORD_KEYS`): only the places that can hold a secret are read."""
        changed: dict[str, Any] | None = None
        for key in ("url", "method"):
            value = data.get(key)
            if type(value) is str and ("=" in value or "@" in value):
                new = self.text(value)
                if new != value:
                    if changed is None:
                        changed = dict(data)
                    changed[key] = new
        for key in ("request", "response"):
            side = data.get(key)
            if side is None:
                continue
            if type(side) is not dict or not side.keys() <= _SIDE_KEYS:
                new_side = self._mapping(side) if isinstance(side, Mapping) else self._sequence(side) if type(side) in (list, tuple) else side
            else:
                new_side = side
                headers = side.get("headers")
                if type(headers) is dict:
                    redacted = self._headers(headers)
                    if redacted is not headers:
                        new_side = dict(side)
                        new_side["headers"] = redacted
                body = side.get("body")
                if type(body) is str and body:
                    redacted_body = self.body(body)
                    if redacted_body != body:
                        if new_side is side:
                            new_side = dict(side)
                        new_side["body"] = redacted_body
            if new_side is not side:
                if changed is None:
                    changed = dict(data)
                changed[key] = new_side
        error = data.get("error")
        if error is not None:
            new_error = self._mapping(error) if isinstance(error, Mapping) else error
            if new_error is not error:
                if changed is None:
                    changed = dict(data)
                changed["error"] = new_error
        return data if changed is None else changed

    def _mapping(self, value: Mapping[Any, Any]) -> Any:
        """A mapping with every secret taken out (see the module docstring); the same object
        when it holds none. The hot loop of the policy: strings are judged inline."""
        keys = self._keys
        changed: dict[Any, Any] | None = None
        for k, v in value.items():
            kind = type(v)
            if kind is str:
                if type(k) is str:
                    role = keys.get(k)
                    if role is None:
                        role = self._role(k)
                    if role == _SECRET:
                        if v == REDACTED:
                            continue
                        new: Any = REDACTED
                    elif role == _BODY:
                        new = self.body(v)
                    elif "=" not in v and "@" not in v:
                        continue  # no query, no form, no userinfo: nothing to take out
                    elif role == _NETLOC and "@" in v and "://" not in v:
                        new = self.url(f"//{v}")[2:]
                    else:
                        new = self.text(v)
                elif "=" not in v and "@" not in v:
                    continue
                else:
                    new = self.text(v)
                if new == v:
                    continue
            elif kind is dict:
                new = self._mapping(v)
                if new is v:
                    continue
            elif kind is int or kind is float or kind is bytes:
                if type(k) is not str or (keys.get(k) if k in keys else self._role(k)) != _SECRET:
                    continue
                new = REDACTED
            elif v is None or kind is bool:
                continue
            elif kind is list or kind is tuple:
                new = self._sequence(v)
                if new is v:
                    continue
            elif isinstance(v, Mapping):
                new = self._mapping(v)
                if new is v:
                    continue
            else:
                continue
            if changed is None:
                changed = dict(value)
            changed[k] = new
        return value if changed is None else changed

    def _headers(self, headers: dict[str, Any]) -> dict[str, Any]:
        """A header dict redacted, judged in C when its names are all known (seen before):
        the secret ones are replaced at once, and the values are searched together for a
        userinfo or a query; anything else takes :meth:`_mapping`, which learns the names."""
        extra = headers.keys() - self._plain
        if extra and not extra <= self._secret:
            return self._mapping(headers)
        try:
            values = "\0".join(headers.values())
        except TypeError:  # a value that is not a string
            return self._mapping(headers)
        if "@" in values or ("=" in values and ("?" in values or "&" in values)):
            return self._mapping(headers)
        if not extra:
            return headers
        changed = None
        for key in extra:
            if headers[key] != REDACTED:
                if changed is None:
                    changed = dict(headers)
                changed[key] = REDACTED
        return headers if changed is None else changed

    def _role(self, key: str) -> int:
        """What a key's string value is to the policy (cached per key: header names repeat)."""
        lower = key.lower()
        role = (
            _SECRET if lower in self.names else _BODY if lower == "body"
            else _NETLOC if lower in _NETLOC_HEADERS else _PLAIN
        )
        if len(self._keys) < 4096:
            self._keys[key] = role
            if role == _PLAIN:
                self._plain.add(key)
            elif role == _SECRET:
                self._secret.add(key)
        return role

    def _sequence(self, value: list[Any] | tuple[Any, ...]) -> Any:
        names = self.names
        if (
            len(value) == 2 and type(value[0]) is str and type(value[1]) is str
            and value[0].lower() in names
        ):  # a (name, value) pair of a header list
            if value[1] == REDACTED:
                return value
            return [value[0], REDACTED] if type(value) is list else (value[0], REDACTED)
        out: list[Any] | None = None
        for i, item in enumerate(value):
            kind = type(item)
            if kind is str:
                if "=" not in item and "@" not in item:
                    continue
                new = self.text(item)
                if new == item:
                    continue
            elif kind is dict:
                new = self._mapping(item)
                if new is item:
                    continue
            elif kind is list or kind is tuple:
                new = self._sequence(item)
                if new is item:
                    continue
            else:
                continue
            if out is None:
                out = list(value)
            out[i] = new
        if out is None:
            return value
        return out if type(value) is list else tuple(out)

    def _mentions(self, text: str) -> bool:
        """Whether any secret name occurs in ``text`` (case-insensitive): the gate of the
        slower passes (a plain substring test per name beats a regular expression here)."""
        lower = text.lower()
        for name in self._mention:
            if name in lower:
                return True
        return False

    def text(self, text: str) -> str:
        """``text`` with every URL in it redacted (:meth:`url`), and secret query parameters
        written without their URL (``url: /x?token=abc``); the same string when it has none."""
        if "@" in text and "://" in text:
            text = _URL.sub(lambda m: self.url(m.group(0)), text)
        if "=" in text and ("?" in text or "&" in text) and self._mentions(text):
            names = self.names

            def param(match: re.Match[str]) -> str:
                name = match.group(1)
                if _unquote_plus(name).lower() in names and match.group(2) != REDACTED:
                    return f"{name}={REDACTED}"
                return match.group(0)

            text = _PARAM_IN_TEXT.sub(param, text)
        return text

    def url(self, url: str) -> str:
        """``url`` with the userinfo and the secret query parameters redacted; everything else
        byte for byte (no re-encoding). A URL without a scheme (``//host/...``) works too."""
        scheme, sep, rest = url.partition("//")
        if not sep or (scheme and not scheme.endswith(":")):
            return url
        scheme = scheme[:-1] if scheme else ""
        netloc, slash, tail = rest.partition("/")
        if "@" in netloc:
            userinfo, _, host = netloc.rpartition("@")
            user, colon, _password = userinfo.partition(":")
            redacted = f"{user}:{REDACTED}" if colon else REDACTED
            url = f"{scheme}{':' if scheme else ''}//{redacted}@{host}{slash}{tail}"
        if "?" not in url:
            return url
        base, _, query = url.partition("?")
        query, hash_, fragment = query.partition("#")
        new_query = self._pairs(query)
        if new_query is query:
            return url
        return f"{base}?{new_query}{hash_}{fragment}"

    def _pairs(self, query: str) -> str:
        """``a=1&token=x`` with the secret values redacted (the same string when none is)."""
        parts = query.split("&")
        changed = False
        for i, part in enumerate(parts):
            name, eq, value = part.partition("=")
            if eq and value != REDACTED and _unquote_plus(name).lower() in self.names:
                parts[i] = f"{name}={REDACTED}"
                changed = True
        return "&".join(parts) if changed else query

    def body(self, body: str) -> str:
        """A body with the secret keys of a JSON or form body redacted, and URLs in it."""
        if not self._mentions(body):
            return self.text(body) if "@" in body else body
        head = body.lstrip()[:1]
        if head in ("{", "["):
            import orjson

            try:
                parsed = orjson.loads(body)
            except orjson.JSONDecodeError:
                return self.text(body)  # cut at max_body_bytes, or not JSON after all
            if type(parsed) is dict:
                redacted = self._mapping(parsed)
            elif type(parsed) is list:
                redacted = self._sequence(parsed)
            else:
                return body
            return body if redacted is parsed else orjson.dumps(redacted).decode()
        if "=" in body and len(body) < 1_000_000 and _FORM.match(body):
            return self._pairs(body)
        return self.text(body)


def _minimal(names: Iterable[str]) -> tuple[str, ...]:
    """``names`` without those that contain another one (a text mentioning ``access_token``
    mentions ``token``): the substrings :meth:`RedactionPolicy._mentions` looks for."""
    ordered = sorted(set(names), key=len)
    kept: list[str] = []
    for name in ordered:
        if not any(shorter in name for shorter in kept):
            kept.append(name)
    return tuple(kept)


def _unquote_plus(name: str) -> str:
    if "%" not in name and "+" not in name:
        return name
    from urllib.parse import unquote_plus  # imported on first use only (import cost)

    return unquote_plus(name)
