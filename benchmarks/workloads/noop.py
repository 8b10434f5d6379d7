"""An empty program: ``python noop.py`` against ``hostapp run noop.py`` is the fixed cost of
``hostapp run`` (imports, plugin discovery, opening the store, starting and stopping the
bus and the tracing engine, recording the run) with nothing to trace."""
