"""The ``urllib3`` processor: ``HTTPConnectionPool.urlopen`` (what ``PoolManager``,
``urllib3.request()`` and ``requests`` end up in).

Selects ``urlopen`` in ``urllib3/connectionpool.py`` (Kolo's choice). The full URL is
rebuilt from the pool's scheme, host and port. urllib3 retries and follows redirects by
calling ``urlopen`` again from inside the first call: those calls are nested in it
(``nested_in``). The response body is recorded when urllib3 has read it
(``preload_content=True``, the default); a streamed response's body is ``None``.
"""

from __future__ import annotations

from typing import Any

import hostapp
from hostapp_plugins.http import begin, finish, full_url, http_processor

NAME = "urllib3"


def _on_call(frame: Any, context: dict[str, Any]) -> dict[str, Any]:
    local = frame.f_locals
    pool = local.get("self")
    url = full_url(
        getattr(pool, "scheme", None) or "http", getattr(pool, "host", None), getattr(pool, "port", None),
        local.get("url"),
    )
    return begin(context, frame, NAME, local.get("method"), url, local.get("headers"), local.get("body"))


def _on_return(frame: Any, event: str, arg: Any, context: dict[str, Any]) -> dict[str, Any]:
    if event != "return" or arg is None:
        return finish(context, frame)
    body = getattr(arg, "_body", None)
    return finish(
        context, frame, getattr(arg, "status", None), getattr(arg, "headers", None),
        body if isinstance(body, (bytes, bytearray)) else None,
    )


PROCESSOR = http_processor(
    name=NAME,
    path_fragment="/urllib3/connectionpool.py",
    co_names=("urlopen",),
    on_call=_on_call,
    on_return=_on_return,
    requires=("urllib3",),
    description="urllib3: HTTPConnectionPool.urlopen",
)


@hostapp.hookimpl
def hostapp_trace_processors() -> Any:
    """The ``urllib3`` processor."""
    return PROCESSOR
