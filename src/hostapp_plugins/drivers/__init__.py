"""Built-in drivers: ``sqlite`` (the standard library's ``sqlite3``) and ``redis`` (the
``redis`` package, extra ``hostapp[redis]``)."""
