"""A program embedding the hostapp host (the `make demo` example).

The host loads the configuration and the plugins (here: the built-in sinks), opens the
embedded SQLite store, and records a run; the events below go to the `sqlite` sink.
Afterwards `hostapp events --last` shows them, `hostapp runs` the run, `hostapp sinks`
the sinks' counters.
"""

import sys

from hostapp import Host

with Host(command=sys.argv) as host:
    for beat in range(5):
        host.emit("monitoring_event", "heartbeat", service="billing", beat=beat)
    host.emit("sending_event", "order_created", order_id=42, total_eur=99.5)

print(f"run {host.run_id}: sent 6 events; 'hostapp events --last' shows them", file=sys.stderr)
