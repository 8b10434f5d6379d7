"""hostapp.probes in-process: attach_to, instruments, expressions, errors, the manager.

Each test writes a real package into a temporary site directory and imports it, then
probes it on this interpreter's backend (sys.monitoring on 3.12+, the trampoline on 3.11).
"""

from __future__ import annotations

import asyncio
import importlib
import logging
import sys
import textwrap
import threading

import pytest

from hostapp.probes import Instrument, ProbeSpecError, attach_to, default_registry
from hostapp.probes import _expr
from hostapp.probes.manager import ProbeManager, ProbeSpec

SHOP = {
    "shop/__init__.py": "",
    "shop/cart.py": '''
        import functools

        def helper(n):
            return n * 2

        def deco(f):
            @functools.wraps(f)
            def wrapper(*args, **kwargs):
                return f(*args, **kwargs)
            return wrapper

        REGISTRY = {}

        class Cart:
            def __init__(self):
                self.items = []

            def add(self, item, qty=1):
                self.items.extend([item] * qty)
                return len(self.items)

            @staticmethod
            def tax(amount):
                return amount * 0.2

            @classmethod
            def empty(cls):
                return cls()

            @property
            def size(self):
                return len(self.items)

        @deco
        def checkout(cart, *, coupon=None):
            return cart.size

        REGISTRY["helper"] = helper

        def numbers(n):
            for i in range(n):
                yield i
            return n

        async def fetch(n):
            await asyncio_sleep()
            await asyncio_sleep()
            return n

        async def asyncio_sleep():
            import asyncio
            await asyncio.sleep(0)

        def boom(x):
            raise ValueError(f"boom {x}")

        async def stream(n):
            for i in range(n):
                yield i
    ''',
    "shop/other.py": '''
        from shop.cart import helper as h

        def use(n):
            return h(n)
    ''',
}


def write(root, files):
    for relative, text in files.items():
        path = root / relative
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(text), encoding="utf-8")


@pytest.fixture
def shop(tmp_path, monkeypatch):
    write(tmp_path, SHOP)
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
        del sys.modules[name]
    import shop.cart
    import shop.other

    yield shop
    default_registry().stop_all()
    for name in [n for n in sys.modules if n == "shop" or n.startswith("shop.")]:
        del sys.modules[name]


def instrumentation(function):
    """What is installed on ``function`` now: its local events (3.12+) or whether its
    ``__code__`` is a trampoline (3.11)."""
    registry = default_registry()
    if sys.version_info >= (3, 12):
        tool = registry._hooks.tool_id if registry._hooks is not None else None
        if tool is None:
            return 0
        return sys.monitoring.get_local_events(tool, function.__code__)
    from hostapp.tracing._trampoline import TRAMPOLINES

    return int(function.__code__ in TRAMPOLINES)


def test_every_reference_to_a_method_and_a_helper_is_counted(shop):
    cart = shop.cart.Cart()
    bound = cart.add  # taken before the probe starts
    registry = shop.cart.REGISTRY["helper"]
    method = attach_to("shop.cart.Cart.add")
    method.instruments["adds"] = Instrument("incr", event="call")
    method.start()
    helper = attach_to("shop.cart.helper")
    helper.instruments["calls"] = Instrument("incr", event="return")
    helper.start()

    bound("apple")
    cart.add("pear", qty=2)
    shop.cart.Cart.add(cart, "fig")
    assert method.attachments["adds"].snapshot() == {"kind": "counter", "total": 3}

    shop.cart.helper(1)
    shop.other.h(2)  # from shop.cart import helper as h
    shop.other.use(3)
    registry(4)  # stored in a dict
    assert helper.attachments["calls"].snapshot()["total"] == 4
    assert bound("x") == 5  # results are the function's own


def test_static_class_property_and_wrapped_targets(shop):
    probes = {}
    for target in ("shop.cart.Cart.tax", "shop.cart.Cart.empty", "shop.cart.Cart.size", "shop.cart.checkout"):
        probe = attach_to(target)
        probe.instruments["n"] = Instrument("incr", event="end")
        probes[target] = probe.start()
        assert probe.error is None and not probe.errors, (target, probe.error, probe.errors)
    cart = shop.cart.Cart.empty()
    cart.add("a")
    assert shop.cart.Cart.tax(10) == 2.0
    assert cart.size == 1
    assert shop.cart.checkout(cart, coupon="x") == 1  # reads cart.size once more
    inner = shop.cart.checkout.__wrapped__
    inner(cart)  # the decorated function called directly also counts (and reads cart.size)
    totals = {t: p.attachments["n"].snapshot()["total"] for t, p in probes.items()}
    assert totals == {
        "shop.cart.Cart.tax": 1, "shop.cart.Cart.empty": 1, "shop.cart.Cart.size": 3, "shop.cart.checkout": 2,
    }
    assert probes["shop.cart.checkout"].resolved.wrapped == 1


def test_generators_and_coroutines_fire_once_per_call(shop):
    gen = attach_to("shop.cart.numbers")
    gen.instruments["calls"] = Instrument("incr", event="call")
    gen.instruments["ends"] = Instrument("hist", value="result", event="return")
    gen.start()
    coro = attach_to("shop.cart.fetch")
    coro.instruments["calls"] = Instrument("incr", event="call")
    coro.instruments["took"] = Instrument("hist", event="end")  # elapsed_ns, the default
    coro.start()

    assert list(shop.cart.numbers(5)) == [0, 1, 2, 3, 4]
    assert sum(shop.cart.numbers(3)) == 3
    assert asyncio.run(shop.cart.fetch(7)) == 7

    assert gen.attachments["calls"].snapshot()["total"] == 2
    ends = gen.attachments["ends"].snapshot()
    assert (ends["count"], ends["min"], ends["max"]) == (2, 3, 5)  # the generators' return values
    assert coro.attachments["calls"].snapshot()["total"] == 1
    took = coro.attachments["took"].snapshot()
    assert took["count"] == 1 and took["min"] > 0


def test_a_thread_already_running_is_covered(shop):
    stop = threading.Event()
    started = threading.Event()
    seen = []

    def spin():
        started.set()
        for i in range(2_000_000):
            seen.append(shop.cart.helper(i))
            if stop.is_set():
                return

    thread = threading.Thread(target=spin)
    thread.start()
    started.wait(10)
    probe = attach_to("shop.cart.helper")
    probe.instruments["n"] = Instrument("incr", event="call")
    probe.start()
    att = probe.attachments["n"]
    for _ in range(10_000):
        if att.fires >= 100:
            break
        threading.Event().wait(0.001)
    stop.set()
    thread.join(10)
    assert att.snapshot()["total"] >= 100


def test_stop_and_expiry_remove_the_instrumentation(shop):
    helper = shop.cart.helper
    original = helper.__code__
    probe = attach_to("shop.cart.helper")
    probe.instruments["n"] = Instrument("incr", event="call")
    probe.start()
    assert instrumentation(helper)
    probe.stop()
    assert not instrumentation(helper)
    assert helper.__code__ is original
    assert default_registry().instrumented == 0
    if sys.version_info >= (3, 12):
        assert default_registry()._hooks.tool_id is None  # the tool id was given back

    import datetime as dt

    expiring = attach_to("shop.cart.helper")
    expiring.instruments["n"] = Instrument(
        "incr", event="call", expires=dt.datetime.now(dt.timezone.utc) + dt.timedelta(milliseconds=300),
    )
    expiring.start()
    att = expiring.attachments["n"]
    helper(1)
    assert att.fires == 1
    done = threading.Event()
    done.wait(0.35)
    helper(2)  # past the deadline: does not fire, and detaches at the hook itself
    assert att.fires == 1
    assert att.state == "expired"
    assert not instrumentation(helper)
    assert helper.__code__ is original


def test_errors_never_reach_the_probed_code_and_switch_the_instrument_off(shop, caplog):
    probe = attach_to("shop.cart.helper")
    probe.instruments["div"] = Instrument("incr", value="n / 0", event="call")
    probe.instruments["type"] = Instrument("incr", value="str(n)", event="return")  # the counter raises
    probe.instruments["cond"] = Instrument("incr", condition="n.missing", event="call")
    probe.instruments["ok"] = Instrument("incr", event="call")
    probe.start()
    with caplog.at_level(logging.WARNING, logger="hostapp.probes"):
        results = [shop.cart.helper(i) for i in range(25)]
    assert results == [i * 2 for i in range(25)]
    for name, error in (("div", "ZeroDivisionError"), ("type", "TypeError"), ("cond", "AttributeError")):
        att = probe.attachments[name]
        assert att.state == "off", name
        assert att.errors == 10
        assert att.last_error.startswith(error)
        assert "switched off after 10 errors" in att.reason
        assert error in att.first_traceback
    assert probe.attachments["ok"].snapshot()["total"] == 25
    assert any("switched off after 10 errors" in r.getMessage() for r in caplog.records)
    assert shop.cart.boom.__name__ == "boom"

    boom = attach_to("shop.cart.boom")
    boom.instruments["raises"] = Instrument("incr", value="1", event="end", condition="exc is not None")
    boom.start()
    with pytest.raises(ValueError, match="boom 3") as excinfo:
        shop.cart.boom(3)
    frames = [tb.tb_frame.f_code.co_name for tb in _walk(excinfo.value.__traceback__)]
    assert frames[-1] == "boom" and "call" not in frames  # the traceback reads as without the probe
    assert boom.attachments["raises"].snapshot()["total"] == 1


def _walk(tb):
    while tb is not None:
        yield tb
        tb = tb.tb_next


@pytest.mark.parametrize(
    ("expression", "node"),
    [
        ("__import__('os').system('x')", "name '__import__'"),
        ("self.__class__", "attribute '__class__'"),
        ("item.__dict__['x']", "attribute '__dict__'"),
        ("open('/etc/passwd')", "call of 'open'"),
        ("item.lower()", "call of method 'lower'"),
        ("[x for x in item]", "ListComp node"),
        ("(lambda: 1)()", "call"),
        ("(y := 1)", "NamedExpr node"),
        ("eval('1')", "call of 'eval'"),
        ("2 ** item", "power"),
        ("len(*item)", "Starred node"),
    ],
)
def test_unsafe_expressions_are_refused_naming_the_node(expression, node):
    with pytest.raises(_expr.UnsafeExpression) as excinfo:
        _expr.check(expression)
    assert excinfo.value.node == node
    assert repr(expression) in str(excinfo.value)


def test_safe_expressions_compile_once_and_read_arguments_result_and_namespace(shop):
    probe = attach_to("shop.cart.Cart.add")
    probe.instruments["v"] = Instrument(
        "hist", value="len(self.items) + qty * 10 + (1 if item in ('a', 'b') else 0) + round(math.sqrt(16))",
        event="return", condition="result >= 1 and not isinstance(item, int)",
    )
    probe.start()
    cart = shop.cart.Cart()
    cart.add("a", qty=2)  # len 2 + 20 + 1 + 4
    cart.add(5)  # condition false: an int
    snap = probe.attachments["v"].snapshot()
    assert (snap["count"], snap["min"]) == (1, 27)

    bad = attach_to("shop.cart.helper")
    bad.instruments["x"] = Instrument("incr", value="m + 1", event="call")
    bad.instruments["y"] = Instrument("incr", value="result", event="call")
    bad.start()
    assert "'m' is not an argument of shop.cart.helper(n)" in bad.errors["x"]
    assert "result exist at return/end only" in bad.errors["y"]
    assert not instrumentation(shop.cart.helper)  # nothing attached: nothing installed
    probe.stop()
    assert not default_registry()._hooks.sites  # no empty site left behind
    if sys.version_info >= (3, 12):
        assert "hostapp-probes" not in [sys.monitoring.get_tool(t) for t in (2, 3, 4)]  # the tool id is back


def test_a_target_in_a_module_imported_later_is_retried(tmp_path, monkeypatch):
    write(tmp_path, {"later_mod.py": "def work(x):\n    return x + 1\n\nVALUE = 2\n"})
    monkeypatch.syspath_prepend(str(tmp_path))
    importlib.invalidate_caches()
    sys.modules.pop("later_mod", None)
    probe = attach_to("later_mod.work")
    probe.instruments["n"] = Instrument("incr", value="x", event="call")
    probe.start()
    assert probe.pending and "not imported" in probe.error
    try:
        import later_mod

        assert later_mod.VALUE == 2
        assert probe.error is None  # attached right after the module's body ran
        later_mod.work(5)
        assert probe.attachments["n"].snapshot()["total"] == 5
    finally:
        default_registry().stop_all()
        sys.modules.pop("later_mod", None)


def test_builtins_and_classes_are_refused_clearly():
    probe = attach_to("math.sqrt")
    probe.instruments["n"] = Instrument("incr", event="call")
    probe.start()
    try:
        assert "is a builtin" in probe.error and "no Python code" in probe.error
    finally:
        default_registry().stop_all()


def test_hist_quantiles_are_within_the_relative_accuracy(shop):
    import random

    probe = attach_to("shop.cart.helper")
    probe.instruments["h"] = Instrument("hist", value="n", event="call", custom={"relative_accuracy": 0.01})
    probe.start()
    rng = random.Random(7)
    values = [rng.lognormvariate(10, 1.5) for _ in range(20_000)]
    for v in values:
        shop.cart.helper(v)
    snap = probe.attachments["h"].snapshot()
    values.sort()
    assert snap["count"] == 20_000 and snap["min"] == values[0] and snap["max"] == values[-1]
    assert snap["mean"] == pytest.approx(sum(values) / len(values))
    for key, q in (("p50", 0.5), ("p95", 0.95), ("p99", 0.99)):
        exact = values[int(q * (len(values) - 1))]
        assert abs(snap[key] - exact) <= 0.011 * exact, key


def test_log_is_rate_limited_per_probe_and_counts_the_rest(shop):
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("probes.test")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        probe = attach_to("shop.cart.helper")
        probe.instruments["log"] = Instrument(
            "log", name="helper", value="n", event="call", custom={"logger": "probes.test", "rate": 20},
        )
        probe.start()
        for i in range(100):
            shop.cart.helper(i)
        assert records == ["probe helper = 0"]
        threading.Event().wait(0.06)
        shop.cart.helper(100)
        assert records[1] == "probe helper = 100 (99 suppressed)"
        snap = probe.attachments["log"].snapshot()
        assert (snap["lines"], snap["suppressed"], snap["last"]) == (2, 99, records[1])
    finally:
        logger.removeHandler(handler)


def test_the_manager_applies_diagnose_specs_one_by_one(shop):
    import datetime as dt

    manager = ProbeManager(process_id="here")
    now = dt.datetime.now(dt.timezone.utc).replace(tzinfo=None)  # Diagnose's naive UTC datetimes are accepted
    manager.specs = {
        "good": {"target": "shop.cart.helper", "instrument": {"type": "incr", "name": "c", "value": "1",
                 "event": "call", "custom": {}}, "lifespan": 10, "lastmodified": now, "applied": {}},
        "badtype": {"target": "shop.cart.helper", "instrument": {"type": "nope", "name": "x", "value": "1",
                    "event": "call", "custom": {}}, "lifespan": 10, "lastmodified": now, "applied": {}},
        "unsafe": {"target": "shop.cart.helper", "instrument": {"type": "incr", "name": "x",
                   "value": "__import__('os')", "event": "call", "custom": {}}, "lifespan": 10,
                   "lastmodified": now, "applied": {}},
        "missing": {"target": "shop.cart.nothing", "instrument": {"type": "incr", "name": "x", "value": "1",
                    "event": "call", "custom": {}}, "lifespan": 10, "lastmodified": now, "applied": {}},
        "old": {"target": "shop.cart.helper", "instrument": {"type": "incr", "name": "x", "value": "1",
                "event": "call", "custom": {}}, "lifespan": 1, "lastmodified": now - dt.timedelta(minutes=5),
                "applied": {}},
    }
    records = manager.apply()
    shop.cart.helper(1)
    manager.tick()
    records = manager.records()
    assert records["good"]["state"] == "active" and records["good"]["fires"] == 1
    assert records["good"]["values"] == {"kind": "counter", "total": 1}
    assert "unknown instrument type 'nope'" in records["badtype"]["err"]
    assert "name '__import__'" in records["unsafe"]["err"]
    assert records["missing"]["state"] == "pending" and "has no attribute 'nothing'" in records["missing"]["err"]
    assert records["old"]["state"] == "expired"
    applied = manager.specs["good"]["applied"]["here"]
    assert (applied["host"], applied["lm"]) == (records["good"]["host"], records["good"]["lm"])

    # a change replaces the instrument; a deleted spec is removed
    manager.specs["good"]["instrument"]["value"] = "n"
    manager.specs["good"]["lastmodified"] = now + dt.timedelta(seconds=1)
    del manager.specs["badtype"]
    manager.apply()
    shop.cart.helper(5)
    manager.tick()
    assert manager.records()["good"]["values"]["total"] == 5
    assert "badtype" not in manager.records()
    manager.close()
    assert manager.records()["good"]["state"] == "ended"
    assert not instrumentation(shop.cart.helper)


def test_probe_spec_errors_name_the_spec_and_the_key():
    cases = [
        ({"instrument": {"type": "incr"}}, "probe spec 's': target: expected a dotted path"),
        ({"target": "m.f", "instrument": {"type": "incr", "event": "later"}}, "instrument.event: expected call, return or end"),
        ({"target": "m.f", "instrument": {"type": "incr", "colour": 1}}, "instrument: unknown key(s) ['colour']"),
        ({"target": "m.f", "instrument": {"type": "incr"}, "lifespan": -1}, "lifespan: expected minutes >= 0"),
        ({"target": "m.f", "instrument": {"type": "incr"}, "lastmodified": "yesterday"}, "lastmodified: expected a datetime"),
    ]
    for raw, message in cases:
        with pytest.raises(ProbeSpecError) as excinfo:
            ProbeSpec.from_dict(raw, "s")
        assert message in str(excinfo.value)


def test_importing_hostapp_does_not_import_the_probes():
    import subprocess

    code = "import hostapp, sys; print(any(m.startswith('hostapp.probes') for m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.strip() == "False", out.stderr


def test_probes_and_the_tracing_engine_share_a_function(shop):
    """A traced function can be probed too (3.12+: two tool ids; 3.11: nested trampolines)."""
    from hostapp.tracing import TracingEngine
    from hostapp.types import Contribution, TraceProcessor

    events = []
    processor = TraceProcessor(name="helper", co_names=("helper",), path_fragment="shop/cart.py",
                               call_type="helper_call", return_type="helper_return")
    engine = TracingEngine([Contribution(processor, "test")], events.append)
    engine.start()
    original = shop.cart.helper.__code__ if sys.version_info >= (3, 12) else engine._backend._installed
    try:
        probe = attach_to("shop.cart.helper")
        probe.instruments["n"] = Instrument("incr", value="n", event="return")
        probe.start()
        assert shop.cart.helper(3) == 6
        assert probe.attachments["n"].snapshot()["total"] == 3
        assert [e.type for e in events] == ["helper_call", "helper_return"]
        probe.stop()
        assert shop.cart.helper(4) == 8
        assert len(events) == 4  # tracing goes on without the probe
    finally:
        engine.stop()
    assert shop.cart.helper(5) == 10 and len(events) == 4
    if sys.version_info < (3, 12):
        assert not original  # every trampoline taken back
    from hostapp.tracing._trampoline import TRAMPOLINES

    assert shop.cart.helper.__code__ not in TRAMPOLINES


def test_allow_unsafe_is_warned_about_at_every_start(shop, caplog):
    with caplog.at_level(logging.WARNING, logger="hostapp.probes"):
        manager = ProbeManager(process_id="x", allow_unsafe=True)
        ProbeManager(process_id="y", allow_unsafe=True).close()
    warned = [r for r in caplog.records if "probes.allow_unsafe = true" in r.getMessage()]
    assert len(warned) == 2
    manager.specs = {"u": {"target": "shop.cart.helper", "instrument": {
        "type": "incr", "value": "n.__class__.__name__.__len__()", "event": "call"}, "lifespan": 1}}
    manager.apply()
    shop.cart.helper(1)
    manager.tick()
    assert manager.records()["u"]["values"]["total"] == 3  # len("int"): unchecked Python ran
    manager.close()


def test_each_built_in_instrument_can_be_disabled_by_name(shop):
    import hostapp

    config = hostapp.Config.from_dict({"plugins": {"cache": False, "disable": ["instruments.log"]}}, environ={})
    pm = hostapp.PluginManager()
    pm.load(config, environ={})
    types = {c.spec.name: c.spec for c in pm.collect("hostapp_instrument_types")}
    assert set(types) == {"incr", "hist", "event"}
    assert pm.infos["instruments.log"].state == "filtered"
    manager = ProbeManager(process_id="x", types=types)
    manager.specs = {"l": {"target": "shop.cart.helper", "instrument": {"type": "log", "event": "call", "value": "n"}},
                     "i": {"target": "shop.cart.helper", "instrument": {"type": "incr", "event": "call"}}}
    manager.apply()
    records = manager.records()
    assert records["l"]["state"] == "error"
    assert "unknown instrument type 'log'" in records["l"]["err"]
    assert 'plugins.disable = ["instruments.log"]' in records["l"]["err"]
    assert records["i"]["state"] == "active"
    manager.close()


def test_probes_namespace_adds_modules_and_objects():
    import decimal

    from hostapp_plugins.tasks.probes import _namespace

    names = _namespace(["decimal", "math:pi", "nosuchmodule"])
    assert names == {"decimal": decimal, "pi": 3.141592653589793}
    assert _expr.compile_expression("decimal.Decimal", arguments={}, namespace=names)(None, None, None, 0) is decimal.Decimal


def test_async_generators_once_per_call_on_312_and_refused_clearly_on_311(shop):
    probe = attach_to("shop.cart.stream")
    probe.instruments["calls"] = Instrument("incr", event="call")
    probe.instruments["ends"] = Instrument("incr", event="end")
    probe.start()

    async def main():
        return [x async for x in shop.cart.stream(4)]

    assert asyncio.run(main()) == [0, 1, 2, 3]
    if sys.version_info >= (3, 12):
        assert probe.error is None
        assert [probe.attachments[n].snapshot()["total"] for n in ("calls", "ends")] == [1, 1]
    else:
        assert probe.error == ("shop.cart.stream is an async generator function: not probed on Python 3.11 "
                               "(it is on 3.12+)")
        assert not probe.attachments


def test_the_sqlite_store_keeps_specs_and_a_change_marker(tmp_path):
    from hostapp.probes.stores import SqliteSpecStore
    from hostapp.store import SCHEMA_VERSION, Store

    with Store(tmp_path / "s.sqlite3") as store:
        assert store.schema_version == SCHEMA_VERSION
        specs = SqliteSpecStore(store)
        assert specs.marker() == 0 and specs.specs() == {}
        spec = ProbeSpec.from_dict({"target": "m.f", "instrument": {"type": "incr"}}, "a").to_dict()
        specs.put(spec)
        specs.put({**spec, "lifespan": 5})  # a change moves the marker too
        assert specs.marker() == 2 and specs.specs()["a"]["lifespan"] == 5
        specs.mark([("a", "host:1:run", {"state": "active", "fires": 3})])
        assert specs.marker() == 2  # applied records do not move it
        assert specs.applied() == {"a": {"host:1:run": {"state": "active", "fires": 3}}}
        assert specs.remove(["a", "nothing"]) == 1 and specs.marker() == 3
        assert specs.applied() == {}
