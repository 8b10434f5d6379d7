"""``hostapp.PluginManager``: pluggy's plugin manager plus what a host needs.

What it adds to :class:`pluggy.PluginManager` (project name ``hostapp``):

* hookspec options ``required`` and ``isolate`` (see :func:`hostapp.hookspec`), honoured by
  pluggy's own call path ``pm.hook.NAME(...)``: an isolated implementation is wrapped once,
  at registration, so a call costs one extra Python frame per implementation and nothing
  else;
* ``await pm.ahook.NAME(...)``: the same implementations in the same order, each result
  awaited when awaitable (datasette's await-me-maybe as a relay);
* :meth:`PluginManager.collect`: the flattened spec objects of a registration hook, each
  tagged with its plugin and distribution, duplicates rejected naming both plugins;
* :meth:`PluginManager.load`: discover -> filter -> import -> register through the
  filtering discovery adapter, with a :class:`~hostapp.lifecycle.PluginInfo` per plugin
  and every state transition reported to ``hostapp_plugin_state``;
* deterministic order (higher ``priority`` called first, then by name) and registration
  that stays linear in the number of plugins (pluggy's ``register`` scans every
  registered plugin and every implementation of a hook, which is quadratic);
* bounded, contained plugin calls (:mod:`hostapp._bounded`): :meth:`PluginManager.load`
  imports each plugin, :meth:`PluginManager.collect` calls each registration hook
  implementation and :meth:`PluginManager.call_each` each implementation of a call hook on
  a helper thread, within :attr:`PluginManager.call_timeout` seconds; whatever one raises
  (``SystemExit`` and ``KeyboardInterrupt`` included) or a call that does not return in
  time is reported with the plugin's name and the others go on.
"""

from __future__ import annotations

import collections
import dataclasses
import functools
import inspect
import logging
import time
import traceback
import types
from collections.abc import Awaitable, Callable, Iterable, Iterator, Mapping, Sequence
from typing import TYPE_CHECKING, Any, Literal

import pluggy

from hostapp import hookspecs as _hostapp_hookspecs
from hostapp._bounded import Outcome, PluginCalls, describe_error, resolve
from hostapp._markers import spec_options
from hostapp.errors import (
    DuplicateNameError, HostappError, PluginContractError, PluginLoadError, PluginTimeoutError,
)
from hostapp.lifecycle import PluginInfo, PluginState, Source
from hostapp.types import KIND_NAMES, Contribution

if TYPE_CHECKING:
    from hostapp.config import Config
    from hostapp.discovery import DiscoveryOptions

__all__ = ["AsyncHookCaller", "AsyncHookRelay", "HookError", "PluginManager"]

logger = logging.getLogger("hostapp")

_CoroutineType = types.CoroutineType


@dataclasses.dataclass(frozen=True, slots=True)
class HookError:
    """An exception an isolated hook implementation raised, as recorded by the manager.

    Attributes:
        hook: the hook name (``"hostapp_startup"``).
        plugin: the plugin whose implementation raised.
        error: ``"ExceptionType: message"``.
        traceback: the formatted traceback.
        timestamp_ns: when it happened (``time.time_ns()``).
    """

    hook: str
    plugin: str
    error: str
    traceback: str
    timestamp_ns: int

    def to_dict(self) -> dict[str, Any]:
        """A JSON-serialisable dict of the fields."""
        return dataclasses.asdict(self)


class _Registry(dict):  # type: ignore[type-arg]
    """pluggy's name -> plugin dict, with an O(1) ``plugin in values()``.

    ``pluggy.PluginManager.register`` refuses a plugin registered under another name by
    testing ``plugin in self._name2plugin.values()``, a scan of every registered plugin,
    which makes registering N plugins O(N^2). This dict keeps an identity count beside the
    mapping so that test is a dict lookup.
    """

    __slots__ = ("_ids",)

    def __init__(self) -> None:
        super().__init__()
        self._ids: collections.Counter[int] = collections.Counter()

    def __setitem__(self, key: str, value: object) -> None:
        if key in self:
            self._forget(dict.__getitem__(self, key))
        dict.__setitem__(self, key, value)
        self._ids[id(value)] += 1

    def __delitem__(self, key: str) -> None:
        self._forget(dict.__getitem__(self, key))
        dict.__delitem__(self, key)

    def pop(self, key: str, *default: object) -> object:
        if key in self:
            self._forget(dict.__getitem__(self, key))
        return dict.pop(self, key, *default)

    def clear(self) -> None:
        dict.clear(self)
        self._ids.clear()

    def _forget(self, value: object) -> None:
        count = self._ids[id(value)] - 1
        if count:
            self._ids[id(value)] = count
        else:
            del self._ids[id(value)]

    def values(self) -> _RegistryValues:  # type: ignore[override]
        return _RegistryValues(self)


class _RegistryValues:
    __slots__ = ("_registry",)

    def __init__(self, registry: _Registry) -> None:
        self._registry = registry

    def __contains__(self, value: object) -> bool:
        return id(value) in self._registry._ids

    def __iter__(self) -> Iterator[object]:
        return iter(dict.values(self._registry))

    def __len__(self) -> int:
        return len(self._registry)


class _HookCaller(pluggy.HookCaller):
    """A ``HookCaller`` whose ``_add_hookimpl`` does not scan every implementation.

    pluggy finds the wrapper split point by walking the implementation list from the
    start, so N plugins implementing one hook cost O(N^2) to register. The list is
    partitioned (non-wrappers, then wrappers), so walking back from the end over the
    wrappers finds the same split point in O(wrappers). The resulting order is exactly
    pluggy's.
    """

    __slots__ = ()

    def _add_hookimpl(self, hookimpl: pluggy.HookImpl) -> None:
        impls = self._hookimpls
        split = len(impls)
        while split and (impls[split - 1].wrapper or impls[split - 1].hookwrapper):
            split -= 1
        if hookimpl.hookwrapper or hookimpl.wrapper:
            start, end = split, len(impls)
        else:
            start, end = 0, split
        if hookimpl.trylast:
            impls.insert(start, hookimpl)
        elif hookimpl.tryfirst:
            impls.insert(end, hookimpl)
        else:
            i = end - 1
            while i >= start and impls[i].tryfirst:
                i -= 1
            impls.insert(i + 1, hookimpl)


class PluginManager(pluggy.PluginManager):
    """The hostapp plugin manager: a :class:`pluggy.PluginManager` for project ``hostapp``.

    Args:
        hookspecs: add hostapp's own hookspecs (:mod:`hostapp.hookspecs`); ``False`` gives
            a bare manager for a host application with only its own hookspecs.

    Attributes:
        ahook: the async relay; ``await pm.ahook.NAME(**kwargs)``.
        candidates: every :class:`PluginInfo` seen by :meth:`load`, shadowed ones included,
            in discovery order.
        infos: the non-shadowed candidates by name.
        hook_errors: the most recent 1,000 :class:`HookError` records of isolated hooks.
        error_listeners: callables ``listener(HookError)`` called on each isolated error
            (the host uses it to mark plugins failed at ``configure``/``start``).
        calls: the :class:`~hostapp._bounded.PluginCalls` plugin code runs through (a
            host gives its own, whose asyncio loop is the host's).
        call_timeout: seconds each plugin call (an import, a registration hook
            implementation, a call hook implementation) may take; ``None``: no bound.
            :meth:`load` sets it from ``host.start_timeout``.
        call_timeout_setting: the setting named when a call times out.
    """

    def __init__(self, *, hookspecs: bool = True) -> None:
        super().__init__("hostapp")
        self._name2plugin = _Registry()  # type: ignore[misc]
        self.ahook = AsyncHookRelay(self)
        self.candidates: list[PluginInfo] = []
        self.infos: dict[str, PluginInfo] = {}
        self.hook_errors: collections.deque[HookError] = collections.deque(maxlen=1000)
        self.error_listeners: list[Callable[[HookError], None]] = []
        self._recording: list[str] | None = None
        self._pending_states: list[PluginInfo] | None = None
        self._generation = 0  # bumped when hookspecs change; the async relay re-plans
        self.calls = PluginCalls()
        self.call_timeout: float | None = 10.0
        self.call_timeout_setting = "host.start_timeout"
        if hookspecs:
            self.add_hookspecs(_hostapp_hookspecs)

    # -- pluggy overrides -----------------------------------------------------------------

    def add_hookspecs(self, module_or_class: object) -> None:
        """Add the hookspecs found in ``module_or_class`` (pluggy's method).

        hostapp's own :func:`hostapp.hookspec` options (``required``, ``isolate``,
        ``collect``) are honoured; a spec made with plain ``pluggy.HookspecMarker("hostapp")``
        gets the defaults.

        Raises:
            ValueError: no hookspec of project ``hostapp`` found (pluggy's error).
        """
        for name in dir(module_or_class):
            if self.parse_hookspec_opts(module_or_class, name) is not None:  # type: ignore[arg-type]
                if getattr(self.hook, name, None) is None:
                    setattr(self.hook, name, _HookCaller(name, self._hookexec))
        super().add_hookspecs(module_or_class)  # type: ignore[arg-type]
        self._generation += 1

    def parse_hookimpl_opts(self, plugin: object, name: str) -> pluggy.HookimplOpts | None:
        """pluggy's method; also records the hook names of the plugin being registered."""
        opts = super().parse_hookimpl_opts(plugin, name)
        if opts is not None and self._recording is not None:
            self._recording.append(opts.get("specname") or name)
        return opts

    def _verify_hook(self, hook: pluggy.HookCaller, hookimpl: pluggy.HookImpl) -> None:
        super()._verify_hook(hook, hookimpl)
        if (
            spec_options(hook).isolate
            and not (hookimpl.wrapper or hookimpl.hookwrapper)
            and not getattr(hookimpl.function, "__hostapp_isolated__", False)
        ):
            hookimpl.function = self._isolating(hook.name, hookimpl)  # type: ignore[misc]

    def _isolating(self, hook_name: str, hookimpl: pluggy.HookImpl) -> Callable[..., Any]:
        function = hookimpl.function
        plugin_name = hookimpl.plugin_name
        report = self._report_hook_error

        @functools.wraps(function)
        def isolated(*args: Any) -> Any:
            try:
                return function(*args)
            except Exception as exc:
                report(hook_name, plugin_name, exc)
                return None

        isolated.__hostapp_isolated__ = True  # type: ignore[attr-defined]
        return isolated

    def _report_hook_error(self, hook_name: str, plugin_name: str, exc: BaseException) -> None:
        record = HookError(
            hook=hook_name,
            plugin=plugin_name,
            error=f"{type(exc).__name__}: {exc}",
            traceback="".join(traceback.format_exception(exc)),
            timestamp_ns=time.time_ns(),
        )
        self.hook_errors.append(record)
        info = self.infos.get(plugin_name)
        where = f" ({info.provenance})" if info is not None else ""
        if isinstance(exc, PluginTimeoutError):
            logger.warning("plugin %r%s, hook %r: %s", plugin_name, where, hook_name, exc)
        else:
            logger.warning("plugin %r%s raised in hook %r: %s", plugin_name, where, hook_name, record.error)
        for listener in list(self.error_listeners):
            try:
                listener(record)
            except Exception:  # a broken listener must not break the hook call
                logger.exception("hook error listener %r raised", listener)

    # -- registration -------------------------------------------------------------------

    def register_plugin(self, info: PluginInfo) -> bool:
        """Register ``info.obj`` under ``info.name``; record its hooks and state.

        Returns:
            ``True`` when registered, ``False`` when it failed (``info`` is then
            ``failed`` at stage ``register`` with the pluggy validation error).
        """
        other = self.get_name(info.obj)
        if other is not None and other != info.name:
            # one module named by two sources (plugins.modules and an entry point): loaded once
            first = self.infos.get(other)
            info.state = PluginState.SHADOWED
            info.shadowed_by = f"{first.source.value} {first.location or first.value}" if first else other
            info.shadowed_by += f" (plugin {other!r}, the same object)"
            info.obj = None
            self._notify(info)
            return False
        self._recording = []
        try:
            self.register(info.obj, name=info.name)
        except Exception as exc:
            info.fail("register", exc)
            self._notify(info)
            return False
        finally:
            hooks, self._recording = self._recording, None
        info.hooks = sorted(set(hooks))
        unknown = self._unknown_hostapp_hooks(info.obj, info.hooks)
        if unknown:
            self.unregister(info.obj)
            info.fail(
                "register",
                pluggy.PluginValidationError(
                    info.obj,
                    f"plugin {info.name!r} implements unknown hook(s) {', '.join(unknown)}; "
                    "check the spelling against 'hostapp hooks', or mark the implementation "
                    "@hostapp.hookimpl(optionalhook=True)",
                ),
            )
            self._notify(info)
            return False
        self.infos[info.name] = info
        self._set_state(info, PluginState.REGISTERED)
        return True

    def _unknown_hostapp_hooks(self, plugin: object, hooks: Iterable[str]) -> list[str]:
        """``hostapp_*`` hooks ``plugin`` implements that have no hookspec (a misspelling).

        Hooks of other prefixes may belong to hookspecs a host application adds later;
        ``check_pending()`` catches those.
        """
        unknown = []
        for name in hooks:
            hook = getattr(self.hook, name)
            if hook.spec is None and name.startswith("hostapp_"):
                impls = [i for i in hook.get_hookimpls() if i.plugin is plugin]
                if any(not i.optionalhook for i in impls):
                    unknown.append(name)
        return unknown

    def register_plugins(self, infos: Iterable[PluginInfo]) -> list[PluginInfo]:
        """Register many plugins in hostapp's deterministic order; linear in their number.

        Call order, which every hook then follows (before ``tryfirst``/``trylast``):
        higher ``priority`` first; equal priorities by name, A to Z. pluggy calls the
        most recently registered implementation first, so the plugins are registered in
        the reverse of that order.

        Args:
            infos: records in state ``imported`` with ``obj`` set.

        Returns:
            the records that were registered, in call order.
        """
        ordered = sorted(infos, key=lambda i: (-i.priority, i.name))
        for info in reversed(ordered):
            self.register_plugin(info)
        return [i for i in ordered if i.state is PluginState.REGISTERED]

    # -- loading through the discovery adapter -------------------------------------------------

    def load(
        self,
        config: Config | None = None,
        *,
        explicit: Sequence[tuple[str, object]] = (),
        options: DiscoveryOptions | None = None,
        strict: bool | None = None,
        environ: Mapping[str, str] | None = None,
    ) -> list[PluginInfo]:
        """Discover, filter, import and register plugins; return every candidate's record.

        Args:
            config: the configuration (``[plugins]`` gives the sources and filters); the
                default configuration when ``None``.
            explicit: ``(name, plugin)`` pairs registered by the host program or a test
                (source ``explicit``, first in precedence, never filtered).
            options: discovery options; derived from ``config`` when ``None``.
            strict: make any failure fatal; default from ``config`` (``plugins.strict``,
                ``HOSTAPP_STRICT``).
            environ: the environment for ``HOSTAPP_*`` variables (default ``os.environ``).

        A plugin object may be a module, a class (instantiated with no arguments), an
        instance, or a function decorated with ``@hostapp.hookimpl`` (a one-hook plugin).
        Its optional ``hostapp_plugin_meta`` dict (``tags``, ``priority``,
        ``description``) fills what discovery did not set; tag filters are applied again
        to tags declared that way.

        State transitions made while loading are delivered to ``hostapp_plugin_state``
        after loading, in order, so every listener sees every plugin's transitions.

        Returns:
            every candidate (``filtered``, ``shadowed``, ``registered``, ``failed``...).

        A plugin implementing a ``hostapp_*`` hook that has no hookspec (a misspelling)
        fails at stage ``register``.

        Raises:
            PluginLoadError: in strict mode, at the first plugin that fails, naming it,
                its provenance, the stage and the error.
            ConfigError: a filter pattern is invalid.
            HostappError: ``load()`` was already called on this manager.
        """
        from hostapp.config import Config
        from hostapp.discovery import discover

        if self.candidates:
            raise HostappError("PluginManager.load() was already called on this manager; make a new one")
        if config is None:
            config = Config.default()
        if options is None:
            options = config.discovery_options(environ=environ)
        if strict is None:
            strict = config.strict
        timeout = config.get("host.start_timeout")
        if timeout is not None:
            self.call_timeout = float(timeout)
        self._pending_states = []
        try:
            infos = discover(options, explicit=explicit, environ=environ)
            self.candidates.extend(infos)
            for info in infos:
                self._notify(info)
                if info.state is not PluginState.SHADOWED:
                    self.infos.setdefault(info.name, info)
            imported = self._import_all([i for i in infos if i.state is PluginState.DISCOVERED], options, config)
            if strict:
                self._raise_if_failed(infos)
            self.register_plugins(imported)
            if strict:
                self._raise_if_failed(infos)
        finally:
            pending, self._pending_states = self._pending_states, None
            self._deliver_states(pending)
        return infos

    def _import_all(self, infos: list[PluginInfo], options: DiscoveryOptions, config: Config) -> list[PluginInfo]:
        """Import every candidate; the ones imported, applicable and not filtered.

        For each: ``requires`` first (no import when unmet), then, as one bounded call on a
        helper thread (:attr:`calls`), the import, the instance and ``should_load(config)``;
        then the declared metadata and the tag filters.
        """
        from hostapp.discovery import tag_filter_rule

        todo = []
        for info in infos:
            reason = _unmet_requirements(info)
            if reason is not None:
                info.rule = reason
                self._set_state(info, PluginState.NOT_APPLICABLE)
                continue
            todo.append(info)
        outcomes = self.calls.each(
            [functools.partial(_import_plugin, info, options.root, config) for info in todo], self.call_timeout,
        )
        imported = []
        for info, outcome in zip(todo, outcomes):
            if not outcome.ok:
                error = outcome.error
                stage = "import"
                if isinstance(error, _StageError):
                    stage, error = error.stage, error.error
                info.fail(stage, error if error is not None else self._timeout_error(outcome))
                self._notify(info)
                continue
            obj, plugin, reason = outcome.value
            info.obj = plugin
            _apply_declared_meta(info, obj)
            self._set_state(info, PluginState.IMPORTED)
            if reason is not None:
                info.rule, info.obj = reason, None
                self._set_state(info, PluginState.NOT_APPLICABLE)
                continue
            if info.source is not Source.EXPLICIT and info.name not in options.force:
                rule = tag_filter_rule(info.tags, options)
                if rule is not None:
                    info.rule = f"{rule} (tags declared by the plugin)"
                    info.obj = None
                    self._set_state(info, PluginState.FILTERED)
                    continue
            imported.append(info)
        return imported

    def _timeout_error(self, outcome: Outcome, setting: str | None = None) -> PluginTimeoutError:
        return PluginTimeoutError(outcome.describe(setting or self.call_timeout_setting))

    def _raise_if_failed(self, infos: Iterable[PluginInfo]) -> None:
        for info in infos:
            if info.state is PluginState.FAILED:
                raise PluginLoadError(
                    info,
                    f"plugin {info.name!r} from {info.provenance} failed at "
                    f"{info.stage}: {info.error} (strict mode)",
                )

    def fail_plugin(
        self, name: str, stage: str, error: str, traceback: str | None = None, *, withdraw: bool = False
    ) -> PluginInfo | None:
        """Mark plugin ``name`` failed at ``stage``, and with ``withdraw`` take it out.

        Args:
            name: the plugin's name.
            stage: ``"configure"``, ``"start"``, ``"sink-open"``...
            error: ``"ExceptionType: message"``.
            traceback: the formatted traceback.
            withdraw: unregister its hook implementations, so that it contributes nothing
                more: no processors, sinks, tasks, drivers or renderers are collected from
                it and none of its hooks is called (safe while a hook is being called:
                pluggy calls a copy of the implementation list). Its record stays in
                :attr:`infos`.

        Returns:
            its record, or ``None`` when no such plugin is known or it had failed already
            (it is withdrawn all the same when asked).
        """
        info = self.infos.get(name)
        if info is None:
            return None
        if withdraw and info.obj is not None and self.is_registered(info.obj):
            self.unregister(info.obj)
        if info.state is PluginState.FAILED:
            return None
        info.stage, info.error, info.traceback = stage, error, traceback
        self._set_state(info, PluginState.FAILED)
        return info

    def configure(self, config: Config) -> list[PluginInfo]:
        """Call ``hostapp_configure(config)`` of every plugin (each a bounded call,
        :meth:`call_each`); every plugin whose implementation raises or does not return in
        time is failed at stage ``configure`` and withdrawn (:meth:`fail_plugin`): a plugin
        that cannot configure itself contributes nothing.

        Returns:
            the records of the plugins that failed.
        """
        failed: list[PluginInfo] = []

        def on_error(record: HookError) -> None:
            if record.hook == "hostapp_configure":
                info = self.fail_plugin(record.plugin, "configure", record.error, record.traceback, withdraw=True)
                if info is not None:
                    failed.append(info)

        self.error_listeners.insert(0, on_error)
        try:
            self.call_each("hostapp_configure", {"config": config})
        finally:
            self.error_listeners.remove(on_error)
        return failed

    async def aconfigure(self, config: Config) -> list[PluginInfo]:
        """:meth:`configure` from async code (waited for in a thread)."""
        import asyncio

        return await asyncio.to_thread(self.configure, config)

    def set_state(self, info: PluginInfo, state: PluginState) -> None:
        """Move ``info`` to ``state`` and report it to ``hostapp_plugin_state``."""
        self._set_state(info, state)

    def _set_state(self, info: PluginInfo, state: PluginState) -> None:
        info.state = state
        self._notify(info)

    def _notify(self, info: PluginInfo) -> None:
        snapshot = dataclasses.replace(info, hooks=list(info.hooks))
        if self._pending_states is not None:
            self._pending_states.append(snapshot)
        else:
            self._deliver_states([snapshot])

    def _deliver_states(self, snapshots: Sequence[PluginInfo]) -> None:
        """Give ``snapshots`` to every ``hostapp_plugin_state`` listener, in order (each
        listener one bounded call for all of them)."""
        hook = self.hook.hostapp_plugin_state
        if not snapshots or not hook.get_hookimpls():
            return
        impls = [i for i in reversed(hook.get_hookimpls()) if not (i.wrapper or i.hookwrapper)]
        self._call_impls(
            "hostapp_plugin_state", impls, [{"info": s} for s in snapshots], self.call_timeout, None, None,
        )

    # -- introspection -------------------------------------------------------------------

    def missing_required(self) -> list[str]:
        """Names of the ``required=True`` hooks that no plugin implements (wrappers don't count)."""
        missing = []
        for name, hook in sorted(vars(self.hook).items()):
            if isinstance(hook, pluggy.HookCaller) and spec_options(hook).required:
                if not any(not (i.wrapper or i.hookwrapper) for i in hook.get_hookimpls()):
                    missing.append(name)
        return missing

    def check_required(self) -> None:
        """Raise :class:`~hostapp.errors.MissingHookError` listing every required hook
        without an implementation; the host calls it before it starts anything."""
        from hostapp.errors import MissingHookError

        missing = self.missing_required()
        if missing:
            raise MissingHookError(missing)

    def hook_table(self) -> list[dict[str, Any]]:
        """Every hookspec with its implementations in call order (``hostapp hooks --json``).

        Returns:
            ``[{"name", "kind": "registration"|"call", "firstresult", "historic",
            "required", "isolate", "spec_type", "doc", "implementations": [{"plugin",
            "tryfirst", "trylast", "wrapper", "async"}]}]`` sorted by hook name.
        """
        rows = []
        for name, hook in sorted(vars(self.hook).items()):
            if not isinstance(hook, pluggy.HookCaller) or hook.spec is None:
                continue
            opts = spec_options(hook)
            impls = []
            for impl in reversed(hook.get_hookimpls()):
                function = inspect.unwrap(impl.function)
                impls.append(
                    {
                        "plugin": impl.plugin_name,
                        "tryfirst": bool(impl.tryfirst),
                        "trylast": bool(impl.trylast),
                        "wrapper": bool(impl.wrapper or impl.hookwrapper),
                        "async": inspect.iscoroutinefunction(function),
                    }
                )
            doc = inspect.getdoc(hook.spec.function) or ""
            rows.append(
                {
                    "name": name,
                    "kind": "registration" if opts.collect is not None else "call",
                    "firstresult": bool(hook.spec.opts.get("firstresult")),
                    "historic": bool(hook.spec.opts.get("historic")),
                    "required": opts.required,
                    "isolate": opts.isolate,
                    "spec_type": opts.collect.__name__ if opts.collect is not None else None,
                    "doc": doc.split("\n\n", 1)[0].replace("\n", " "),
                    "implementations": impls,
                }
            )
        return rows

    def provided(self) -> dict[str, dict[str, list[str]]]:
        """What each plugin contributes: ``{plugin: {registration hook without "hostapp_":
        [names]}}``, from calling each registration hook once (a plugin whose hook raises
        is reported, as by :meth:`collect`)."""
        provides: dict[str, dict[str, list[str]]] = {}
        for hook_name in _hostapp_hookspecs.REGISTRATION_HOOKS:
            for contribution in self.collect(hook_name, on_conflict="report"):
                short = hook_name.removeprefix("hostapp_")
                provides.setdefault(contribution.plugin, {}).setdefault(short, []).append(contribution.name)
        return provides

    def plugin_rows(
        self,
        *,
        show_all: bool = True,
        hook: str | None = None,
        provides: Mapping[str, dict[str, list[str]]] | None = None,
    ) -> list[dict[str, Any]]:
        """Every plugin candidate as ``hostapp plugins --json`` lists it (and ``GET
        /api/plugins``): :meth:`PluginInfo.to_dict` plus ``provides`` (see :meth:`provided`)
        and ``hook_errors`` (``[{"hook", "error"}]`` of the isolated hook errors recorded).

        Args:
            show_all: also hostapp's built-in plugins and shadowed candidates.
            hook: only plugins implementing this hook.
            provides: the result of :meth:`provided` to use (a server computes it once);
                default: computed now.
        """
        if provides is None:
            provides = self.provided()
        errors: dict[str, list[dict[str, Any]]] = {}
        for record in self.hook_errors:
            errors.setdefault(record.plugin, []).append({"hook": record.hook, "error": record.error})
        rows = []
        for info in self.candidates:
            if not show_all and (info.builtin or info.state is PluginState.SHADOWED):
                continue
            if hook is not None and hook not in info.hooks:
                continue
            row = info.to_dict()
            row["provides"] = provides.get(info.name, {})
            row["hook_errors"] = errors.get(info.name, [])
            rows.append(row)
        return rows

    # -- registration hooks -------------------------------------------------------------------

    def collect(
        self, hook_name: str, *, on_conflict: Literal["raise", "report"] = "raise"
    ) -> list[Contribution[Any]]:
        """Call registration hook ``hook_name`` and return its flattened, tagged results.

        Each implementation may return one spec object, an iterable (a list, a
        generator) of them, or ``None``. Implementations are called in call order, so the
        contributions of a higher-priority plugin come first.

        Args:
            hook_name: a registration hook, e.g. ``"hostapp_event_sinks"``.
            on_conflict: two contributions with the same ``name``: ``"raise"`` a
                :class:`~hostapp.errors.DuplicateNameError`, or ``"report"`` it as a hook
                error of the second plugin and keep the first.

        Returns:
            ``[Contribution(spec, plugin, distribution, version), ...]``.

        Raises:
            DuplicateNameError: two plugins contribute the same name (``on_conflict="raise"``).
            ValueError: ``hook_name`` is not a registration hook.

        Each implementation is a bounded call (:attr:`call_timeout`, on a helper thread);
        one that is ``async def`` (or returns an awaitable or an async generator) is awaited
        on the loop of :attr:`calls`. A plugin whose implementation raises (also while its
        generator runs; ``SystemExit`` included), does not return in time, or returns an
        object of the wrong type is reported with its name and all of its contributions to
        this hook are skipped.
        """
        hook, expected = self._registration_hook(hook_name)
        impls = _registration_impls(hook)
        outcomes = self.calls.each([_registration_call(impl) for impl in impls], self.call_timeout)
        results: list[tuple[str, object]] = [
            (impl.plugin_name, outcome.value if outcome.ok else _Raised(outcome.error or self._timeout_error(outcome)))
            for impl, outcome in zip(impls, outcomes)
        ]
        return self._contributions(hook_name, expected, results, on_conflict)

    async def acollect(
        self, hook_name: str, *, on_conflict: Literal["raise", "report"] = "raise"
    ) -> list[Contribution[Any]]:
        """:meth:`collect` from async code (the calls are waited for in a thread).

        Same arguments, result and errors.
        """
        import asyncio

        return await asyncio.to_thread(self.collect, hook_name, on_conflict=on_conflict)

    def _contributions(
        self,
        hook_name: str,
        expected: type,
        results: list[tuple[str, object]],
        on_conflict: str,
    ) -> list[Contribution[Any]]:
        """Flatten, check and tag each plugin's result; report a plugin that broke the
        contract (its generator included) and skip all of its contributions."""
        out: list[Contribution[Any]] = []
        seen: dict[str, Contribution[Any]] = {}
        for plugin, result in results:
            if isinstance(result, _Raised):
                self._report_hook_error(hook_name, plugin, result.exc)
                continue
            try:
                specs = self._flatten(plugin, hook_name, expected, result)
            except Exception as exc:
                self._report_hook_error(hook_name, plugin, exc)
                continue
            self._add_contributions(hook_name, plugin, specs, out, seen, on_conflict)
        return out

    # -- call hooks, bounded --------------------------------------------------------------

    def call_each(
        self,
        hook_name: str,
        kwargs: Mapping[str, Any] | None = None,
        *,
        timeout: float | None | Literal["default"] = "default",
        deadline: float | None = None,
        setting: str | None = None,
    ) -> list[tuple[str, Outcome]]:
        """Call every implementation of call hook ``hook_name`` in call order, each a bounded
        call, and report each that fails as an isolated hook does (``hook_errors``,
        ``error_listeners``, a warning).

        How the host calls ``hostapp_configure``, ``hostapp_startup`` and
        ``hostapp_shutdown``. An ``async def`` implementation is awaited on the loop of
        :attr:`calls`. When the hook has wrappers (``wrapper=True``/``hookwrapper=True``),
        the whole call is one bounded call through :attr:`ahook`, reported as the
        wrappers' plugins.

        Args:
            hook_name: a hook with a hookspec.
            kwargs: the hook's arguments by name (the spec's defaults fill the rest).
            timeout: seconds each implementation may take (default :attr:`call_timeout`;
                ``None``: no bound).
            deadline: a :func:`time.monotonic` time all of them must end by, or ``None``.
            setting: the setting named when one times out (default
                :attr:`call_timeout_setting`).

        Returns:
            ``[(plugin name, Outcome), ...]`` in call order; ``Outcome.value`` is what the
            implementation returned (awaited).

        Raises:
            AttributeError: no hook named ``hook_name``.
            KeyboardInterrupt: Ctrl-C while waiting.
        """
        hook = getattr(self.hook, hook_name)
        bound = self.call_timeout if timeout == "default" else timeout
        arguments = dict(hook.spec.kwargdefaults or {}) if hook.spec is not None else {}
        arguments.update(kwargs or {})
        impls = list(reversed(hook.get_hookimpls()))
        wrappers = [i for i in impls if i.wrapper or i.hookwrapper]
        if wrappers:
            relay = getattr(self.ahook, hook_name)
            [outcome] = self.calls.each([lambda: relay(**arguments)], bound, deadline=deadline)  # type: ignore[arg-type]
            plugin = ", ".join(i.plugin_name for i in wrappers)
            if not outcome.ok:
                self._report_hook_error(hook_name, plugin, outcome.error or self._timeout_error(outcome, setting))
            return [(plugin, outcome)]
        return self._call_impls(hook_name, impls, [arguments], bound, deadline, setting)

    def _call_impls(
        self,
        hook_name: str,
        impls: Sequence[pluggy.HookImpl],
        arguments: Sequence[Mapping[str, Any]],
        timeout: float | None,
        deadline: float | None,
        setting: str | None,
    ) -> list[tuple[str, Outcome]]:
        """Each implementation one bounded call, made once per mapping of ``arguments``
        (its value: the last result); failures reported as isolated hook errors."""
        outcomes = self.calls.each(
            [_impl_call(impl, arguments) for impl in impls], timeout, deadline=deadline,
        )
        for impl, outcome in zip(impls, outcomes):
            if outcome.ok:
                continue
            error = outcome.error or self._timeout_error(outcome, setting)
            self._report_hook_error(hook_name, impl.plugin_name, error)
            if outcome.timed_out:  # abandoned: none of its hooks is called again
                self.fail_plugin(
                    impl.plugin_name, hook_name.removeprefix("hostapp_"), describe_error(error), withdraw=True,
                )
        return [(impl.plugin_name, outcome) for impl, outcome in zip(impls, outcomes)]

    def _registration_hook(self, hook_name: str) -> tuple[pluggy.HookCaller, type]:
        hook = getattr(self.hook, hook_name, None)
        if hook is None or hook.spec is None or spec_options(hook).collect is None:
            raise ValueError(f"{hook_name!r} is not a registration hook (a hookspec with collect=...)")
        return hook, spec_options(hook).collect  # type: ignore[return-value]

    def _flatten(self, plugin: str, hook_name: str, expected: type, result: object) -> list[Any]:
        if result is None:
            return []
        items = [result] if isinstance(result, expected) else result
        if isinstance(items, (str, bytes, Mapping)) or not isinstance(items, Iterable):
            items = [items]
        specs = []
        for item in items:  # type: ignore[union-attr]
            if not isinstance(item, expected):
                info = self.infos.get(plugin)
                where = f" ({info.provenance})" if info is not None else ""
                raise PluginContractError(
                    f"plugin {plugin!r}{where} returned {type(item).__name__} from {hook_name}; "
                    f"expected hostapp.{expected.__name__} objects"
                )
            specs.append(item)
        return specs

    def _add_contributions(
        self,
        hook_name: str,
        plugin: str,
        specs: list[Any],
        out: list[Contribution[Any]],
        seen: dict[str, Contribution[Any]],
        on_conflict: str,
    ) -> None:
        info = self.infos.get(plugin)
        dist = info.distribution if info is not None else None
        version = info.version if info is not None else None
        for spec in specs:
            contribution = Contribution(spec, plugin, dist, version)
            first = seen.get(spec.name)
            if first is not None:
                kind = KIND_NAMES.get(type(spec), type(spec).__name__)
                error = DuplicateNameError(
                    f"{kind} {spec.name!r} is contributed by {first.describe()} and by "
                    f"{contribution.describe()}; disable one of them (plugins.disable) or rename it"
                )
                if on_conflict == "raise":
                    raise error
                self._report_hook_error(hook_name, plugin, error)
                continue
            seen[spec.name] = contribution
            out.append(contribution)


@dataclasses.dataclass(frozen=True, slots=True)
class _Raised:
    """What a registration implementation raised, kept until its turn to be reported."""

    exc: BaseException


class _StageError(Exception):
    """What a plugin raised after its import: when made into a plugin object (stage
    ``instantiate``) or in its ``should_load`` (stage ``should_load``)."""

    def __init__(self, stage: str, error: BaseException) -> None:
        super().__init__(str(error))
        self.stage = stage
        self.error = error


def _import_plugin(info: PluginInfo, root: str | None, config: Config) -> tuple[object, object, str | None]:
    """Import a candidate, make its plugin object and ask its ``should_load``; a bounded call
    of :meth:`PluginManager.load`.

    Returns:
        ``(the object the candidate names, the plugin registered with pluggy, why it does
        not apply or None)``.

    Raises:
        _StageError: making the plugin object, or ``should_load``, raised (the cause inside).
        BaseException: whatever importing raised.
    """
    from hostapp.discovery import load_object

    obj = load_object(info, root=root)
    try:
        plugin = _as_plugin(obj, info.name)
    except BaseException as exc:  # noqa: BLE001 - reported as the plugin's, at stage instantiate
        raise _StageError("instantiate", exc) from exc
    try:
        reason = _should_not_load(plugin, config)
    except BaseException as exc:  # noqa: BLE001 - reported as the plugin's, at stage should_load
        raise _StageError("should_load", exc) from exc
    return obj, plugin, reason


def _registration_call(impl: pluggy.HookImpl) -> Callable[[], Any]:
    """The bounded call of one registration implementation: its result with generators run
    to the end (an async one, or an awaitable, is given back as a coroutine to await)."""
    function = inspect.unwrap(impl.function)

    def call() -> Any:
        result = function()
        if inspect.isasyncgen(result) or inspect.isawaitable(result):
            return _settle(result)
        if isinstance(result, Iterator) and not isinstance(result, (str, bytes)):
            return list(result)
        return result

    return call


async def _settle(result: Any) -> Any:
    if inspect.isasyncgen(result):
        return [item async for item in result]
    value = await result
    if inspect.isasyncgen(value):
        return [item async for item in value]
    return list(value) if isinstance(value, Iterator) else value


def _impl_call(impl: pluggy.HookImpl, arguments: Sequence[Mapping[str, Any]]) -> Callable[[], Any]:
    """The bounded call of one call-hook implementation, once per mapping in ``arguments``
    (the isolating wrapper taken off: what it raises is the outcome's error)."""
    function = inspect.unwrap(impl.function)
    argnames = tuple(impl.argnames)

    def call() -> Any:
        result = None
        for kwargs in arguments:
            try:
                args = [kwargs[name] for name in argnames]
            except KeyError as exc:
                raise pluggy.HookCallError(f"hook call must provide argument {exc.args[0]!r}") from None
            result = resolve(function(*args))
        return result

    return call


def _registration_impls(hook: pluggy.HookCaller) -> list[pluggy.HookImpl]:
    """The non-wrapper implementations of ``hook`` in call order."""
    return [i for i in reversed(hook.get_hookimpls()) if not (i.wrapper or i.hookwrapper)]


#: How data that a plugin source names becomes a plugin: ``"module:function"`` references,
#: each ``adapt(obj, name) -> plugin | None``, tried in order for a mapping, a list or
#: tuple, or a spec object (anything else is registered as it is). The default turns Kolo
#: processor configs into a plugin (:func:`hostapp.tracing.kolo.adapt`). An adapter's
#: module is imported only when such an object is met, so the plugin manager does not
#: depend on the code the adapters serve.
OBJECT_ADAPTERS: tuple[str, ...] = ("hostapp.tracing.kolo:adapt",)


def _as_plugin(obj: object, name: str | None = None) -> object:
    """Turn what a plugin source names into the object registered with pluggy.

    A class is instantiated; an ``@hookimpl`` function becomes a :class:`FunctionPlugin`;
    data (a mapping, a list or tuple, a spec object) goes through :data:`OBJECT_ADAPTERS`
    (a Kolo processor config becomes a plugin contributing its processors).

    Raises:
        ValueError: an adapter found the data malformed (the message names the plugin
            and the key).
    """
    if isinstance(obj, type):
        return obj()
    if inspect.isfunction(obj) and getattr(obj, "hostapp_impl", None) is not None:
        return FunctionPlugin(obj)
    if isinstance(obj, (Mapping, list, tuple)) or type(obj).__module__ == "hostapp.types":
        import importlib

        for reference in OBJECT_ADAPTERS:
            module, _, attr = reference.partition(":")
            plugin = getattr(importlib.import_module(module), attr)(obj, name)
            if plugin is not None:
                return plugin
    return obj


class FunctionPlugin:
    """A plugin made of one ``@hookimpl`` function (plux's function plugins).

    The function is an attribute under its own name, so pluggy finds it as usual.
    Hashable by identity, as pluggy requires of plugins.
    """

    def __init__(self, function: Callable[..., Any]) -> None:
        setattr(self, function.__name__, function)

    def __repr__(self) -> str:
        [function] = vars(self).values()
        return f"<FunctionPlugin {function.__module__}.{function.__qualname__}>"


def _unmet_requirements(info: PluginInfo) -> str | None:
    """Why ``info``'s ``requires`` (and its entry point's extras) are not met, or ``None``;
    from installed metadata, before anything of the plugin is imported."""
    from hostapp.discovery.requires import entry_point_extras, extra_requirements, unmet

    requires = list(info.requires)
    if info.source is Source.ENTRY_POINT and info.location and "[" in (info.value or ""):
        requires += extra_requirements(info.location, entry_point_extras(info.value))
    return unmet(requires) if requires else None


def _should_not_load(plugin: object, config: Config) -> str | None:
    """Ask the plugin's ``should_load`` (plux's ``Plugin.should_load``): a module-level
    function or a method, ``should_load(config) -> bool`` (or without arguments).

    Returns:
        ``None`` to load it; the reason it does not apply: ``"should_load: " + the
        message of the :class:`~hostapp.errors.NotApplicable` it raised``, or
        ``"should_load() returned False"``.

    Raises:
        Exception: whatever else ``should_load`` raised (a load failure).
    """
    from hostapp.errors import NotApplicable

    should_load = getattr(plugin, "should_load", None)
    if not callable(should_load) or getattr(should_load, "hostapp_impl", None) is not None:
        return None
    try:
        takes_config = bool(inspect.signature(should_load).parameters)
    except (TypeError, ValueError):
        takes_config = True
    try:
        answer = should_load(config) if takes_config else should_load()
    except NotApplicable as exc:
        return f"should_load: {exc}"
    return None if answer else "should_load() returned False"


def _apply_declared_meta(info: PluginInfo, obj: object) -> None:
    meta = getattr(obj, "hostapp_plugin_meta", None)
    if not isinstance(meta, Mapping):
        return
    if not info.tags and isinstance(meta.get("tags"), (list, tuple)):
        info.tags = tuple(str(t) for t in meta["tags"])
    priority = meta.get("priority")
    if info.priority == 0 and isinstance(priority, int) and not isinstance(priority, bool):
        info.priority = priority
    if info.description is None and isinstance(meta.get("description"), str):
        info.description = meta["description"]


# -- the async relay ----------------------------------------------------------------------


class AsyncHookRelay:
    """``pm.ahook``: ``await pm.ahook.NAME(**kwargs)`` for every hook of the manager.

    Raises:
        AttributeError: no hook of that name.
    """

    def __init__(self, pm: PluginManager) -> None:
        self._pm = pm

    def __getattr__(self, name: str) -> AsyncHookCaller:
        if name.startswith("_"):
            raise AttributeError(name)
        hook = getattr(self._pm.hook, name, None)
        if hook is None:
            raise AttributeError(f"no hook named {name!r}")
        caller = AsyncHookCaller(self._pm, hook)
        self.__dict__[name] = caller
        return caller


class AsyncHookCaller:
    """Awaits every implementation of one hook in pluggy's call order.

    ``await caller(**kwargs)``: each implementation is called in the order
    ``pm.hook.NAME(...)`` would call it and its result awaited when it is awaitable, one
    after another (not concurrently). ``firstresult`` means the first non-``None``
    *awaited* value; an ``isolate`` hook reports and skips an implementation that raises
    (synchronously or while awaited). pluggy wrappers (``wrapper=True`` and old-style
    ``hookwrapper=True``) wrap the whole call as they do in pluggy; they are plain
    generators, not async ones.

    The call order, argument names and options are computed once per change of the
    hook's implementations, so a call does no per-implementation bookkeeping.

    Returns:
        the list of non-``None`` results, or the first one (or ``None``) for firstresult.

    Raises:
        pluggy.HookCallError: an implementation needs an argument the call did not give.
        TypeError: the hook is historic (use ``pm.hook.NAME.call_historic``).
        Exception: whatever a non-isolated implementation raised.
    """

    __slots__ = (
        "_calls", "_defaults", "_firstresult", "_generation", "_hook",
        "_isolate", "_key", "_pm", "_wrapped", "name",
    )

    def __init__(self, pm: PluginManager, hook: pluggy.HookCaller) -> None:
        self._pm = pm
        self._hook = hook
        self.name = hook.name
        self._key: tuple[pluggy.HookImpl, ...] | None = None
        self._generation = -1

    def _prepare(self, key: tuple[pluggy.HookImpl, ...]) -> None:
        hook = self._hook
        if hook.is_historic():
            raise TypeError(f"hook {self.name!r} is historic; use pm.hook.{self.name}.call_historic")
        spec = hook.spec
        self._defaults = dict(spec.kwargdefaults) if spec is not None and spec.kwargdefaults else None
        self._firstresult = bool(spec is not None and spec.opts.get("firstresult"))
        self._isolate = spec_options(hook).isolate
        self._wrapped = any(i.wrapper or i.hookwrapper for i in key)
        self._calls = tuple((i.function, tuple(i.argnames), i.plugin_name) for i in reversed(key))
        self._key = key
        self._generation = self._pm._generation

    async def __call__(self, **kwargs: Any) -> Any:
        key = tuple(self._hook._hookimpls)
        if key != self._key or self._generation != self._pm._generation:
            self._prepare(key)
        if self._defaults:
            kwargs = {**self._defaults, **kwargs}
        if self._wrapped:
            return await _amulticall(
                self._pm, self.name, list(key), kwargs, self._firstresult, self._isolate
            )
        firstresult = self._firstresult
        results = []
        for function, argnames, plugin_name in self._calls:
            try:
                if len(argnames) == 1:
                    arg = kwargs[argnames[0]]
                else:
                    args = [kwargs[a] for a in argnames]
            except KeyError as exc:
                raise pluggy.HookCallError(f"hook call must provide argument {exc.args[0]!r}") from None
            res = function(arg) if len(argnames) == 1 else function(*args)
            if res is None:
                continue
            kind = type(res)
            if kind is _CoroutineType or _is_awaitable_type(kind):
                if self._isolate:
                    try:
                        res = await res
                    except Exception as exc:
                        self._pm._report_hook_error(self.name, plugin_name, exc)
                        continue
                else:
                    res = await res
                if res is None:
                    continue
            if firstresult:
                return res
            results.append(res)
        return None if firstresult else results


_AWAITABLE_TYPES: dict[type, bool] = {}


def _is_awaitable_type(kind: type) -> bool:
    """Whether instances of ``kind`` are awaitable; cached per type, because
    ``getattr(int, "__await__", None)`` costs an AttributeError each time (~250 ns)."""
    known = _AWAITABLE_TYPES.get(kind)
    if known is None:
        known = _AWAITABLE_TYPES[kind] = hasattr(kind, "__await__")
    return known


async def _amulticall(
    pm: PluginManager,
    hook_name: str,
    impls: list[pluggy.HookImpl],
    kwargs: Mapping[str, Any],
    firstresult: bool,
    isolate: bool,
) -> Any:
    results: list[Any] = []
    teardowns: list[tuple[bool, Any]] = []
    exception: BaseException | None = None
    try:
        for impl in reversed(impls):
            try:
                args = [kwargs[argname] for argname in impl.argnames]
            except KeyError as exc:
                raise pluggy.HookCallError(
                    f"hook call must provide argument {exc.args[0]!r}"
                ) from None
            if impl.hookwrapper or impl.wrapper:
                gen = impl.function(*args)
                try:
                    next(gen)  # type: ignore[call-overload]
                except StopIteration:
                    raise RuntimeError(
                        f"wrapper of plugin {impl.plugin_name!r} for hook {hook_name!r} did not yield"
                    ) from None
                teardowns.append((bool(impl.hookwrapper), gen))
                continue
            try:
                res = impl.function(*args)
                if res is not None and (type(res) is _CoroutineType or inspect.isawaitable(res)):
                    res = await res
            except Exception as exc:
                if not isolate:
                    raise
                pm._report_hook_error(hook_name, impl.plugin_name, exc)
                continue
            if res is not None:
                results.append(res)
                if firstresult:
                    break
    except BaseException as exc:
        exception = exc
    result: Any = (results[0] if results else None) if firstresult else results
    for old_style, gen in reversed(teardowns):
        if old_style:
            outcome = pluggy.Result(result, exception)
            try:
                gen.send(outcome)
            except StopIteration:
                pass
            else:
                exception = RuntimeError(f"hookwrapper for hook {hook_name!r} yielded twice")
                continue
            try:
                result, exception = outcome.get_result(), None
            except BaseException as exc:
                exception = exc
        else:
            try:
                if exception is not None:
                    gen.throw(exception)
                else:
                    gen.send(result)
            except StopIteration as stop:
                result, exception = stop.value, None
            except BaseException as exc:
                exception = exc
            else:
                exception = RuntimeError(f"wrapper for hook {hook_name!r} yielded twice")
    if exception is not None:
        raise exception
    return result
