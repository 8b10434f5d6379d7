"""The built-in probe instruments, each a plugin of its own (disable one with
``plugins.disable = ["instruments.log"]``): ``log``, ``incr``, ``hist``, ``event``.

Each module implements ``hostapp_instrument_types()`` returning one
:class:`hostapp.InstrumentType`; the implementations follow the instrument protocol of
``docs/probes.md`` (``impl(value)`` on the probed thread, ``snapshot()`` read off it).
"""
