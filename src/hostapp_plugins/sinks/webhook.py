"""The ``webhook`` sink: POSTs JSON batches to a URL, at-least-once.

Configured under ``[events.sinks.webhook]``:

* ``url`` — where to POST (``http://`` or ``https://``; required);
* ``timeout`` — seconds to wait for the whole response (default 10);
* ``headers`` — extra request headers, a table of strings (``Authorization = "..."``).

Each batch is one ``POST`` with ``Content-Type: application/json`` and the body
``{"events": [<event>, ...]}``, each event as :meth:`hostapp.events.Event.to_dict`. Any
2xx answer delivers the batch. 429 and 503 with a ``Retry-After`` header (seconds or an
HTTP date) raise :class:`hostapp.events.RetryAfter`, so the bus waits that long before it
retries; other 429/5xx answers, timeouts and connection errors are retried with the bus's
backoff; any other 4xx raises :class:`hostapp.events.PermanentError` (dead-lettered at
once: retrying the same body cannot help). After ``max_retries`` the batch becomes dead
letters (``hostapp events redeliver`` sends them again).

The URL may carry a secret (``?token=...``, ``user:password@``): every message the sink
raises — and so every warning and dead letter — names it with those values redacted
(the host's redaction policy, as for traced HTTP calls).

Delivery is **at least once**: when the receiver took a batch but the answer was lost
(a timeout, a dropped connection), the batch is sent again. Receivers de-duplicate by the
event ``id`` (unique, time-ordered).
"""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Any

import hostapp
from hostapp.events import PermanentError, RetryAfter

if TYPE_CHECKING:
    from hostapp.events import Event

#: Answers that ask the client to come back later.
RETRY_LATER_STATUSES = frozenset({429, 503})


def retry_after_seconds(value: str | None, *, now: float | None = None) -> float | None:
    """The delay a ``Retry-After`` header asks for, in seconds (``None`` when absent or
    unparseable). Accepts delta-seconds (``"120"``) and HTTP dates."""
    if value is None:
        return None
    text = value.strip()
    if text.isdigit():
        return float(text)
    import email.utils

    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - (time.time() if now is None else now))


class WebhookSink:
    """POSTs each batch as ``{"events": [...]}`` with :mod:`urllib.request`.

    :mod:`urllib.request` (with ``http.client``, ``ssl`` and ``email``) is imported when
    the sink opens, not when the plugin is loaded: a host that does not enable the
    ``webhook`` sink never pays for it.
    """

    def __init__(self) -> None:
        self.url = ""
        #: the URL as messages show it (secrets redacted)
        self.shown = ""
        self.timeout = 10.0
        self.headers: dict[str, str] = {}
        self._opener: Any = None

    def open(self, config: dict[str, Any]) -> None:
        """Read ``url``, ``timeout`` and ``headers`` from ``[events.sinks.webhook]``.

        Raises:
            ValueError: ``url`` is missing or not http(s), ``timeout`` is not a positive
                number, or ``headers`` is not a table of strings (names the key).
        """
        url = config.get("url")
        shown = _redacted(url, config) if isinstance(url, str) else url
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise ValueError(f"events.sinks.webhook.url: expected an http(s) URL, got {shown!r}")
        timeout = config.get("timeout", 10.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"events.sinks.webhook.timeout: expected seconds > 0, got {timeout!r}")
        headers = config.get("headers", {})
        if not isinstance(headers, dict) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in headers.items()
        ):
            raise ValueError("events.sinks.webhook.headers: expected a table of strings")
        import urllib.request

        self._opener = urllib.request.build_opener()
        self.url, self.shown = url, str(shown)
        self.timeout = float(timeout)
        self.headers = {
            "Content-Type": "application/json",
            "User-Agent": f"hostapp/{hostapp.__version__}",
            **headers,
        }

    def handle(self, events: list[Event]) -> None:
        """POST ``events`` as one JSON body.

        Raises:
            RetryAfter: 429/503 with a ``Retry-After`` header.
            PermanentError: any other 4xx answer.
            urllib.error.HTTPError: 429/5xx without ``Retry-After`` (retried with backoff).
            OSError: timeouts and connection errors (retried with backoff).
        """
        import urllib.error
        import urllib.request

        body = json.dumps(
            {"events": [event.to_dict() for event in events]}, default=repr
        ).encode("utf-8")
        request = urllib.request.Request(self.url, data=body, headers=self.headers, method="POST")
        try:
            with self._opener.open(request, timeout=self.timeout) as response:
                response.read()
        except urllib.error.HTTPError as exc:
            exc.read()
            exc.close()
            if exc.code in RETRY_LATER_STATUSES:
                delay = retry_after_seconds(exc.headers.get("Retry-After"))
                if delay is not None:
                    raise RetryAfter(delay, f"{self.shown} answered {exc.code}; Retry-After {delay:g} s") from None
                raise
            if 400 <= exc.code < 500:
                raise PermanentError(f"{self.shown} answered {exc.code} {exc.reason}") from None
            raise
        except OSError as exc:  # the message of a connection error may hold the URL
            text = str(exc)
            if self.url in text:
                raise OSError(text.replace(self.url, self.shown)) from None
            raise


def _redacted(url: str, config: Any) -> str:
    """``url`` as the host's redaction policy shows it (its userinfo and the values of secret
    query parameters redacted: :class:`hostapp.events.redaction.RedactionPolicy`)."""
    from hostapp.events.redaction import RedactionPolicy

    return RedactionPolicy.from_config(getattr(config, "config", None)).url(url)


@hostapp.hookimpl
def hostapp_event_sinks() -> hostapp.EventSink:
    """Contribute the ``webhook`` sink."""
    sink = WebhookSink()
    return hostapp.EventSink(
        name="webhook",
        handle=sink.handle,
        open=sink.open,
        description="POSTs JSON batches to a URL (at-least-once; honours Retry-After).",
        opt_in=True,  # on only with an [events.sinks.webhook] table
    )
