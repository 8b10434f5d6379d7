"""The probes section of the management API (``/api/probes``): list, show, add and remove
probe specs, as ``hostapp probes list|show|add|rm|clear`` do (``docs/serve.md``,
``docs/probes.md``).

The specs go to the store ``probes.store`` names in the served host's configuration (the
SQLite store by default, a Redis component with ``probes.store = "component:NAME"``);
every running host that shares it applies them within ``probes.poll_interval`` and writes
back its ``applied`` record. The rows, the checks and their messages are the CLI's
(:mod:`hostapp.probes.admin`). Adding and removing are mutating requests: they need the
token (:mod:`hostapp.serve.security`).
"""

from __future__ import annotations

import json
import logging
from urllib.parse import quote
from typing import TYPE_CHECKING, Any, Final

from hostapp.errors import HostappError
from hostapp.serve.api import ApiError, json_response, need_store

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from hostapp.probes.stores import SpecStore
    from hostapp.serve.app import ServeContext

__all__ = ["MAX_BODY", "routes", "spec_store"]

logger = logging.getLogger("hostapp.serve")

#: The largest body ``POST /api/probes`` reads, bytes (a spec is a few hundred).
MAX_BODY: Final = 64 * 1024


def spec_store(context: ServeContext) -> SpecStore:
    """The probe spec store of the served host's configuration: the SQLite store through
    the app's own connection, or the host's Redis component.

    Raises:
        ApiError: 404, there is no SQLite store yet; 503, ``probes.store`` is malformed
            or names a component that is not available (the message names it).
    """
    from hostapp.probes.stores import open_spec_store, store_setting

    host = context.host
    try:
        kind, name = store_setting(host.config)
        if kind == "sqlite":
            return open_spec_store(host.config, store=need_store(context))
        return open_spec_store(host.config, component=host.component(str(name)))
    except HostappError as exc:
        raise ApiError(f"probes.store: {exc}", 503) from None


def _guarded(what: str, call: Any) -> Any:
    """``call()``, a store failure answered with 503 naming ``what``."""
    try:
        return call()
    except ApiError:
        raise
    except Exception as exc:  # noqa: BLE001 - the store's own errors (sqlite3, redis)
        raise ApiError(f"{what}: the probe spec store failed: {type(exc).__name__}: {exc}", 503) from None


def routes(context: ServeContext) -> list[Any]:
    """The Starlette routes of ``/api/probes`` for ``context`` (placed before the API's
    catch-all, :func:`hostapp.serve.api.routes`)."""
    from starlette.concurrency import run_in_threadpool
    from starlette.routing import Route

    from hostapp.probes import ProbeSpecError
    from hostapp.probes import admin

    types: list[str] = []

    def instrument_types() -> list[str]:
        """The instrument types the served host's plugins provide (collected once)."""
        if not types:
            types.extend(sorted(c.spec.name for c in context.host.pm.collect("hostapp_instrument_types",
                                                                             on_conflict="report")))
        return types

    def list_probes(request: Request) -> Response:
        store = spec_store(context)
        return json_response(_guarded("GET /api/probes", lambda: admin.spec_rows(store)))

    def one_probe(request: Request) -> Response:
        spec_id = request.path_params["spec_id"]
        store = spec_store(context)
        rows = _guarded(f"probe spec {spec_id!r}", lambda: admin.spec_rows(store, spec_id))
        if not rows:
            raise ApiError(f"no probe spec {spec_id!r}; GET /api/probes lists them", 404)
        return json_response(rows[0])

    def add(body: Any) -> tuple[dict[str, Any], bool, bool]:
        config = context.host.config
        try:
            spec = admin.checked_spec(admin.spec_from_request(body), config=config, types=instrument_types())
        except ProbeSpecError as exc:
            raise ApiError(str(exc), 422) from None
        store = spec_store(context)
        data = spec.to_dict()

        def put() -> bool:
            replaced = spec.id in store.specs()
            store.put(data)
            return replaced

        replaced = _guarded(f"probe spec {spec.id!r}", put)
        return data, replaced, bool(config.get("probes.allow_unsafe"))

    async def add_probe(request: Request) -> Response:
        body = await _read_json(request)
        data, replaced, unsafe = await run_in_threadpool(add, body)
        response = json_response(data, 200 if replaced else 201)
        base = request.scope.get("root_path", "").rstrip("/")
        response.headers["Location"] = f"{base}/api/probes/{quote(data['id'], safe='')}"
        if unsafe:
            warning = "probes.allow_unsafe = true: this probe's expressions are not checked"
            logger.warning("POST /api/probes: %s (%s)", warning, data["id"])
            response.headers["X-Hostapp-Warning"] = warning
        return response

    def remove_probe(request: Request) -> Response:
        spec_id = request.path_params["spec_id"]
        store = spec_store(context)
        removed, missing = _guarded(f"probe spec {spec_id!r}", lambda: admin.remove_specs(store, [spec_id]))
        if missing:
            raise ApiError(f"no probe spec {spec_id!r}; GET /api/probes lists them", 404)
        return json_response({"removed": removed})

    def clear_probes(request: Request) -> Response:
        store = spec_store(context)
        return json_response({"removed": _guarded("DELETE /api/probes", store.clear)})

    return [
        Route("/api/probes", list_probes, methods=["GET"], name="hostapp:probes"),
        Route("/api/probes", add_probe, methods=["POST"], name="hostapp:probes-add"),
        Route("/api/probes", clear_probes, methods=["DELETE"], name="hostapp:probes-clear"),
        Route("/api/probes/{spec_id}", one_probe, methods=["GET"], name="hostapp:probe"),
        Route("/api/probes/{spec_id}", remove_probe, methods=["DELETE"], name="hostapp:probe-remove"),
    ]


async def _read_json(request: Request) -> Any:
    """The request's body parsed as JSON.

    Raises:
        ApiError: 413, more than :data:`MAX_BODY` bytes; 400, not UTF-8 JSON (naming
            where it fails).
    """
    chunks = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > MAX_BODY:
            raise ApiError(f"the body is larger than {MAX_BODY} bytes; a probe spec is a small JSON object", 413)
        chunks.append(chunk)
    raw = b"".join(chunks)
    if not raw.strip():
        raise ApiError("expected a JSON object: a probe spec in Diagnose's format, or the fields of "
                       "'hostapp probes add' (target, type, value, ...); the body is empty", 400)
    try:
        return json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise ApiError(f"the body is not JSON: {exc}", 400) from None
