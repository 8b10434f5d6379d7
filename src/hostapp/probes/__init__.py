"""``hostapp.probes``: runtime instrumentation of a running program (Diagnose's probes).

A *probe* attaches *instruments* (``log``, ``incr``, ``hist``, ``event``, or one a plugin
adds with ``hostapp_instrument_types()``) to a function named by a dotted path, while the
program runs, for a limited lifespan, without a code change or a restart. The function's
code object is instrumented (``sys.monitoring`` local events on 3.12+, a ``__code__``
trampoline on 3.11), so every reference to the function is covered; stopping a probe
removes the instrumentation. Errors inside instruments never reach the probed code.

In-process, Diagnose's API::

    from hostapp.probes import Instrument, attach_to

    probe = attach_to("shop.cart.Cart.add")
    probe.instruments["sizes"] = Instrument("hist", value="len(items)", event="call", lifespan=10)
    probe.start()
    ...
    probe.attachments["sizes"].snapshot()  # {"count": ..., "p50": ..., ...}
    probe.stop()

Across processes, probe *specs* in Diagnose's format live in a store (the SQLite store by
default, Redis for many machines) and every running host applies them
(:class:`~hostapp.probes.manager.ProbeManager`; ``hostapp probes add ...``). See
``docs/probes.md``.

Importing this package installs nothing; :mod:`hostapp` does not import it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from hostapp.errors import HostappError

if TYPE_CHECKING:
    from hostapp.probes._expr import UnsafeExpression
    from hostapp.probes._probe import EVENTS, Attachment, Instrument, Probe, ProbeRegistry, attach_to, default_registry
    from hostapp.probes._resolve import NotImported, TargetError
    from hostapp.probes.manager import ProbeManager, ProbeSpec

__all__ = [
    "EVENTS",
    "Attachment",
    "Instrument",
    "NotImported",
    "Probe",
    "ProbeManager",
    "ProbeRegistry",
    "ProbeSpec",
    "ProbeSpecError",
    "TargetError",
    "UnsafeExpression",
    "attach_to",
    "default_registry",
]


class ProbeSpecError(HostappError, ValueError):
    """A probe spec or instrument that cannot be applied: a malformed field, an unknown
    instrument type, an expression outside the safe subset (the message names the spec,
    the field, the expression and the offending node)."""


_LAZY = {
    "EVENTS": "hostapp.probes._probe",
    "Attachment": "hostapp.probes._probe",
    "Instrument": "hostapp.probes._probe",
    "Probe": "hostapp.probes._probe",
    "ProbeRegistry": "hostapp.probes._probe",
    "attach_to": "hostapp.probes._probe",
    "default_registry": "hostapp.probes._probe",
    "UnsafeExpression": "hostapp.probes._expr",
    "NotImported": "hostapp.probes._resolve",
    "TargetError": "hostapp.probes._resolve",
    "ProbeManager": "hostapp.probes.manager",
    "ProbeSpec": "hostapp.probes.manager",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostapp.probes' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
