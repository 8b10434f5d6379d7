"""hostapp's pytest plugin (entry point ``pytest11``): the fixtures of :mod:`hostapp.testing`.

PYTEST_DONT_REWRITE

A top-level package of its own, so that pytest, which marks the package owning each
``pytest11`` entry point for assertion rewriting, marks this one and not ``hostapp``:
under ``hostapp run -m pytest`` the ``hostapp`` package is imported before pytest starts,
and marking an imported package makes pytest warn
``PytestAssertRewriteWarning: Module already imported so cannot be rewritten`` (an error
in a project with ``filterwarnings = error``). Nothing under ``hostapp run`` imports this
package. Its docstring holds pytest's ``PYTEST_DONT_REWRITE``, as do those of ``hostapp``
and ``hostapp_plugins`` (a wheel install lists every top-level package of the
distribution, and pytest marks them all).

Plugin authors never import it: the fixtures and helpers are in :mod:`hostapp.testing`.
"""

from __future__ import annotations

from hostapp.testing import (
    hostapp_breakpoint,
    hostapp_dist,
    hostapp_events,
    hostapp_host,
    hostapp_pm,
    hostapp_register,
    hostapp_site,
    hostapp_trace,
    pytest_configure,
)

__all__ = [
    "hostapp_breakpoint", "hostapp_dist", "hostapp_events", "hostapp_host", "hostapp_pm", "hostapp_register", "hostapp_site",
    "hostapp_trace", "pytest_configure",
]
