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

from hostapp.probes import admin

__all__ = ["probes_group"]

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
@click.option("--lifespan", type=click.FloatRange(min=0), default=admin.DEFAULT_LIFESPAN, show_default=True,
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
    from hostapp.probes import ProbeSpecError

    config = state.config()
    try:
        custom_dict = json.loads(custom) if custom else {}
    except json.JSONDecodeError as exc:
        raise _fail(f"--custom: not JSON: {exc}", exit_code=2) from None
    if not isinstance(custom_dict, dict):
        raise _fail("--custom: expected a JSON object", exit_code=2)
    raw = admin.new_spec(target, kind, value=value, event=event, lifespan=None if no_lifespan else lifespan,
                   condition=condition, name=name, custom=custom_dict, spec_id=spec_id)
    if kind in admin.BUILTIN_TYPES:  # no plugin loading for the built-in types (start-up counts in the latency)
        types = set(admin.BUILTIN_TYPES)
    else:
        types = {c.spec.name for c in state.plugin_manager().collect("hostapp_instrument_types", on_conflict="report")}
    unsafe = bool(config.get("probes.allow_unsafe"))
    try:
        spec = admin.checked_spec(raw, config=config, types=types)
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
    expires = "never expires" if spec.lifespan is None else f"expires in {admin.duration_text(spec.lifespan * 60)}"
    click.echo(f"{spec.id}: {admin.describe_instrument(spec.instrument)} on {spec.target}, {expires}")


@probes_command.command("list")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array (the specs with their applied records).")
@click.pass_obj
def probes_list(state: Any, db_path: str | None, as_json: bool) -> None:
    """List the probe specs: target, instrument, expiry, per-process state, fires, errors."""
    with _spec_store(state, db_path) as store:
        rows = admin.spec_rows(store)
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
        table.add_row(row["id"], row["target"], admin.describe_instrument(row["instrument"]),
                      status or admin.expires_text(row["expires_in_s"]), "\n".join(processes) or "not applied yet",
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
        rows = admin.spec_rows(store, spec_id)
    if not rows:
        raise _fail(f"no probe spec {spec_id!r}; see 'hostapp probes list'", exit_code=1)
    [row] = rows
    if as_json:
        click.echo(json.dumps(row, indent=2, default=repr))
        return
    click.echo(f"{row['id']}: {admin.describe_instrument(row['instrument'])} on {row['target']}")
    click.echo(f"  name: {row['instrument'].get('name') or '-'}; custom: {json.dumps(row['instrument'].get('custom') or {})}")
    click.echo(f"  lastmodified {row['lastmodified']}; lifespan "
               f"{'none' if row['lifespan'] is None else str(row['lifespan']) + ' min'}; "
               f"{'expired' if row['status'] == 'expired' else 'expires ' + admin.expires_text(row['expires_in_s'])}")
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
        values = admin.format_values(record.get("values"))
        if values:
            click.echo(f"    {values}")


@probes_command.command("rm")
@_db_option
@click.argument("spec_ids", nargs=-1, required=True, metavar="ID...")
@click.pass_obj
def probes_rm(state: Any, db_path: str | None, spec_ids: tuple[str, ...]) -> None:
    """Remove probe specs; running hosts remove their probes within probes.poll_interval."""
    with _spec_store(state, db_path) as store:
        removed, missing = admin.remove_specs(store, spec_ids)
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
