"""The ASGI app of ``hostapp serve``: hostapp's API and web view, the plugins' routes,
request monitoring and the security guard, put together (:func:`create_app`)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import threading
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

from hostapp.errors import ConfigError, HostappError
from hostapp.serve import require_extra
from hostapp.serve.security import TOKEN_ENV, is_loopback

if TYPE_CHECKING:
    from hostapp.host import Host
    from hostapp.render import Renderers
    from hostapp.store import Store
    from hostapp.types import Contribution, Route

__all__ = ["ServeContext", "create_app"]

logger = logging.getLogger("hostapp.serve")

T = TypeVar("T")


class ServeContext:
    """What the API and the web view share: the host, a read connection to its store, the
    event renderers and the plugin routes (``app.state.hostapp``).

    Attributes:
        host: the :class:`~hostapp.Host` served.
        token: the token, or ``None``.
        loopback: whether the server listens on loopback only.
        routes: the plugin routes mounted (after :meth:`mount_plugin_routes`).
        problems: one line per refused plugin route (empty when building raised).
        stopping: set when the server is shutting down (live streams end on it).
    """

    def __init__(self, host: Host, *, token: str | None, loopback: bool) -> None:
        self.host = host
        self.token = token
        self.loopback = loopback
        self.routes: list[Contribution[Route]] = []
        self.problems: list[str] = []
        self.stopping = threading.Event()
        self.plugin_router: Any = None
        self._mounted = False
        self._lock = threading.Lock()
        self._store: Store | None = None
        self._renderers: Renderers | None = None
        self._provided: dict[str, dict[str, list[str]]] | None = None

    # -- plugin routes -----------------------------------------------------------------

    def mount_plugin_routes(self) -> None:
        """Collect the plugins' routes, check them and mount them; once.

        Raises:
            DuplicateNameError: two plugins claim one path or name, a route overlaps
                another plugin's mount, or a route is under hostapp's own paths.
            HostappError: the host is not running.
        """
        with self._lock:
            if self._mounted:
                return
            if self.host.state != "running":
                raise HostappError(f"the host is {self.host.state}; plugin routes are mounted once it runs")
            from starlette.routing import Mount
            from starlette.routing import Route as StarletteRoute

            from hostapp.serve.routes import collect_routes

            kept, problems = collect_routes(self.host.pm, on_conflict="raise")
            mounted = []
            for contribution in kept:
                spec = contribution.spec
                if spec.kind == "mount":
                    mounted.append(Mount(spec.path, app=_Owned(spec.endpoint, contribution.plugin), name=spec.name))
                else:
                    route = StarletteRoute(spec.path, spec.endpoint, methods=list(spec.methods), name=spec.name)
                    route.app = _Owned(route.app, contribution.plugin)
                    mounted.append(route)
            self.plugin_router.routes.extend(mounted)
            self.routes, self.problems, self._mounted = kept, problems, True

    # -- the store and the renderers ---------------------------------------------------

    def store(self) -> Store | None:
        """A read connection of this app's own to the host's store (``None`` when the
        host runs without a store and none exists at ``store.path``)."""
        if self._store is None:
            from hostapp.store import Store, resolve_store_path

            path = self.host.store.path if self.host.store is not None else resolve_store_path(self.host.config)
            if not path.exists():
                return None
            with self._lock:
                if self._store is None:
                    self._store = Store(path)
        return self._store

    def renderers(self) -> Renderers:
        """The event renderers of the host's plugins (collected once)."""
        if self._renderers is None:
            from hostapp.render import Renderers

            self._renderers = Renderers(self.host.pm.collect("hostapp_event_renderers", on_conflict="report"))
        return self._renderers

    def plugin_rows(self, *, show_all: bool = True) -> list[dict[str, Any]]:
        """``PluginManager.plugin_rows`` with what each plugin provides collected once (so
        a broken registration hook is not reported again at every request)."""
        if self._provided is None:
            self._provided = self.host.pm.provided()
        return self.host.pm.plugin_rows(show_all=show_all, provides=self._provided)

    async def on_host_loop(self, make: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Await ``make()`` on the host's loop (the host's own thread, or this loop)."""
        loop = self.host.loop
        running = asyncio.get_running_loop()
        if loop is None or loop is running or not loop.is_running():
            return await make()
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(make(), loop))

    def close(self) -> None:
        """Close the read connection; idempotent."""
        store, self._store = self._store, None
        if store is not None:
            store.close()


class _Owned:
    """An ASGI app that names the plugin it belongs to in the scope (for monitoring)."""

    def __init__(self, app: Callable[..., Awaitable[None]], plugin: str) -> None:
        self.app = app
        self.plugin = plugin

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        scope["hostapp.plugin"] = self.plugin
        await self.app(scope, receive, send)


class _PluginRoutes:
    """The plugins' routes, mounted as soon as the host runs (at the app's start, or at
    the first request when the app is mounted into another one, whose lifespan does not
    reach it)."""

    def __init__(self, context: ServeContext) -> None:
        self.context = context

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        context = self.context
        if not context._mounted and scope["type"] in ("http", "websocket"):
            if context.host.state != "running":
                from starlette.responses import JSONResponse

                response = JSONResponse({"error": f"the host is {context.host.state}"}, status_code=503)
                await response(scope, receive, send)
                return
            context.mount_plugin_routes()
        await context.plugin_router(scope, receive, send)


def create_app(
    host: Host,
    *,
    token: str | None = None,
    bind: str = "127.0.0.1",
    web: bool = True,
) -> Any:
    """The ASGI app of ``hostapp serve`` for ``host``: the management API (``/api/``,
    ``/-/health``), the web view (``/``) and the plugins' routes (``hostapp_routes``),
    behind request monitoring and the token guard. A Starlette application.

    Use it as it is (``uvicorn``'s app: its lifespan starts ``host`` if it is new and
    stops it at the end), or mount it into your own Starlette or FastAPI app
    (``app.mount("/hostapp", create_app(host))``; start the host in your app's lifespan:
    a mounted app's lifespan is not run, so the plugin routes are mounted at the first
    request after the host runs). See ``docs/host.md`` and ``docs/serve.md``.

    Args:
        host: the host (new or running).
        token: the token for mutating requests (and every request on a non-loopback
            ``bind``); default ``HOSTAPP_SERVE_TOKEN``, else none (mutating requests are
            then refused).
        bind: the address the server listens on; a non-loopback one makes every request
            need the token, and drops the ``Host`` header check.
        web: serve the web view too (``False``: the API and the plugin routes only).

    Returns:
        a ``starlette.applications.Starlette``; ``app.state.hostapp`` is its
        :class:`ServeContext`.

    Raises:
        MissingExtraError: Starlette is not installed (``pip install 'hostapp[serve]'``).
        ConfigError: ``bind`` is not loopback and there is no token.
        DuplicateNameError: ``host`` runs and its plugins' routes conflict.
    """
    require_extra("starlette")
    from starlette.applications import Starlette
    from starlette.middleware import Middleware
    from starlette.routing import Mount, Router

    from hostapp.serve import api
    from hostapp.serve import probes as probes_api
    from hostapp.serve.monitor import RequestMonitor
    from hostapp.serve.security import Guard

    if token is None:
        token = os.environ.get(TOKEN_ENV, "").strip() or None
    loopback = is_loopback(bind)
    if not loopback and not token:
        raise ConfigError("create_app", f"bind {bind!r} is not loopback; pass token= or set {TOKEN_ENV}")
    context = ServeContext(host, token=token, loopback=loopback)
    context.plugin_router = Router(routes=[])
    if host.state == "running":
        context.mount_plugin_routes()
    routes = [*probes_api.routes(context), *api.routes(context)]  # before the API's catch-all
    if web:
        from hostapp.serve import web as web_view

        routes.extend(web_view.routes(context))
    routes.append(Mount("", app=_PluginRoutes(context)))

    @contextlib.asynccontextmanager
    async def lifespan(app: Any) -> AsyncIterator[None]:
        started_here = host.state == "new"
        if started_here:
            await host.astart()
        try:
            context.mount_plugin_routes()
            yield
        finally:
            context.stopping.set()
            context.close()
            if started_here:
                await host.astop()

    app = Starlette(
        routes=routes,
        exception_handlers={api.ApiError: api.handle_api_error},
        middleware=[
            Middleware(RequestMonitor, host=host),
            Middleware(Guard, token=token, loopback=loopback),
        ],
        lifespan=lifespan,
    )
    app.state.hostapp = context
    return app
