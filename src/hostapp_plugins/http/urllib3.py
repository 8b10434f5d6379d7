"""The ``urllib3`` processor: ``HTTPConnectionPool.urlopen`` (what ``PoolManager``,
``urllib3.request()`` and ``requests`` end up in).

Selects ``urlopen`` in ``urllib3/connectionpool.py`` (Kolo's choice). The full URL is
rebuilt from the pool's scheme, host and port. Under ``requests`` it is an inner call: it
adds ``"urllib3"`` to the outer record's ``via``. urllib3 retries and follows redirects by
calling ``urlopen`` again from inside the first call: one record. The response body is
recorded when urllib3 has read it (``preload_content=True``, the default); a streamed
response's body is ``None``.
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import exchange, full_url, http_processor, method_text

NAME = "urllib3"


def _capture(args: Any, context: dict[str, Any]) -> Any:
    return (args.get("self"), args.get("method"), args.get("url"), args.get("headers"), args.get("body"))


def _build(captured: Any, response: Any, error: BaseException | None, context: dict[str, Any]) -> dict[str, Any]:
    pool, method, url, headers, body = captured
    limit = context["settings"].max_body_bytes
    record: dict[str, Any] = {
        "method": method_text(method),
        "url": full_url(
            getattr(pool, "scheme", None) or "http", getattr(pool, "host", None), getattr(pool, "port", None), url,
        ),
        "request": exchange(headers, body, limit),
        "status_code": None,
        "response": None,
    }
    if response is not None:
        content = getattr(response, "_body", None)
        record["status_code"] = getattr(response, "status", None)
        record["response"] = exchange(
            getattr(response, "headers", None), content if isinstance(content, (bytes, bytearray)) else None, limit,
        )
    return record


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/urllib3/connectionpool.py",
    co_names=("urlopen",),
    capture=_capture,
    build=_build,
    requires=("urllib3",),
    description="urllib3: HTTPConnectionPool.urlopen",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``urllib3`` processor."""
    return PROCESSOR
