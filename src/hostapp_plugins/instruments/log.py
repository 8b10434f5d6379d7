"""The ``log`` instrument: a line on a stdlib :mod:`logging` logger per fire, rate-limited.

At most ``custom.rate`` lines a second per probe (default 1, as ddtrace's log probes);
the fires in between are counted, and the next line says how many were suppressed. The
line is ``probe NAME = VALUE`` (the value's ``str()``, cut at 2,000 characters as
Diagnose's ``LogInstrument`` does) on the logger ``custom.logger`` (default
``"probes"``: the program's own logging configuration decides where it goes) at
``custom.level`` (default ``"INFO"``). ``hostapp probes show ID`` prints the counts and
the last line.

``value`` defaults to ``result`` (return/end); a ``call`` event needs a value.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import hostapp

__all__ = ["Log", "hostapp_instrument_types"]

MAX_CHARS = 2000


class Log:
    """Writes ``probe NAME = VALUE`` lines (see the module docstring).

    Args:
        spec: the probe spec; ``custom`` may hold ``logger`` (a name), ``level`` (a
            level name or number) and ``rate`` (lines per second, > 0).
        host: unused.

    Raises:
        ValueError: a bad ``level`` or ``rate``.
    """

    default_value = "result"

    def __init__(self, spec: dict[str, Any], host: Any) -> None:
        inst = spec.get("instrument") or {}
        custom = inst.get("custom") or {}
        level = custom.get("level", "INFO")
        number = logging.getLevelName(level.upper()) if isinstance(level, str) else level
        if isinstance(number, bool) or not isinstance(number, int):
            raise ValueError(f"log: custom.level must be a logging level name or number, got {level!r}")
        rate = custom.get("rate", 1.0)
        if isinstance(rate, bool) or not isinstance(rate, (int, float)) or rate <= 0:
            raise ValueError(f"log: custom.rate must be lines per second > 0, got {rate!r}")
        self.name = inst.get("name") or spec.get("target")
        self.logger = logging.getLogger(str(custom.get("logger", "probes")))
        self.level = number
        self.interval = 1.0 / float(rate)
        self._next = 0.0
        self.lines = 0
        self.suppressed = 0
        self._pending = 0
        self.last: str | None = None

    def __call__(self, value: Any) -> None:
        now = time.monotonic()
        if now < self._next:
            self.suppressed += 1
            self._pending += 1
            return
        self._next = now + self.interval
        text = str(value)
        if len(text) > MAX_CHARS:
            text = text[: MAX_CHARS - 3] + "..."
        pending, self._pending = self._pending, 0
        line = f"probe {self.name} = {text}" + (f" ({pending} suppressed)" if pending else "")
        self.last = line
        self.lines += 1
        self.logger.log(self.level, "%s", line)

    def snapshot(self) -> dict[str, Any]:
        """``{"kind": "log", "lines", "suppressed", "last", "logger"}``."""
        return {"kind": "log", "lines": self.lines, "suppressed": self.suppressed, "last": self.last,
                "logger": self.logger.name}


@hostapp.hookimpl
def hostapp_instrument_types() -> hostapp.InstrumentType:
    """The ``log`` instrument type (``instruments.log``)."""
    return hostapp.InstrumentType(
        name="log", factory=Log, description="a log line per fire on a stdlib logger, at most 1 a second per probe",
    )
