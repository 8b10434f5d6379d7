"""The per-call cost of probes, in-process: ``python _child.py N REPEATS DIR``.

A generated module ``DIR/probe_bench_target.py`` holds::

    class Shop:
        def add(self, x):
            return x

and the timed loop is ``for i in range(N): shop.add(i & 1023)`` (the method looked up on
every call: Diagnose patches the class attribute, and misses a bound method taken
before it started).
Time is the process's CPU (``time.process_time_ns()``: every thread, so work a probe
moves off the calling thread still counts). Every repeat measures each mode right after
a plain loop, and the figure is (mode - plain) / N, the ns a probe adds per call; the
caller takes the median over repeats. Modes:

``plain2``            a second plain loop: the noise floor of a difference
``hostapp_incr``      ``Instrument("incr", event="call")``: a counter, +1 per call
``hostapp_hist``      ``Instrument("hist", value="x", event="call")``: a histogram of the argument
``hostapp_stopped``   the same probes after ``probe.stop()``
``hostapp_expired``   a probe whose lifespan ended (it fired once after, and detached itself)
``diagnose_incr``     Diagnose 5.0.1: an ``IncrementInstrument`` with ``emit`` adding to a
                      counter (the real ``fire`` path: evaluate, merge_tags, sorted tags), value ``"x"``
``diagnose_hist``     the same with a ``HistogramInstrument`` whose ``emit`` appends to a list
``diagnose_stopped``  after ``probe.stop()``
``diagnose_expired``  an instrument past its ``expires`` (Diagnose keeps its wrapper installed)

Each probed mode checks it fired N times (or 0 for stopped/expired). Prints one JSON object.
"""

from __future__ import annotations

import datetime as dt
import importlib
import json
import sys
import time
from pathlib import Path

TARGET = "class Shop:\n    def add(self, x):\n        return x\n"


def main() -> None:
    n, repeats, directory = int(sys.argv[1]), int(sys.argv[2]), Path(sys.argv[3])
    directory.mkdir(parents=True, exist_ok=True)
    (directory / "probe_bench_target.py").write_text(TARGET, encoding="utf-8")
    sys.path.insert(0, str(directory))
    mod = importlib.import_module("probe_bench_target")
    shop = mod.Shop()

    def loop() -> int:
        t = time.process_time_ns()
        for i in range(n):
            shop.add(i & 1023)
        return time.process_time_ns() - t

    from hostapp.probes import Instrument, attach_to, default_registry

    registry = default_registry()
    import diagnose  # noqa: F401
    from diagnose import instruments as di
    from diagnose import probes as dp

    class Incr(di.IncrementInstrument):
        total = 0

        def emit(self, name: str, value: int, tags: list[str]) -> None:
            Incr.total += 1

    class Hist(di.HistogramInstrument):
        values: list[int] = []

        def emit(self, name: str, value: int, tags: list[str]) -> None:
            Hist.values.append(value)

    checks: dict[str, int] = {}

    def hostapp_mode(kind: str, value: str | None, after: str | None = None):
        def measure() -> int:
            probe = attach_to("probe_bench_target.Shop.add")
            expires = None
            if after == "expired":
                expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=1)
            probe.instruments["m"] = Instrument(kind, value=value, event="call", expires=expires)
            probe.start()
            att = probe.attachments["m"]
            impl = att.impl
            if after == "expired":
                time.sleep(0.01)
                shop.add(0)  # past the deadline: detaches at the hook
            if after == "stopped":
                probe.stop()
            elapsed = loop()
            checks[f"hostapp_{kind}_{after}"] = att.fires
            if kind == "hist" and after is None:
                snap = impl.snapshot()
                assert snap["count"] == att.fires and snap["max"] == min(n, 1024) - 1, snap
            probe.stop()
            del probe.instruments["m"]
            assert registry.instrumented == 0
            return elapsed
        return measure

    def diagnose_mode(cls, after: str | None = None):
        def measure() -> int:
            probe = dp.attach_to("probe_bench_target.Shop.add")
            expires = None
            if after == "expired":
                expires = dt.datetime.utcnow() - dt.timedelta(seconds=1)
            probe.instruments["m"] = cls("m", "x", "call", expires=expires)
            probe.start()
            if after == "stopped":
                probe.stop()
            before = Incr.total + len(Hist.values)
            elapsed = loop()
            checks[f"diagnose_{cls.__name__}_{after}"] = Incr.total + len(Hist.values) - before
            Hist.values.clear()
            probe.stop()
            probe.instruments.pop("m", None)
            dp.active_probes.pop("probe_bench_target.Shop.add", None)
            return elapsed
        return measure

    modes = {
        "plain2": loop,
        "hostapp_incr": hostapp_mode("incr", None),
        "hostapp_hist": hostapp_mode("hist", "x"),
        "hostapp_stopped": hostapp_mode("incr", None, "stopped"),
        "hostapp_expired": hostapp_mode("incr", None, "expired"),
        "diagnose_incr": diagnose_mode(Incr),
        "diagnose_hist": diagnose_mode(Hist),
        "diagnose_stopped": diagnose_mode(Incr, "stopped"),
        "diagnose_expired": diagnose_mode(Incr, "expired"),
    }
    import warnings

    warnings.simplefilter("ignore", DeprecationWarning)  # Diagnose's utcnow() on 3.12+
    for measure in modes.values():  # warm-up
        measure()
    plain: list[float] = []
    added: dict[str, list[float]] = {name: [] for name in modes}
    for _ in range(repeats):
        for name, measure in modes.items():
            base = loop()
            value = measure()
            plain.append(base / n)
            added[name].append((value - base) / n)
    print(json.dumps({
        "python": sys.version.split()[0], "backend": registry.backend, "n": n, "repeats": repeats,
        "plain_ns": plain, "added_ns": added, "fires": checks,
    }))


if __name__ == "__main__":
    main()
