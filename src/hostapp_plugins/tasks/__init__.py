"""Built-in background tasks: ``tasks.probes``, the probe poller."""
