"""Built-in event renderers: how ``hostapp events`` (and the web view) show the event types
hostapp itself defines and that no plugin of their own renders yet.

Each module is a plugin (entry points ``renderers.events``, ``renderers.jobs`` and ``renderers.http``)
contributing :class:`hostapp.EventRenderer` specs through ``hostapp_event_renderers``.
"""
