"""The ``incr`` instrument: a counter (Diagnose's ``IncrementInstrument``, kept in-process).

Every fire adds ``value`` (default ``1``) to the counter; the value must be a number (a
``bool`` counts as 0/1). ``hostapp probes show ID`` prints the total per process, read
while the process runs and kept in the store when it ends.
"""

from __future__ import annotations

from typing import Any

import hostapp

__all__ = ["Counter", "hostapp_instrument_types"]


class Counter:
    """A counter: ``counter(value)`` adds ``value`` (int or float).

    Args:
        spec: the probe spec (Diagnose's format; unused).
        host: the running host, or ``None`` (unused).

    Raises (per fire, counted against the probe by the runtime):
        TypeError: ``value`` is not a number.
    """

    #: the value when the spec has none: one per fire
    default_value = "1"
    #: never runs the program's code (no re-entry guard needed on 3.11)
    pure = True

    def __init__(self, spec: dict[str, Any], host: Any) -> None:
        self.total: int | float = 0

    def __call__(self, value: Any) -> None:
        self.total += value

    def snapshot(self) -> dict[str, Any]:
        """``{"kind": "counter", "total": N}``."""
        return {"kind": "counter", "total": self.total}


@hostapp.hookimpl
def hostapp_instrument_types() -> hostapp.InstrumentType:
    """The ``incr`` instrument type (``instruments.incr``)."""
    return hostapp.InstrumentType(name="incr", factory=Counter, description="a counter: adds value (default 1) per fire")
