"""Built-in event sinks."""
