"""The ``event`` instrument: a ``probe`` event per fire, to the sinks (the store,
``hostapp events --type probe``).

The probed thread only appends a small record to a bounded buffer (the probe manager's
:class:`~hostapp.probes._export.EventExporter`, ``probes.event_buffer`` records) and
returns; the exporter's thread builds the events and hands them to the event bus. When
the buffer is full (a sink that refuses, hangs or is slow, and the bus's own queue full
too) the record is dropped and counted - the probed thread never waits.

Event: ``type = "probe"``, ``subtype`` = the instrument's name, ``data`` = ``probe``
(the spec id), ``target``, ``instrument``, ``event`` (``call``/``return``/``end``),
``value`` (JSON-able as it was at the fire: numbers, strings, and lists/dicts of them,
others as ``repr()`` cut at 1,000 characters) and ``elapsed_ns`` on return/end.
``value`` defaults to ``None``.
"""

from __future__ import annotations

from typing import Any

import hostapp

__all__ = ["EventInstrument", "hostapp_instrument_types"]


class EventInstrument:
    """Hands each fire to the exporter (see the module docstring).

    Args:
        spec: the probe spec.
        host: the running host (its probe manager's exporter is used).

    Raises:
        HostappError: no host is running (events need the event bus).
    """

    default_value = "None"
    wants_elapsed = True

    def __init__(self, spec: dict[str, Any], host: Any) -> None:
        from hostapp.errors import HostappError
        from hostapp.probes._export import exporter_for

        if host is None:
            try:
                host = hostapp.get_host()
            except HostappError:
                raise HostappError("the 'event' instrument needs a running hostapp Host (its event bus)") from None
        inst = spec.get("instrument") or {}
        self._exporter = exporter_for(host)
        self._meta = (str(spec.get("id")), str(spec.get("target")), inst.get("name"), inst.get("event", "return"))
        self._put = self._exporter.put
        self.fires = 0

    def __call__(self, value: Any, elapsed_ns: int = 0) -> None:
        self._put(self._meta, value, elapsed_ns)

    def snapshot(self) -> dict[str, Any]:
        """``{"kind": "events", "exported", "dropped"}`` of this process's exporter."""
        return {"kind": "events", **self._exporter.counts()}


@hostapp.hookimpl
def hostapp_instrument_types() -> hostapp.InstrumentType:
    """The ``event`` instrument type (``instruments.event``)."""
    return hostapp.InstrumentType(
        name="event", factory=EventInstrument, description="a 'probe' event per fire, to the sinks and the store",
    )
