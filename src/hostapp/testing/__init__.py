"""hostapp's pytest plugin, for testing hostapp plugins (entry point ``pytest11``).

Installed with hostapp, so a plugin author gets these fixtures with no configuration:

``hostapp_pm``
    an isolated :class:`hostapp.PluginManager` with hostapp's hookspecs and no plugins at
    all (no entry points, folders or config modules are read).
``hostapp_register``
    ``register(plugin, name=None, *, priority=0) -> PluginInfo``: registers a module,
    class, instance or ``@hookimpl`` function with ``hostapp_pm`` under a name for this
    test, checks ``check_pending()``, and unregisters it after the test.
``hostapp_site``
    a temporary directory on ``sys.path`` (and ``PYTHONPATH`` for subprocesses) that
    distributions can be installed into.
``hostapp_dist``
    ``install(name, version="1.0", entry_points={...}, files={...}) -> Path``: writes a
    real installed distribution (a ``.dist-info`` with ``entry_points.txt``, and its
    modules) into ``hostapp_site``, so the plugin is found exactly as production finds it.
``hostapp_breakpoint``
    ``breakpoint(target, name=None, **options) -> Breakpoint``: a started
    :class:`Breakpoint` (Diagnose's, on hostapp's probes: ``wait``, ``release``,
    ``start_thread``, ``stackframe``, ``await async_wait()``); every one is released and
    removed at teardown, so a failing test never hangs on a held thread.

``Breakpoint`` itself is importable from here (``from hostapp.testing import Breakpoint``).

Example::

    def test_my_sink_is_found(hostapp_dist):
        hostapp_dist(
            "acme-hostapp",
            entry_points={"hostapp": {"acme": "acme_plugin"}},
            files={"acme_plugin.py": PLUGIN_SOURCE},
        )
        pm = hostapp.PluginManager()
        pm.load(options=DiscoveryOptions(use_cache=False))
        assert pm.infos["acme"].state == "registered"
"""

from __future__ import annotations

import importlib
import os
import sys
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

if TYPE_CHECKING:
    from hostapp.lifecycle import PluginInfo
    from hostapp.manager import PluginManager

__all__ = ["Breakpoint", "hostapp_breakpoint", "hostapp_dist", "hostapp_pm", "hostapp_register", "hostapp_site"]


def __getattr__(name: str) -> Any:
    if name == "Breakpoint":  # imported on first use: the probes are not loaded with pytest
        from hostapp.probes.breakpoints import Breakpoint

        return Breakpoint
    raise AttributeError(f"module 'hostapp.testing' has no attribute {name!r}")


@pytest.fixture
def hostapp_pm() -> PluginManager:
    """A fresh :class:`hostapp.PluginManager` with hostapp's hookspecs and no plugins."""
    from hostapp.manager import PluginManager

    return PluginManager()


@pytest.fixture
def hostapp_register(hostapp_pm: PluginManager) -> Iterator[Callable[..., PluginInfo]]:
    """``register(plugin, name=None, *, priority=0) -> PluginInfo`` on ``hostapp_pm``.

    The plugin goes through the same path as a discovered one (a class is instantiated,
    a ``@hookimpl`` function becomes a one-hook plugin) and is unregistered after the test.

    Raises:
        hostapp.PluginLoadError: the plugin could not be registered (pluggy's validation
            error is in the message).
        pluggy.PluginValidationError: an implementation matches no hookspec
            (``check_pending``).
    """
    from hostapp.errors import PluginLoadError
    from hostapp.lifecycle import PluginInfo, PluginState, Source
    from hostapp.manager import _as_plugin

    registered: list[str] = []

    def register(plugin: object, name: str | None = None, *, priority: int = 0) -> PluginInfo:
        obj = _as_plugin(plugin)
        info = PluginInfo(
            name=name or hostapp_pm.get_canonical_name(obj),
            source=Source.EXPLICIT,
            priority=priority,
            obj=obj,
            state=PluginState.IMPORTED,
        )
        if not hostapp_pm.register_plugin(info):
            raise PluginLoadError(info, f"plugin {info.name!r} could not be registered: {info.error}")
        registered.append(info.name)
        hostapp_pm.check_pending()
        return info

    yield register
    for name in reversed(registered):
        if hostapp_pm.has_plugin(name):
            hostapp_pm.unregister(name=name)


@pytest.fixture
def hostapp_site(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A temporary site directory on ``sys.path`` and ``PYTHONPATH``, removed after the test.

    Modules imported from it during the test are removed from ``sys.modules`` afterwards.
    """
    site = tmp_path_factory.mktemp("site-packages")
    monkeypatch.syspath_prepend(str(site))
    old = os.environ.get("PYTHONPATH")
    monkeypatch.setenv("PYTHONPATH", str(site) + (os.pathsep + old if old else ""))
    importlib.invalidate_caches()
    before = set(sys.modules)
    yield site
    for name in set(sys.modules) - before:
        module = sys.modules.get(name)
        if str(getattr(module, "__file__", "") or "").startswith(str(site)):
            del sys.modules[name]
    importlib.invalidate_caches()


@pytest.fixture
def hostapp_dist(hostapp_site: Path) -> Callable[..., Path]:
    """``install(name, version="1.0", entry_points=None, files=None) -> Path``.

    Writes a real installed distribution into ``hostapp_site``: ``entry_points`` maps a
    group to ``{entry point name: "module:attr"}``; ``files`` maps a relative path to
    source text. Returns the ``.dist-info`` directory.
    """
    from hostapp.testing._distfactory import install_distribution

    def install(
        name: str,
        version: str = "1.0",
        entry_points: Mapping[str, Mapping[str, str]] | None = None,
        files: Mapping[str, str] | None = None,
    ) -> Path:
        path = install_distribution(
            hostapp_site, name, version, entry_points=entry_points or {}, files=files or {}
        )
        importlib.invalidate_caches()
        return path

    return install


@pytest.fixture
def hostapp_breakpoint() -> Iterator[Callable[..., Any]]:
    """``breakpoint(target, name=None, **options) -> Breakpoint``, started.

    Options are :class:`hostapp.probes.breakpoints.Breakpoint`'s (``event``,
    ``condition``, ``block``, ``timeout``). At teardown every breakpoint made is
    released and removed, and the threads its ``start_thread`` started are given 5 s to
    end.
    """
    from hostapp.probes.breakpoints import Breakpoint

    made: list[Any] = []

    def make(target: Any, name: str | None = None, **options: Any) -> Any:
        bp = Breakpoint(target, name, **options)
        made.append(bp)
        return bp.start()

    yield make
    for bp in reversed(made):
        bp.stop()
    for bp in made:
        for thread in bp.threads:
            thread.join(5.0)


def pytest_configure(config: Any) -> None:
    """Register hostapp's markers."""
    config.addinivalue_line("markers", "hostapp: a test of a hostapp plugin")
