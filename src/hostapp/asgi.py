"""hostapp as an ASGI application: :func:`create_app` (the app ``hostapp serve`` runs).

Serve it with any ASGI server, or mount it into your own Starlette or FastAPI app::

    from contextlib import asynccontextmanager

    from fastapi import FastAPI
    from hostapp import Host
    from hostapp.asgi import create_app

    host = Host(command=["uvicorn", "shop:app"])
    hostapp_app = create_app(host)

    @asynccontextmanager
    async def lifespan(app):
        async with host:                 # a mounted app's own lifespan is not run
            yield

    app = FastAPI(lifespan=lifespan)
    app.mount("/hostapp", hostapp_app)   # the API, the web view and the plugins' routes

Needs the ``hostapp[serve]`` extra (Starlette; uvicorn to serve it). See ``docs/serve.md``.
"""

from __future__ import annotations

from hostapp.serve.app import ServeContext, create_app

__all__ = ["ServeContext", "create_app"]
