"""Built-in hostapp plugins, loaded through the same entry points as anyone\x27s."""
