"""The ``probes`` background task: applies the probe specs of the store in this host.

Every ``probes.poll_interval`` seconds (default 1) it reads the specs store's change
marker (one small read: ``SELECT version FROM probe_marker`` in SQLite, ``GET`` in
Redis); only when it moved are the specs read and applied
(:meth:`hostapp.probes.manager.ProbeManager.tick`). Pending targets are retried and the
``applied`` records (states, fire counts, counters, histograms) written at every tick
where something changed. The probe machinery (:mod:`hostapp.probes.manager`, the
backends) is imported at the first tick that finds a spec, never before, so a host with no
probe pays one marker read a second.

It runs in its own thread (``hostapp-task-probes``, untraced). At host stop the probes
are removed and their last values written (state ``ended``). ``probes.enabled = false``
turns it off (the task finishes at once), and so does a host without a store when the
specs are in SQLite; ``plugins.disable = ["tasks.probes"]`` removes it.
"""

from __future__ import annotations

import logging
import threading
from typing import Any

import hostapp

__all__ = ["hostapp_background_tasks"]

logger = logging.getLogger("hostapp.probes")


class ProbePoller:
    """The state of the task in one host: the spec store and, once needed, the manager."""

    def __init__(self, host: Any) -> None:
        self.host = host
        self.config = host.config
        self.interval = float(self.config.get("probes.poll_interval", 1.0))
        self.store: Any = None
        self.manager: Any = None
        self._marker: Any = None
        self._failed = False

    def _open(self) -> Any:
        from hostapp.probes.stores import open_spec_store, store_setting

        kind, name = store_setting(self.config)
        component = self.host.component(name) if kind == "component" else None
        return open_spec_store(self.config, store=self.host.store, component=component)

    def tick(self) -> None:
        """One poll: open the store once; read the marker; start the manager at the
        first spec; then let it apply (``ProbeManager.tick``). Raises what the store raises."""
        if self.store is None:
            self.store = self._open()
        if self.manager is None:
            marker = self.store.marker()
            if marker == self._marker or not marker:
                self._marker = marker
                return
            self._marker = marker
            self._start_manager()
        self.manager.tick()

    def _start_manager(self) -> None:
        from hostapp.probes.manager import ProbeManager

        config = self.config
        types = {}
        for contribution in self.host.pm.collect("hostapp_instrument_types", on_conflict="report"):
            types[contribution.spec.name] = contribution.spec
        namespace = _namespace(config.get("probes.namespace") or [])
        self.manager = ProbeManager(
            self.store, host=self.host, types=types, namespace=namespace,
            allow_unsafe=bool(config.get("probes.allow_unsafe")), max_errors=int(config.get("probes.max_errors", 10)),
        )
        self.host.probes = self.manager

    def close(self) -> None:
        """Remove this host's probes, writing their last values (``ProbeManager.close``)."""
        if self.manager is not None:
            self.manager.close()


def _namespace(entries: list[str]) -> dict[str, Any]:
    """``probes.namespace``: ``"module"`` adds the module under its last name,
    ``"module:attr"`` adds that object under ``attr`` (a dict is merged)."""
    import importlib

    out: dict[str, Any] = {}
    for entry in entries:
        module_name, _, attr = entry.partition(":")
        try:
            module = importlib.import_module(module_name)
            if not attr:
                out[module_name.rsplit(".", 1)[-1]] = module
                continue
            value = getattr(module, attr)
        except (ImportError, AttributeError) as exc:
            logger.warning("probes.namespace: cannot import %r: %s", entry, exc)
            continue
        if isinstance(value, dict):
            out.update(value)
        else:
            out[attr] = value
    return out


def run(host: Any, stop_event: threading.Event) -> None:
    """The task body: one tick now, then one every ``probes.poll_interval`` until stop."""
    threading.current_thread().hostapp_untraced = True  # type: ignore[attr-defined]
    if not host.config.get("probes.enabled", True):
        return
    if str(host.config.get("probes.store", "sqlite")).strip() == "sqlite" and host.store is None:
        logger.debug("probes: the host runs without a store (store=False): no probe specs to apply")
        return
    poller = ProbePoller(host)
    try:
        while True:
            try:
                poller.tick()
                poller._failed = False
            except Exception as exc:  # noqa: BLE001 - a store hiccup: reported once, retried
                if not poller._failed:
                    logger.warning("probes: the poll failed: %s: %s (retrying every %.1f s)",
                                   type(exc).__name__, exc, poller.interval)
                poller._failed = True
            if stop_event.wait(poller.interval):
                return
    finally:
        poller.close()


@hostapp.hookimpl
def hostapp_background_tasks() -> Any:
    """The ``probes`` task (a sync task in ``hostapp-task-probes``; see the module docstring)."""
    return hostapp.BackgroundTask(
        name="probes", run=run, restart="on-failure", stop_timeout=5.0,
        description="applies the probe specs of the store (hostapp probes add ...)",
    )
