"""``hostapp probes``: add, list, show and remove probe specs (``docs/cli.md``).

The specs go to the store ``probes.store`` names (the SQLite store by default, a Redis
component with ``probes.store = "component:NAME"``); every running host applies them
within ``probes.poll_interval`` (the built-in ``probes`` task) and writes back what
happened in its process (the ``applied`` records ``list`` and ``show`` print).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Iterator
from typing import Any

import click

__all__ = ["probes_group"]

#: The built-in instrument types (``hostapp_plugins.instruments``); another type is
#: checked against the installed plugins' ``hostapp_instrument_types()``. A built-in type
#: disabled in the target's host is reported there (its ``applied`` record).
_BUILTIN_TYPES = ("log", "incr", "hist", "event")


class _Helpers:
    """What the ``hostapp`` group lends these commands (set by :func:`probes_group`): the
    CLI's error class, console, warning printer and ``--db`` option. Passed in rather than
    imported, so that this module does not import :mod:`hostapp.cli` (which adds it)."""

    error: Any = click.ClickException
    console: Any = None
    warn: Any = None


def _fail(message: str, exit_code: int = 1) -> Exception:
    """The CLI's one-line error (``hostapp: error: ...``) with ``exit_code``, to raise."""
    return _Helpers.error(message, exit_code=exit_code)


def _console() -> Any:
    return _Helpers.console()


def _warn(message: str) -> None:
    _Helpers.warn(message)


_db_option = click.option(
    "--db", "db_path", metavar="PATH", help="The SQLite store (default: store.path, .hostapp/hostapp.sqlite3).",
)


@contextlib.contextmanager
def _spec_store(state: Any, db_path: str | None) -> Iterator[Any]:
    """The spec store of the configuration (created when it is the SQLite store)."""
    import asyncio
    from pathlib import Path

    from hostapp.errors import ComponentError, ConfigError
    from hostapp.probes.stores import RedisSpecStore, SqliteSpecStore, store_setting

    config = state.config()
    try:
        kind, name = store_setting(config)
    except ConfigError as exc:
        raise _fail(str(exc), exit_code=2) from None
    if kind == "sqlite":
        from hostapp.store import Store, resolve_store_path

        path = Path(db_path) if db_path else resolve_store_path(config)
        with Store(path) as store:
            yield SqliteSpecStore(store)
        return
    from hostapp.drivers import ComponentSet

    pm = state.plugin_manager()
    drivers = pm.collect("hostapp_drivers", on_conflict="report")
    components = ComponentSet.from_config(config)
    try:
        asyncio.run(components.abuild(drivers, required=False))
        try:
            component = components.instance(str(name))
        except ComponentError as exc:
            raise _fail(f"probes.store = \"component:{name}\": {exc}", exit_code=1) from None
        yield RedisSpecStore(component)
    finally:
        asyncio.run(components.aclose(timeout=10.0))


def _expires_text(seconds: float | None) -> str:
    if seconds is None:
        return "never"
    if seconds <= 0:
        return f"expired {_duration(-seconds)} ago"
    return f"in {_duration(seconds)}"


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds}s"
    if seconds < 3600:
        return f"{seconds // 60}m {seconds % 60:02d}s"
    return f"{seconds // 3600}h {seconds % 3600 // 60:02d}m"


def _rows(specs: dict[str, dict[str, Any]], applied: dict[str, dict[str, dict[str, Any]]]) -> list[dict[str, Any]]:
    from hostapp.probes.manager import expires_in

    import socket

    here = socket.gethostname()
    rows = []
    for spec_id, spec in specs.items():
        records = applied.get(spec_id, {})
        for record in records.values():  # a process of this machine that died without stopping
            if record.get("state") in ("active", "pending") and record.get("host") == here \
                    and not _alive(record.get("pid")):
                record["state"] = "gone"
                record["err"] = record.get("err") or "its process ended without stopping (values as of its last poll)"
        left = expires_in(spec)
        expired = left is not None and left <= 0
        states: dict[str, int] = {}
        for record in records.values():
            states[record.get("state", "?")] = states.get(record.get("state", "?"), 0) + 1
        rows.append({
            **spec,
            "applied": records,
            "expires_in_s": None if left is None else round(left, 3),
            "status": "expired" if expired else (", ".join(f"{n} {s}" for s, n in sorted(states.items())) or "not applied yet"),
            "fires": sum(int(r.get("fires") or 0) for r in records.values()),
            "errors": sum(int(r.get("errors") or 0) for r in records.values()),
        })
    return rows


def _alive(pid: Any) -> bool:
    import os

    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # another user's process
        return True
    return True


def _describe_instrument(inst: dict[str, Any]) -> str:
    value = inst.get("value")
    text = f"{inst.get('type')}"
    if value:
        text += f" of {value}"
    text += f" at {inst.get('event') or 'return'}"
    if inst.get("condition"):
        text += f" if {inst['condition']}"
    return text


def format_values(values: Any) -> str:
    """One line for an instrument's snapshot (a counter, a histogram, a log, events)."""
    if not isinstance(values, dict):
        return "" if values is None else json.dumps(values, default=repr)
    kind = values.get("kind")
    if kind == "counter":
        return f"counter {values.get('total')}"
    if kind == "histogram":
        if not values.get("count"):
            return f"histogram: nothing in the last {values.get('window_s'):g} s ({values.get('total_count')} in all)"

        def num(key: str) -> str:
            v = values.get(key)
            return "-" if v is None else (f"{v:.6g}" if isinstance(v, float) else str(v))

        return (f"histogram over {values.get('window_s'):g} s: count {values.get('count')}, min {num('min')}, "
                f"max {num('max')}, mean {num('mean')}, p50 {num('p50')}, p95 {num('p95')}, p99 {num('p99')} "
                f"({values.get('total_count')} in all)")
    if kind == "log":
        return f"{values.get('lines')} line(s), {values.get('suppressed')} suppressed; last: {values.get('last')}"
    if kind == "events":
        return f"{values.get('exported')} event(s) exported, {values.get('dropped')} dropped"
    return json.dumps(values, default=repr)


@click.group("probes")
def probes_command() -> None:
    """Probes: instruments attached to a running program's functions (docs/probes.md).

    'hostapp probes add' stores a spec; every running host applies it within
    probes.poll_interval (1 s) and reports back per process ('list', 'show').
    """


@probes_command.command("add")
@_db_option
@click.argument("target")
@click.option("--type", "kind", required=True, metavar="TYPE", help="The instrument type: log, incr, hist, event, or a plugin's.")
@click.option("--value", metavar="EXPR", help="What to record: a safe expression (default: the type's; incr 1, hist elapsed_ns).")
@click.option("--event", type=click.Choice(["call", "return", "end"]), default="return", show_default=True,
              help="When it fires: at the call, at the return, or at the end (return or raise).")
@click.option("--lifespan", type=click.FloatRange(min=0), default=10.0, show_default=True,
              help="Minutes until the probe expires.")
@click.option("--no-lifespan", is_flag=True, help="The probe never expires (remove it with 'hostapp probes rm').")
@click.option("--condition", metavar="EXPR", help="Fire only when this safe expression is true.")
@click.option("--name", metavar="NAME", help="The instrument's name (log lines, event subtype).")
@click.option("--custom", metavar="JSON", help="Settings for the type, a JSON object ('{\"window_s\": 30}').")
@click.option("--id", "spec_id", metavar="ID", help="The spec id (default: a new p-XXXXXXXX); an existing id is replaced.")
@click.option("--json", "as_json", is_flag=True, help="Print the stored spec as JSON.")
@click.pass_obj
def probes_add(state: Any, db_path: str | None, target: str, kind: str, value: str | None, event: str,
               lifespan: float, no_lifespan: bool, condition: str | None, name: str | None, custom: str | None,
               spec_id: str | None, as_json: bool) -> None:
    """Add a probe on TARGET (a dotted path: pkg.mod.Class.method).

    The spec is checked first: the expressions must be in the safe subset (unless
    probes.allow_unsafe) and the type known; otherwise nothing is stored and the exit
    status is 2.
    """
    import datetime as dt

    from hostapp.probes import ProbeSpecError
    from hostapp.probes.manager import ProbeSpec, new_spec_id

    config = state.config()
    try:
        custom_dict = json.loads(custom) if custom else {}
    except json.JSONDecodeError as exc:
        raise _fail(f"--custom: not JSON: {exc}", exit_code=2) from None
    if not isinstance(custom_dict, dict):
        raise _fail("--custom: expected a JSON object", exit_code=2)
    raw = {
        "id": spec_id or new_spec_id(), "target": target,
        "instrument": {"type": kind, "name": name, "value": value, "event": event, "custom": custom_dict,
                       "condition": condition},
        "lifespan": None if no_lifespan else lifespan,
        "lastmodified": dt.datetime.now(dt.timezone.utc),
        "applied": {},
    }
    if kind in _BUILTIN_TYPES:  # no plugin loading for the built-in types (start-up counts in the latency)
        types = set(_BUILTIN_TYPES)
    else:
        types = {c.spec.name for c in state.plugin_manager().collect("hostapp_instrument_types", on_conflict="report")}
    unsafe = bool(config.get("probes.allow_unsafe"))
    try:
        spec = ProbeSpec.from_dict(raw)
        spec.check(allow_unsafe=unsafe, types=dict.fromkeys(types), namespace=_namespace(config))
    except ProbeSpecError as exc:
        raise _fail(str(exc), exit_code=2) from None
    if unsafe:
        _warn("probes.allow_unsafe = true: this probe's expressions are not checked")
    data = spec.to_dict()
    with _spec_store(state, db_path) as store:
        store.put(data)
    if as_json:
        click.echo(json.dumps(data, indent=2))
        return
    expires = "never expires" if spec.lifespan is None else f"expires in {_duration(spec.lifespan * 60)}"
    click.echo(f"{spec.id}: {_describe_instrument(spec.instrument)} on {spec.target}, {expires}")


def _namespace(config: Any) -> dict[str, Any]:
    """The probe namespace names, for the subset check (only their callability matters)."""
    from hostapp.probes._expr import default_namespace

    names = default_namespace()
    for entry in config.get("probes.namespace") or []:
        module, _, attr = entry.partition(":")
        names[attr or module.rsplit(".", 1)[-1]] = len  # a callable stand-in: checked in the host
    return names


@probes_command.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (the specs with their applied records).")
@click.pass_obj
def probes_list(state: Any, db_path: str | None, as_json: bool) -> None:
    """List the probe specs: target, instrument, expiry, per-process state, fires, errors."""
    with _spec_store(state, db_path) as store:
        rows = _rows(store.specs(), store.applied())
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=repr))
        return
    if not rows:
        click.echo("No probes. Add one with: hostapp probes add pkg.mod.func --type incr")
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("Id", "Target", "Instrument", "Expires", "Processes", "Fires", "Errors"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Id",), justify="right" if column in ("Fires", "Errors") else "left")
    for row in rows:
        processes = []
        for key, record in row["applied"].items():
            line = f"{record.get('host')}/{record.get('pid')}: {record.get('state')}"
            if record.get("err"):
                line += f" ({record['err']})"
            elif record.get("last_error"):
                line += f" (last error: {record['last_error']})"
            processes.append(line)
        status = "[yellow]expired[/]" if row["status"] == "expired" else ""
        table.add_row(row["id"], row["target"], _describe_instrument(row["instrument"]),
                      status or _expires_text(row["expires_in_s"]), "\n".join(processes) or "not applied yet",
                      str(row["fires"]), str(row["errors"]))
    _console().print(table)


@probes_command.command("show")
@_db_option
@click.argument("spec_id", metavar="ID")
@click.option("--json", "as_json", is_flag=True, help="Print the spec and its applied records as JSON.")
@click.pass_obj
def probes_show(state: Any, db_path: str | None, spec_id: str, as_json: bool) -> None:
    """Show one probe: its spec and, per process, its state and current values (the
    counter of an incr, the histogram of a hist), live while the process runs."""
    with _spec_store(state, db_path) as store:
        specs = store.specs()
        if spec_id not in specs:
            raise _fail(f"no probe spec {spec_id!r}; see 'hostapp probes list'", exit_code=1)
        [row] = _rows({spec_id: specs[spec_id]}, store.applied(spec_id))
    if as_json:
        click.echo(json.dumps(row, indent=2, default=repr))
        return
    click.echo(f"{row['id']}: {_describe_instrument(row['instrument'])} on {row['target']}")
    click.echo(f"  name: {row['instrument'].get('name') or '-'}; custom: {json.dumps(row['instrument'].get('custom') or {})}")
    click.echo(f"  lastmodified {row['lastmodified']}; lifespan "
               f"{'none' if row['lifespan'] is None else str(row['lifespan']) + ' min'}; "
               f"{'expired' if row['status'] == 'expired' else 'expires ' + _expires_text(row['expires_in_s'])}")
    if not row["applied"]:
        click.echo("  not applied by any process yet")
        return
    for key, record in row["applied"].items():
        click.echo(f"  {record.get('host')} pid {record.get('pid')} (run {record.get('run_id')}): {record.get('state')}, "
                   f"{record.get('fires', 0)} fire(s), {record.get('errors', 0)} error(s)")
        if record.get("err"):
            click.echo(f"    error: {record['err']}")
        if record.get("last_error"):
            click.echo(f"    last error: {record['last_error']}")
        values = format_values(record.get("values"))
        if values:
            click.echo(f"    {values}")


@probes_command.command("rm")
@_db_option
@click.argument("spec_ids", nargs=-1, required=True, metavar="ID...")
@click.pass_obj
def probes_rm(state: Any, db_path: str | None, spec_ids: tuple[str, ...]) -> None:
    """Remove probe specs; running hosts remove their probes within probes.poll_interval."""
    with _spec_store(state, db_path) as store:
        known = store.specs()
        missing = [i for i in spec_ids if i not in known]
        removed = store.remove([i for i in spec_ids if i in known])
    click.echo(f"removed {removed} probe spec(s)")
    if missing:
        raise _fail(f"no probe spec {', '.join(repr(m) for m in missing)}", exit_code=1)


@probes_command.command("clear")
@_db_option
@click.pass_obj
def probes_clear(state: Any, db_path: str | None) -> None:
    """Remove every probe spec (and their applied records)."""
    with _spec_store(state, db_path) as store:
        removed = store.clear()
    click.echo(f"removed {removed} probe spec(s)")


def probes_group(*, error: type[Exception], console: Any, warn: Any) -> click.Group:
    """The ``hostapp probes`` group, given the ``hostapp`` command's helpers.

    Args:
        error: the CLI's one-line error (``HostappCliError(message, exit_code=...)``).
        console: makes the rich console tables are printed on.
        warn: prints a ``hostapp: warning: ...`` line to stderr.
    """
    _Helpers.error, _Helpers.console, _Helpers.warn = error, console, warn
    return probes_command
