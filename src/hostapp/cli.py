"""The ``hostapp`` command (click + rich).

Exit statuses (``docs/cli.md``): 0 success; 1 a hostapp error (a plugin failed in strict
mode, a required hook is missing where one is needed); 2 a usage error or an invalid
configuration (one line on stderr naming the file and key).
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import click

from hostapp._version import __version__
from hostapp.errors import ConfigError, HostappError

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.manager import PluginManager

__all__ = ["cli", "main"]


class HostappCliError(click.ClickException):
    """A one-line error for the user, printed as ``hostapp: error: ...``.

    Args:
        message: the line to print.
        exit_code: 2 for configuration and usage errors, 1 otherwise.
    """

    def __init__(self, message: str, exit_code: int = 1) -> None:
        super().__init__(message)
        self.exit_code = exit_code

    def show(self, file: Any = None) -> None:
        click.echo(f"hostapp: error: {self.format_message()}", err=True)


def _warn(message: str) -> None:
    click.echo(f"hostapp: warning: {message}", err=True)


def _route_warnings() -> None:
    """Print hostapp's logged warnings (a plugin raising in an isolated hook, ...) to
    stderr as ``hostapp: warning: ...`` lines, never on stdout (``--json`` stays clean)."""
    import logging

    logger = logging.getLogger("hostapp")
    if not any(getattr(h, "_hostapp_cli", False) for h in logger.handlers):
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("hostapp: %(levelname)s: %(message)s"))
        handler.setLevel(logging.WARNING)
        handler._hostapp_cli = True  # type: ignore[attr-defined]
        logger.addHandler(handler)
        logger.propagate = False
    logging.addLevelName(logging.WARNING, "warning")
    logging.addLevelName(logging.ERROR, "error")


@dataclass
class _State:
    """What the group's options set up, shared by every subcommand (``ctx.obj``)."""

    config_path: str | None = None
    strict: bool = False
    no_cache: bool = False
    _config: Config | None = None
    _pm: PluginManager | None = None
    warned: set[str] = field(default_factory=set)

    def config(self) -> Config:
        if self._config is None:
            from hostapp.config import ConfigWarning, load_config

            with warnings.catch_warnings():
                warnings.simplefilter("ignore", ConfigWarning)
                try:
                    self._config = load_config(self.config_path)
                except ConfigError as exc:
                    raise HostappCliError(str(exc), exit_code=2) from None
            for message in self._config.warnings:
                _warn(message)
        return self._config

    def plugin_manager(self) -> PluginManager:
        """Load every plugin once per command (discovery, filters, registration)."""
        if self._pm is None:
            import dataclasses

            from hostapp.errors import PluginLoadError
            from hostapp.manager import PluginManager

            config = self.config()
            options = config.discovery_options()
            if self.no_cache:
                options = dataclasses.replace(options, use_cache=False)
            pm = PluginManager()
            try:
                pm.load(config, options=options, strict=self.strict or config.strict)
            except PluginLoadError as exc:
                raise HostappCliError(str(exc), exit_code=1) from None
            except ConfigError as exc:
                raise HostappCliError(str(exc), exit_code=2) from None
            self._pm = pm
        return self._pm


class _HostappGroup(click.Group):
    """The ``hostapp`` group: built-in commands plus those plugins contribute."""

    def _plugin_commands(self, ctx: click.Context) -> dict[str, click.Command]:
        state: _State = ctx.ensure_object(_State)
        cached = ctx.meta.get("hostapp.plugin_commands")
        if cached is not None:
            return cached  # type: ignore[no-any-return]
        commands: dict[str, click.Command] = {}
        try:
            pm = state.plugin_manager()
        except HostappCliError:
            ctx.meta["hostapp.plugin_commands"] = commands
            raise
        for contribution in pm.collect("hostapp_cli_commands", on_conflict="report"):
            spec = contribution.spec
            if spec.name in self.commands:
                _warn(
                    f"{contribution.describe()} adds command {spec.name!r}, "
                    "which is a built-in command; skipped"
                )
                continue
            command = spec.command
            command.name = spec.name
            if spec.summary and not command.short_help:
                command.short_help = spec.summary
            commands[spec.name] = command
        ctx.meta["hostapp.plugin_commands"] = commands
        return commands

    def list_commands(self, ctx: click.Context) -> list[str]:
        names = set(super().list_commands(ctx))
        try:
            names.update(self._plugin_commands(ctx))
        except HostappCliError:
            pass
        return sorted(names)

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        command = super().get_command(ctx, cmd_name)
        if command is not None:
            return command
        return self._plugin_commands(ctx).get(cmd_name)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except ConfigError as exc:
            raise HostappCliError(str(exc), exit_code=2) from None
        except HostappError as exc:
            raise HostappCliError(str(exc), exit_code=1) from None


@click.group(cls=_HostappGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, "--version", "-V", prog_name="hostapp")
@click.option(
    "--config",
    "config_path",
    metavar="PATH",
    help="Configuration file (default: hostapp.toml, else [tool.hostapp] in pyproject.toml; env HOSTAPP_CONFIG).",
)
@click.option(
    "--strict",
    is_flag=True,
    help="Any plugin failure is fatal (for plugin development; env HOSTAPP_STRICT=1).",
)
@click.pass_context
def cli(ctx: click.Context, config_path: str | None, strict: bool) -> None:
    """hostapp: a plugin host for Python applications, built on pluggy."""
    _route_warnings()
    state = ctx.ensure_object(_State)
    state.config_path = config_path
    state.strict = strict


@cli.command("plugins")
@click.option("--all", "show_all", is_flag=True, help="Also list hostapp's built-in plugins and shadowed candidates.")
@click.option("--hook", "hook_name", metavar="NAME", help="Only plugins implementing hook NAME.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.option("--no-cache", is_flag=True, help="Bypass the entry-point index cache (env HOSTAPP_NO_CACHE=1).")
@click.pass_obj
def plugins_command(state: _State, show_all: bool, hook_name: str | None, as_json: bool, no_cache: bool) -> None:
    """List every plugin candidate: state, source, distribution, priority, tags, hooks.

    Filtered plugins show the rule that removed them, failed ones the stage and error.
    Exit status 0 even when plugins failed, unless --strict.
    """
    from hostapp.lifecycle import PluginState

    state.no_cache = no_cache
    pm = state.plugin_manager()
    if hook_name is not None and getattr(getattr(pm.hook, hook_name, None), "spec", None) is None:
        raise HostappCliError(f"no hook named {hook_name!r}; see 'hostapp hooks'", exit_code=2)
    provides = _contributions(pm)
    errors: dict[str, list[dict[str, Any]]] = {}
    for record in pm.hook_errors:
        errors.setdefault(record.plugin, []).append({"hook": record.hook, "error": record.error})
    rows = []
    for info in pm.candidates:
        if not show_all and (info.builtin or info.state is PluginState.SHADOWED):
            continue
        if hook_name is not None and hook_name not in info.hooks:
            continue
        row = info.to_dict()
        row["provides"] = provides.get(info.name, {})
        row["hook_errors"] = errors.get(info.name, [])
        rows.append(row)
    missing = pm.missing_required()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
    else:
        _print_plugins(rows)
    for name in missing:
        _warn(f"required hook {name!r} has no implementation")


def _contributions(pm: PluginManager) -> dict[str, dict[str, list[str]]]:
    """What each plugin contributes through the registration hooks, by hook."""
    from hostapp.hookspecs import REGISTRATION_HOOKS

    out: dict[str, dict[str, list[str]]] = {}
    for hook_name in REGISTRATION_HOOKS:
        for contribution in pm.collect(hook_name, on_conflict="report"):
            short = hook_name.removeprefix("hostapp_")
            out.setdefault(contribution.plugin, {}).setdefault(short, []).append(contribution.name)
    return out


def _console() -> Any:
    """A rich console; when stdout is not a terminal (a pipe, a file) and ``COLUMNS`` is
    unset, 160 columns instead of rich's 80, so piped tables keep whole lines."""
    import os

    from rich.console import Console

    console = Console()
    if not console.is_terminal and "COLUMNS" not in os.environ:
        console = Console(width=160)
    return console


def _print_plugins(rows: list[dict[str, Any]]) -> None:
    from rich.table import Table

    console = _console()
    if not rows:
        console.print("No plugins found. ('hostapp plugins --all' also lists the built-in ones.)")
        return
    from hostapp.hookspecs import REGISTRATION_HOOKS

    table = Table(show_lines=False, header_style="bold")
    for column in ("Name", "State", "Source", "Distribution"):
        table.add_column(column, no_wrap=True)
    table.add_column("Prio", justify="right", no_wrap=True)
    table.add_column("Tags", overflow="fold")
    table.add_column("Provides / detail", overflow="fold", ratio=1, min_width=20)
    colours = {"registered": "green", "started": "green", "failed": "red", "filtered": "yellow"}
    for row in rows:
        if row["distribution"]:
            dist = f"{row['distribution']} {row['version']}"
        else:
            dist = ""
        if row["state"] == "failed":
            detail = f"{row['stage']}: {row['error']}"
        elif row["state"] == "filtered":
            detail = f"filtered by {row['rule']}"
        elif row["state"] == "shadowed":
            detail = f"shadowed by {row['shadowed_by']}"
        else:
            parts = [f"{k}: {', '.join(v)}" for k, v in row["provides"].items()]
            parts += [h.removeprefix("hostapp_") for h in row["hooks"] if h not in REGISTRATION_HOOKS]
            detail = "; ".join(parts) or (row["location"] or "")
        for err in row["hook_errors"]:
            detail += f"\n[red]{err['hook']}: {err['error']}[/red]"
        state = row["state"]
        table.add_row(
            row["name"],
            f"[{colours.get(state, 'white')}]{state}[/]",
            row["source"],
            dist,
            str(row["priority"]),
            ", ".join(row["tags"]),
            detail,
        )
    console.print(table)


@cli.command("hooks")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def hooks_command(state: _State, as_json: bool) -> None:
    """List every hookspec with its implementations in call order."""
    pm = state.plugin_manager()
    rows = pm.hook_table()
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("Hook", no_wrap=True)
    for column in ("Kind", "Options", "Implementations (call order)"):
        table.add_column(column, overflow="fold")
    for row in rows:
        options = [k for k in ("firstresult", "historic", "required", "isolate") if row[k]]
        impls = []
        for impl in row["implementations"]:
            flags = [k for k in ("tryfirst", "trylast", "wrapper", "async") if impl[k]]
            impls.append(impl["plugin"] + (f" ({', '.join(flags)})" if flags else ""))
        kind = row["kind"] + (f" -> {row['spec_type']}" if row["spec_type"] else "")
        table.add_row(row["name"], kind, ", ".join(options), "\n".join(impls) or "-")
    _console().print(table)


# -- the store: runs, events, dead letters, sinks -------------------------------------------

_db_option = click.option(
    "--db",
    "db_path",
    metavar="PATH",
    help="The SQLite store (default: store.path, .hostapp/hostapp.sqlite3).",
)


def _open_store(state: _State, db_path: str | None, *, must_exist: bool = True) -> Any:
    """Open the store, or ``None`` when it does not exist yet (a note goes to stderr)."""
    from pathlib import Path

    from hostapp.store import Store, resolve_store_path

    path = Path(db_path) if db_path else resolve_store_path(state.config())
    if must_exist and not path.exists():
        _warn(f"no store at {path} yet; events are stored by a running host ('hostapp run', 'with Host(...)')")
        return None
    return Store(path)


def _since_ns(text: str) -> int:
    """``--since``: a duration back from now (``30s``, ``15m``, ``2h``, ``7d``) or an ISO 8601 time."""
    import re
    import time
    from datetime import datetime

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        seconds = float(match.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)]
        return time.time_ns() - int(seconds * 1e9)
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        raise HostappCliError(
            f"--since {text!r}: expected a duration like 30s, 15m, 2h, 7d or an ISO 8601 time", exit_code=2
        ) from None
    return int(moment.timestamp() * 1e9)


def _when(ns: int | None) -> str:
    from datetime import datetime

    if ns is None:
        return ""
    return datetime.fromtimestamp(ns / 1e9).isoformat(sep=" ", timespec="milliseconds")


@cli.command("runs")
@_db_option
@click.option("--limit", type=click.IntRange(min=1), default=20, show_default=True, help="Most recent runs to show.")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.pass_obj
def runs_command(state: _State, db_path: str | None, limit: int, as_json: bool) -> None:
    """List the recorded runs, newest first: id, start, duration, exit status, events, command."""
    store = _open_store(state, db_path)
    if store is None:
        return
    with store:
        rows = []
        for run in store.runs(limit):
            row = run.to_dict()
            row["events"] = store.count_events(run_id=run.id)
            rows.append(row)
    if as_json:
        for row in rows:
            click.echo(json.dumps(row))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("Run", "Started", "Duration", "Exit", "Events", "Command"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Run", "Started"))
    for row in rows:
        duration = "" if row["ended_ns"] is None else f"{(row['ended_ns'] - row['started_ns']) / 1e9:.2f} s"
        exit_status = "running" if row["ended_ns"] is None else ("" if row["exit_status"] is None else str(row["exit_status"]))
        table.add_row(row["id"], _when(row["started_ns"]), duration, exit_status, str(row["events"]), row["command"] or "")
    _console().print(table)


@cli.group("events", invoke_without_command=True)
@_db_option
@click.option("--run", "run_id", metavar="ID", help="Only this run's events.")
@click.option("--last", is_flag=True, help="Only the most recent run's events.")
@click.option("--type", "event_type", metavar="TYPE", help="Only this event type.")
@click.option("--subtype", metavar="SUBTYPE", help="Only this subtype.")
@click.option("--since", metavar="WHEN", help="Only events since a duration ago (30s, 15m, 2h, 7d) or an ISO 8601 time.")
@click.option("--limit", type=click.IntRange(min=0), default=None,
              help="At most N events, the newest (default: 50 in a table, all with --json; 0 = all).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line instead of a table.")
@click.option("--dead-letters", is_flag=True, help="List the dead letters (events a sink could not take) instead.")
@click.option("--all", "show_all", is_flag=True, help="Every event, not the HTTP calls view.")
@click.option("--nested", is_flag=True, help="In the HTTP view, also the calls made inside another HTTP call.")
@click.pass_context
def events_command(
    ctx: click.Context,
    db_path: str | None,
    run_id: str | None,
    last: bool,
    event_type: str | None,
    subtype: str | None,
    since: str | None,
    limit: int | None,
    as_json: bool,
    dead_letters: bool,
    show_all: bool,
    nested: bool,
) -> None:
    """Show stored events (or, with --dead-letters, the dead letters), oldest first.

    By default: the outbound HTTP calls, one row per call (method, URL, status, duration,
    library, call site); a call made inside another (requests -> urllib3) is shown only
    with --nested. Where the selection has no HTTP call, and with --all, --type or
    --subtype: every event. --json prints the same events with every field, one per line.

    'hostapp events redeliver' sends the dead letters to their sinks again.
    """
    if ctx.invoked_subcommand is not None:
        ctx.meta["hostapp.db"] = db_path
        return
    state: _State = ctx.obj
    if run_id and last:
        raise HostappCliError("--run and --last cannot be used together", exit_code=2)
    since_ns = _since_ns(since) if since else None
    store = _open_store(state, db_path)
    if store is None:
        return
    with store:
        if dead_letters:
            _print_dead_letters(store, limit, as_json)
            return
        if last:
            latest = store.last_run()
            if latest is None:
                _warn("no runs recorded yet")
                return
            run_id = latest.id
        effective = limit if limit is not None else (None if as_json else 50)
        if effective == 0:
            effective = None
        if not (show_all or event_type or subtype):
            calls = _http_calls(store, run_id, since_ns, effective, nested)
            if calls is not None:
                _print_http_calls(calls, as_json)
                return
        events = store.events(run_id=run_id, type=event_type, subtype=subtype, since_ns=since_ns,
                              limit=effective, newest_first=True)
        events.reverse()
        total = None
        if effective is not None and len(events) == effective:
            total = store.count_events(run_id=run_id, type=event_type, subtype=subtype, since_ns=since_ns)
    if as_json:
        for event in events:
            click.echo(json.dumps(event.to_dict(), default=repr))
        return
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("Time", no_wrap=True)
    table.add_column("Type", no_wrap=True)
    table.add_column("Subtype", no_wrap=True)
    table.add_column("Source", no_wrap=True)
    table.add_column("Data", overflow="fold", ratio=1)
    for event in events:
        data = json.dumps(event.data, default=repr, sort_keys=True)
        table.add_row(_when(event.timestamp_ns), event.type, event.subtype or "", event.source or "",
                      data if len(data) <= 300 else data[:297] + "...")
    _console().print(table)
    if total is not None and total > len(events):
        _warn(f"showing the newest {len(events)} of {total} events; --limit N (0 = all) to see more")


_REQUEST = "outbound_http_request"
_RESPONSE = "outbound_http_response"


def _http_calls(
    store: Any, run_id: str | None, since_ns: int | None, limit: int | None, nested: bool,
) -> list[tuple[Any, Any]] | None:
    """The newest ``limit`` HTTP calls as ``(request, response or None)`` pairs, oldest
    first; ``None`` when the selection has no HTTP request at all."""
    if not store.count_events(run_id=run_id, type=_REQUEST, since_ns=since_ns):
        return None
    requests: list[Any] = []
    batch = None if limit is None else max(limit * 4, 200)
    until = None
    while True:  # newest first, skipping nested calls, until ``limit`` are found
        chunk = store.events(run_id=run_id, type=_REQUEST, since_ns=since_ns, until_ns=until,
                             limit=batch, newest_first=True)
        for event in chunk:
            if nested or event.data.get("nested_in") is None:
                requests.append(event)
        if batch is None or len(chunk) < batch or (limit is not None and len(requests) >= limit):
            break
        until = chunk[-1].timestamp_ns
    if limit is not None:
        requests = requests[:limit]
    requests.reverse()
    if not requests:
        return []
    if all("frame_id" not in r.data for r in requests):  # call records: request and response in one
        return [(r, r) for r in requests]
    first = requests[0].timestamp_ns
    responses = {  # request/response pairs of Kolo-style processors, joined on frame_id
        e.data.get("frame_id"): e
        for e in store.events(run_id=run_id, type=_RESPONSE, since_ns=first)
    }
    return [(r, r if "frame_id" not in r.data else responses.get(r.data.get("frame_id"))) for r in requests]


def _site(data: dict[str, Any]) -> str:
    import os

    site = data.get("call_site") or {}
    if not site.get("file"):
        return ""
    path = site["file"]
    try:
        rel = os.path.relpath(path)
        path = rel if not rel.startswith("..") else path
    except ValueError:
        pass
    return f"{path}:{site.get('line')}"


def _print_http_calls(calls: list[tuple[Any, Any]], as_json: bool) -> None:
    if as_json:
        for request, response in calls:
            click.echo(json.dumps(request.to_dict(), default=repr))
            if response is not None and response is not request:
                click.echo(json.dumps(response.to_dict(), default=repr))
        return
    if not calls:
        click.echo("No HTTP calls.")
        return
    from rich.table import Table

    table = Table(header_style="bold")
    table.add_column("Time", no_wrap=True)
    table.add_column("Method", no_wrap=True)
    table.add_column("URL", overflow="fold", ratio=1)
    table.add_column("Status", no_wrap=True, justify="right")
    table.add_column("Duration", no_wrap=True, justify="right")
    table.add_column("Library", no_wrap=True)
    table.add_column("Call site", overflow="fold")
    for request, response in calls:
        data = request.data
        if response is None:
            status, duration = "…", ""
        else:
            rd = response.data
            error = rd.get("error") if isinstance(rd.get("error"), dict) else {}
            status = str(rd.get("status_code")) if rd.get("status_code") is not None else (
                str(error.get("type") or rd.get("exception_type") or "error").rsplit(".", 1)[-1]
            )
            ns = rd.get("duration_ns")
            duration = f"{ns / 1e6:.1f} ms" if isinstance(ns, (int, float)) else ""
        library = str(request.subtype or data.get("library") or "")
        if data.get("nested_in"):
            library = f"  ↳ {library}"
        table.add_row(_when(request.timestamp_ns), str(data.get("method") or ""), str(data.get("url") or ""),
                      status, duration, library, _site(data))
    _console().print(table)


def _print_dead_letters(store: Any, limit: int | None, as_json: bool) -> None:
    letters = store.dead_letters(limit=limit or None)
    if as_json:
        for letter in letters:
            click.echo(json.dumps(letter.to_dict(), default=repr))
        return
    if not letters:
        click.echo("No dead letters.")
        return
    from rich.table import Table

    table = Table(header_style="bold")
    for column in ("Id", "Sink", "Event", "Attempts", "Error", "Since"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Id", "Since"))
    for letter in letters:
        table.add_row(str(letter.id), letter.sink, f"{letter.event.type} {letter.event.id}",
                      str(letter.attempts), letter.error, _when(letter.created_ns))
    _console().print(table)


@events_command.command("redeliver")
@click.option("--sink", metavar="NAME", help="Only this sink's dead letters.")
@click.option("--timeout", type=click.FloatRange(min=0), default=60.0, show_default=True,
              help="Seconds for each sink's redelivery.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def redeliver_command(ctx: click.Context, sink: str | None, timeout: float, as_json: bool) -> None:
    """Send the dead letters to their sinks again; delivered ones are deleted.

    Exit status 1 when some could not be delivered (they stay dead letters).
    """
    from hostapp.events import redeliver

    state: _State = ctx.obj
    store = _open_store(state, ctx.parent.meta.get("hostapp.db") if ctx.parent else None)
    if store is None:
        return
    pm = state.plugin_manager()
    sinks = pm.collect("hostapp_event_sinks", on_conflict="report")
    with store:
        results = redeliver(store, sinks, state.config(), sink, timeout=timeout)
    if as_json:
        click.echo(json.dumps(results, indent=2))
    elif not results:
        click.echo("No dead letters to redeliver.")
    else:
        for name, result in sorted(results.items()):
            line = f"{name}: {result.get('redelivered', 0)} redelivered, {result.get('failed', 0)} still failing"
            if result.get("error"):
                line += f" ({result['error']})"
            click.echo(line)
    if any(r.get("failed") or r.get("error") for r in results.values()):
        ctx.exit(1)


@cli.command("sinks")
@_db_option
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def sinks_command(state: _State, db_path: str | None, as_json: bool) -> None:
    """List the event sinks: who provides them, whether they are enabled, what they accept,
    their counters in the last run and their pending dead letters."""
    pm = state.plugin_manager()
    config = state.config()
    tables = config.get("events.sinks") or {}
    last_counters: dict[str, Any] = {}
    pending: dict[str, int] = {}
    last_run_id = None
    store = _open_store(state, db_path)
    if store is not None:
        with store:
            latest = store.last_run()
            if latest is not None:
                last_run_id = latest.id
                last_counters = (latest.summary or {}).get("sinks", {})
            pending = store.dead_letter_counts()
    rows = []
    for contribution in pm.collect("hostapp_event_sinks", on_conflict="report"):
        spec = contribution.spec
        table = tables.get(spec.name)
        rows.append({
            "name": spec.name,
            "plugin": contribution.plugin,
            "distribution": contribution.distribution,
            "version": contribution.version,
            "enabled": table is not None and table.get("enabled", True) is not False,
            "event_types": list(spec.event_types),
            "description": spec.description,
            "last_run": last_run_id,
            "counters": last_counters.get(spec.name),
            "dead_letters": pending.get(spec.name, 0),
        })
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    counter_names = ("accepted", "delivered", "retried", "failed", "dead_lettered", "dropped")
    table = Table(header_style="bold", title=f"last run: {last_run_id}" if last_run_id else None)
    for column in ("Sink", "Enabled", "Plugin", "Accepts", *counter_names, "Dead letters"):
        table.add_column(column, no_wrap=column in ("Sink", "Plugin"))
    for row in rows:
        counters = row["counters"] or {}
        table.add_row(
            row["name"], "yes" if row["enabled"] else "no", row["plugin"], ", ".join(row["event_types"]),
            *(str(counters.get(k, "")) for k in counter_names), str(row["dead_letters"]),
        )
    _console().print(table)


@cli.command("components")
@_db_option
@click.option("--dry-run", is_flag=True, help="Build, check and close every component now, whatever the store holds.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def components_command(state: _State, db_path: str | None, dry_run: bool, as_json: bool) -> None:
    """Show the components ([components.NAME]): driver, load, state, error and health.

    From the store: what a running host last reported (or, when none runs, the last run
    that had components). When the store has no report, or with --dry-run: a dry build
    (each component built, connected, validated, checked and closed now). Exit status 0
    even when components are unavailable; 2 for a configuration error.
    """
    from hostapp.drivers import component_rows

    from pathlib import Path

    from hostapp.store import Store, resolve_store_path

    config = state.config()
    path = Path(db_path) if db_path else resolve_store_path(config)
    if dry_run or not path.exists():
        rows, title = component_rows(config, state.plugin_manager, None)
    else:
        with Store(path) as store:
            rows, title = component_rows(config, state.plugin_manager, store)
    if as_json:
        click.echo(json.dumps(rows, indent=2, default=repr))
        return
    from rich.table import Table

    if not rows:
        click.echo("No components configured ([components.NAME] in the configuration).")
        return
    table = Table(header_style="bold", title=title)
    for column in ("Component", "Driver", "Load", "State", "Error", "Health"):
        table.add_column(column, overflow="fold", no_wrap=column in ("Component", "Load", "State"))
    colours = {"available": "green", "unavailable": "red", "closed": "white", "disabled": "yellow"}
    for row in rows:
        health = row.get("health") or {}
        shown = "" if not health else ("ok" if health.get("ok") else f"failing: {health.get('error')}")
        if health.get("ok") and health.get("detail") is not None:
            shown += f" {json.dumps(health['detail'], default=repr)}"
        error = " ".join((row.get("error") or "").split())
        table.add_row(row["name"], row["driver"], row["load"],
                      f"[{colours.get(row['state'], 'white')}]{row['state']}[/]", error, shown)
    _console().print(table)


@cli.command("tasks")
@_db_option
@click.option("--dry-run", is_flag=True, help="List the tasks the plugins contribute; do not read the store.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON array instead of a table.")
@click.pass_obj
def tasks_command(state: _State, db_path: str | None, dry_run: bool, as_json: bool) -> None:
    """List the background tasks: state, runs, failures, restarts and the last error.

    From the live run's reports in the store (a host running now), else from the last run
    that reported tasks; with none, or with --dry-run, the tasks the plugins contribute,
    "not started".
    """
    from hostapp.tasks import dry_task_rows, stored_task_rows

    run, live, rows = None, False, []
    store = None if dry_run else _open_store(state, db_path)
    if store is not None:
        with store:
            run, live, rows = stored_task_rows(store)
    if not rows:
        rows = dry_task_rows(state.plugin_manager().collect("hostapp_background_tasks", on_conflict="report"))
    if as_json:
        click.echo(json.dumps(rows, indent=2))
        return
    from rich.table import Table

    if run is None:
        title = "not started (a dry listing of the contributed tasks)"
    elif live:
        title = f"run {run.id} (live, pid {run.pid})"
    elif run.ended_ns is None:
        title = f"run {run.id} (not running: its process is gone; started {_when(run.started_ns)})"
    else:
        title = f"run {run.id} (ended {_when(run.ended_ns)})"
    table = Table(header_style="bold", title=title)
    for column in ("Task", "Plugin", "Kind", "Restart", "Interval", "Stop timeout", "State", "Runs",
                   "Failures", "Restarts", "Skipped", "Last error"):
        table.add_column(column, no_wrap=column in ("Task", "Plugin", "State"), overflow="fold")
    for row in rows:
        interval = row.get("interval")
        table.add_row(
            row["name"], str(row.get("plugin", "")), str(row.get("kind", "")), str(row.get("restart", "")),
            "" if interval is None else f"{interval:g} s", f"{row.get('stop_timeout', 0):g} s", row["state"],
            *(str(row.get(k, "")) for k in ("runs", "failures", "restarts", "skipped")),
            row.get("last_error") or "",
        )
    _console().print(table)


@cli.command(
    "run",
    context_settings={"ignore_unknown_options": True, "allow_interspersed_args": False},
)
@click.option("--config", "run_config", metavar="PATH", help="Configuration file (as 'hostapp --config').")
@_db_option
@click.option("-m", "module", metavar="MODULE", help="Run a library module as a script (as 'python -m').")
@click.option("--processor", "only", multiple=True, metavar="NAME",
              help="Only this trace processor (repeatable; a glob or re: pattern).")
@click.option("--no-processor", "disable", multiple=True, metavar="NAME",
              help="Not this trace processor (repeatable; a glob or re: pattern).")
@click.option("--json-summary", metavar="FILE", help="Also write the run summary as JSON to FILE.")
@click.option("--quiet", "-q", is_flag=True, help="No summary on stderr.")
@click.argument("argv", nargs=-1, type=click.UNPROCESSED, metavar="SCRIPT [ARGS]...")
@click.pass_obj
def run_command(
    state: _State,
    run_config: str | None,
    db_path: str | None,
    module: str | None,
    only: tuple[str, ...],
    disable: tuple[str, ...],
    json_summary: str | None,
    quiet: bool,
    argv: tuple[str, ...],
) -> None:
    """Run a Python program under the host, exactly as 'python SCRIPT' / 'python -m MODULE'.

    The trace processors (the built-in HTTP and job processors, and any plugin's) select
    what is recorded; the events go to the configured sinks (by default the SQLite store,
    .hostapp/hostapp.sqlite3). The program's arguments, stdin, stdout, stderr and exit
    status are its own. At the end a summary goes to stderr (unless --quiet); then see the
    calls with 'hostapp events --last'.
    """
    import dataclasses
    import os

    from hostapp.run import prepare, run_program

    if module is None and not argv:
        raise HostappCliError("hostapp run: expected SCRIPT or -m MODULE (see 'hostapp run --help')", exit_code=2)
    if run_config:
        state.config_path = run_config
    config = state.config()
    data = dict(config.data)
    if db_path:
        data["store.path"] = os.path.abspath(db_path)
    if only:
        data["tracing.processors"] = [*(data["tracing.processors"] or []), *only]
    if disable:
        data["tracing.disable"] = [*data["tracing.disable"], *disable]
    if state.strict:
        data["plugins.strict"] = True
    config = dataclasses.replace(config, data=data)
    try:
        if module is not None:
            target = prepare(module, argv, module=True)
        else:
            target = prepare(argv[0], argv[1:])
    except SyntaxError as exc:  # printed as python prints it, status 1
        exc.__traceback__ = None
        sys.excepthook(type(exc), exc, None)
        raise SystemExit(1) from None
    except ImportError as exc:
        raise HostappCliError(f"hostapp run: {exc}", exit_code=1) from None
    except OSError as exc:
        path = os.path.abspath(argv[0]) if argv else module
        reason = f"[Errno {exc.errno}] {exc.strerror}" if exc.errno else str(exc)
        raise HostappCliError(f"hostapp run: can't open file {path!r}: {reason}", exit_code=2) from None
    command = ["hostapp", "run", *sys.argv[2:]] if sys.argv[1:2] == ["run"] else ["hostapp", "run", *(
        ["-m", module] if module else []), *argv]
    run_program(target, config=config, command=command, quiet=quiet, json_summary=json_summary)


def _add_probes_group() -> None:
    from hostapp._cli_probes import probes_group  # the probes commands, lent the helpers above

    cli.add_command(probes_group(error=HostappCliError, console=_console, warn=_warn))


_add_probes_group()


def main(argv: list[str] | None = None) -> None:
    """Entry point of the ``hostapp`` console script."""
    cli.main(args=argv, prog_name="hostapp")


if __name__ == "__main__":  # pragma: no cover
    main(sys.argv[1:])
