"""Events and the event bus: one worker and one bounded queue per sink, nothing lost silently.

The package is three modules, each importable on its own:

:mod:`hostapp.events.record`
    the record every emitter, sink and the store share: :class:`Event` (and its ids,
    :func:`new_id`), :class:`DeadLetter`, :class:`SinkError`, and the exceptions a sink
    raises to steer retries, :class:`RetryAfter` and :class:`PermanentError`. A leaf
    module: the store imports only this one.
:mod:`hostapp.events.worker`
    one sink's worker thread: its bounded queue, batching by size and time, retries with
    backoff and jitter, spill to the store, dead letters; :class:`SinkConfig`, what a
    sink's ``open`` receives.
:mod:`hostapp.events.bus`
    :class:`EventBus`, which routes every event to the sinks that accept its type, and
    :func:`redeliver` (``hostapp events redeliver``).

Every public name is re-exported here (``from hostapp.events import Event, EventBus``),
imported on first use, so that importing the record does not import the bus.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from hostapp.events.bus import EventBus, redeliver
    from hostapp.events.record import (
        FIELDS,
        DeadLetter,
        Event,
        PermanentError,
        RetryAfter,
        SinkError,
        id_timestamp_ns,
        new_id,
        process_alive,
    )
    from hostapp.events.worker import BUS_KEYS, SinkConfig

__all__ = [
    "BUS_KEYS",
    "FIELDS",
    "DeadLetter",
    "Event",
    "EventBus",
    "PermanentError",
    "RetryAfter",
    "SinkConfig",
    "SinkError",
    "id_timestamp_ns",
    "new_id",
    "process_alive",
    "redeliver",
]

#: Public name -> the module of this package that defines it.
_LAZY = {
    "EventBus": "bus",
    "redeliver": "bus",
    "BUS_KEYS": "worker",
    "SinkConfig": "worker",
    **dict.fromkeys(
        ("FIELDS", "DeadLetter", "Event", "PermanentError", "RetryAfter", "SinkError",
         "id_timestamp_ns", "new_id", "process_alive"),
        "record",
    ),
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'hostapp.events' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"hostapp.events.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
