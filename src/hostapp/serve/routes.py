"""The plugins' routes, checked against each other and against hostapp's own paths.

No Starlette here: ``hostapp routes`` lists and checks the routes without the extra.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, Literal

from hostapp.errors import DuplicateNameError

if TYPE_CHECKING:
    from hostapp.manager import PluginManager
    from hostapp.types import Contribution, Route

__all__ = ["RESERVED", "check_routes", "collect_routes", "route_rows"]

#: hostapp's own path prefixes, with what lives there; a plugin route may not claim them
#: (nor ``/`` itself, the web view's runs page).
RESERVED: dict[str, str] = {
    "/api": "the management API",
    "/-": "hostapp's health and the web view's assets",
    "/runs": "the web view",
    "/plugins": "the web view",
}

_PARAM = re.compile(r"\{[^}]*\}")


def _shape(path: str) -> str:
    """The path with every ``{param}`` / ``{param:conv}`` written ``{}``: two paths with
    the same shape answer the same requests."""
    return _PARAM.sub("{}", path)


def _under(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix.rstrip("/") + "/")


def _reserved(path: str) -> str | None:
    if path == "/":
        return "'/' (the web view)"
    for prefix, what in RESERVED.items():
        if _under(path, prefix):
            return f"{prefix!r} ({what})"
    return None


def check_routes(
    contributions: Sequence[Contribution[Route]],
    *,
    on_conflict: Literal["raise", "report"] = "raise",
) -> tuple[list[Contribution[Route]], list[str]]:
    """Check the collected routes: one plugin per path, nothing under another plugin's
    mount, nothing under hostapp's own paths (:data:`RESERVED`).

    Two plugins' routes with the same *name* are already refused by
    ``PluginManager.collect`` (a route's name defaults to its path). Here, paths are
    compared by shape (``/items/{id}`` and ``/items/{item_id}`` are the same path); one
    plugin may declare one path several times (``GET`` and ``POST`` as two routes).

    Args:
        contributions: ``pm.collect("hostapp_routes")``, in plugin order.
        on_conflict: ``"raise"`` the first conflict, or ``"report"`` every one and keep
            the routes that do not conflict (the first claimant of a path keeps it).

    Returns:
        ``(routes, problems)``: the routes to mount, in order, and one line per refused
        route (empty with ``"raise"``).

    Raises:
        DuplicateNameError: with ``on_conflict="raise"``, a conflict; the message names
            the path and both plugins (or hostapp's own path).
    """
    kept: list[Contribution[Route]] = []
    problems: list[str] = []
    owners: dict[str, Contribution[Route]] = {}
    mounts: list[Contribution[Route]] = []

    def refuse(message: str) -> None:
        if on_conflict == "raise":
            raise DuplicateNameError(message)
        problems.append(message)

    for contribution in contributions:
        route = contribution.spec
        where = _reserved(route.path)
        if where is not None:
            refuse(
                f"route {route.path!r} of {contribution.describe()} is under hostapp's own path "
                f"{where}; choose another path"
            )
            continue
        shape = _shape(route.path)
        first = owners.get(shape)
        if first is not None and (first.plugin != contribution.plugin or "mount" in (first.spec.kind, route.kind)):
            refuse(
                f"path {route.path!r} is claimed by {first.describe()} (route {first.spec.name!r}) and by "
                f"{contribution.describe()} (route {route.name!r}); disable one of them "
                "(plugins.disable) or move one"
            )
            continue
        mount = next(
            (m for m in mounts if m.plugin != contribution.plugin and _under(shape, _shape(m.spec.path))), None
        )
        if mount is None and route.kind == "mount":
            mount = next(
                (c for c in kept if c.plugin != contribution.plugin and _under(_shape(c.spec.path), shape)), None
            )
        if mount is not None:
            refuse(
                f"path {route.path!r} of {contribution.describe()} overlaps the app {mount.describe()} mounts "
                f"at {mount.spec.path!r}; disable one of them (plugins.disable) or move one"
            )
            continue
        owners.setdefault(shape, contribution)
        if route.kind == "mount":
            mounts.append(contribution)
        kept.append(contribution)
    return kept, problems


def collect_routes(
    pm: PluginManager, *, on_conflict: Literal["raise", "report"] = "raise"
) -> tuple[list[Contribution[Route]], list[str]]:
    """``pm.collect("hostapp_routes")`` then :func:`check_routes`, with one conflict policy.

    With ``"report"``, two routes of one name are reported as a hook error of the later
    plugin (``hostapp plugins`` shows it) and listed in the problems as well.

    Raises:
        DuplicateNameError: with ``on_conflict="raise"``, the first conflict of any kind.
    """
    named: list[str] = []

    def listen(record: Any) -> None:
        if record.hook == "hostapp_routes" and "DuplicateNameError" in record.error:
            named.append(record.error.removeprefix("DuplicateNameError: "))

    pm.error_listeners.append(listen)
    try:
        found = pm.collect("hostapp_routes", on_conflict=on_conflict)
    finally:
        pm.error_listeners.remove(listen)
    kept, problems = check_routes(found, on_conflict=on_conflict)
    return kept, [*named, *problems]


def _qualname(endpoint: Any) -> str:
    target = endpoint if callable(endpoint) and hasattr(endpoint, "__qualname__") else type(endpoint)
    module = getattr(target, "__module__", None)
    name = getattr(target, "__qualname__", repr(target))
    return f"{module}:{name}" if module else name


def route_rows(contributions: Sequence[Contribution[Route]]) -> list[dict[str, Any]]:
    """One JSON-ready row per route (``hostapp routes --json``, ``GET /api/routes``):
    ``path``, ``kind`` (``"route"`` or ``"mount"``), ``methods`` (``[]`` for a mount),
    ``name``, ``endpoint`` (``"module:qualname"``), ``description``, ``plugin``,
    ``distribution``, ``version``."""
    rows = []
    for contribution in contributions:
        route = contribution.spec
        rows.append({
            "path": route.path,
            "kind": route.kind,
            "methods": [] if route.kind == "mount" else list(route.methods),
            "name": route.name,
            "endpoint": _qualname(route.endpoint),
            "description": route.description,
            "plugin": contribution.plugin,
            "distribution": contribution.distribution,
            "version": contribution.version,
        })
    return rows
