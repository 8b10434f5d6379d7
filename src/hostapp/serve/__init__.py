"""``hostapp serve``: the ASGI app (plugin routes, the management API, the web view).

The parts, each in its own module:

* :mod:`hostapp.serve.routes` — the plugins' :class:`~hostapp.types.Route` specs checked
  against each other and against hostapp's own paths (no Starlette needed: ``hostapp
  routes`` lists them without the extra);
* :mod:`hostapp.serve.security` — the bind address and the token: loopback by default, a
  token for every mutating request and for every request on a non-loopback bind;
* :mod:`hostapp.serve.monitor` — a ``monitoring_event`` for every request served;
* :mod:`hostapp.serve.api` — the JSON management API under ``/api/`` and ``/-/health``;
* :mod:`hostapp.serve.probes` — its probes section, ``/api/probes`` (on
  :mod:`hostapp.probes.admin`, as ``hostapp probes`` is);
* :mod:`hostapp.serve.timeline` — a run's events laid out on one time axis (bars, marks,
  lanes by thread; no Starlette);
* :mod:`hostapp.serve.web` — the server-rendered web view (runs, a run's waterfall, one
  call, plugins);
* :mod:`hostapp.serve.app` — :func:`~hostapp.serve.app.create_app`, which puts them
  together (public as :func:`hostapp.asgi.create_app`);
* :mod:`hostapp.serve.server` — uvicorn, the bind socket and the orderly shutdown behind
  the ``hostapp serve`` command.

Everything that needs Starlette or uvicorn imports them lazily; :func:`require_extra`
turns their absence into one clear error.
"""

from __future__ import annotations

from hostapp.errors import HostappError

__all__ = ["MissingExtraError", "require_extra"]


class MissingExtraError(HostappError):
    """The ``hostapp[serve]`` extra (Starlette and uvicorn) is not installed; the
    ``hostapp`` command exits 2 with the one-line message naming the extra.

    Attributes:
        module: the module that could not be imported (``"starlette"``).
    """

    def __init__(self, module: str) -> None:
        self.module = module
        super().__init__(
            f"hostapp serve needs the 'serve' extra (Starlette and uvicorn): "
            f"pip install 'hostapp[serve]' (missing module: {module})"
        )


def require_extra(*modules: str) -> None:
    """Import ``modules`` (default: ``starlette`` and ``uvicorn``) or raise.

    Raises:
        MissingExtraError: one of them cannot be imported (names it and the extra).
    """
    import importlib

    for module in modules or ("starlette", "uvicorn"):
        try:
            importlib.import_module(module)
        except ImportError:
            raise MissingExtraError(module) from None
