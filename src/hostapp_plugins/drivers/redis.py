"""The ``redis`` driver: a Redis client (the ``redis`` package; ``pip install 'hostapp[redis]'``).

Configured as::

    [components.cache]
    driver = "redis"
    load = "auto"
    options = { url = "redis://127.0.0.1:6379/0", socket_timeout = 2.0 }

Options (``url`` or the separate keys, not both):

* ``url`` — a Redis URL (``redis://[[user]:password@]host:port/db``, ``rediss://`` for
  TLS, ``unix:///path/redis.sock``), as ``redis.Redis.from_url`` reads it;
* ``host`` (default ``127.0.0.1``), ``port`` (default 6379), ``db`` (default 0),
  ``username``, ``password``;
* ``socket_timeout`` — seconds a command may take, and connecting (default 5.0);
* ``retries`` — times a command is retried after a connection error or timeout, with
  exponential backoff from 50 ms (default 0: a server that is down is reported at once,
  instead of after redis-py's own retries).

The package is imported when a component is built, never before: without it the
component is unavailable with "install hostapp[redis]". ``connect()`` and ``health()`` send
``PING``; ``close()`` closes the client's connection pool. The component is
:class:`RedisComponent`: ``component.client`` is the ``redis.Redis`` client, and every
other attribute is the client's, so ``host.component("cache").set("k", "v")`` works.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import hostapp

if TYPE_CHECKING:
    from hostapp.drivers import ComponentOptions

__all__ = ["RedisComponent", "hostapp_drivers"]

_SEPARATE = ("host", "port", "db", "username", "password")


class RedisComponent:
    """A Redis client built from a component's options (``driver = "redis"``).

    Args:
        options: ``url``, or ``host``/``port``/``db``/``username``/``password``; and
            ``socket_timeout`` (seconds), ``retries`` (an integer >= 0).

    Attributes:
        client: the ``redis.Redis`` client (it connects lazily; :meth:`connect` pings).

    Raises:
        ModuleNotFoundError: the ``redis`` package is not installed ("install hostapp[redis]").
        TypeError: an unknown option, or ``url`` given together with separate keys.
        ValueError: an option has a wrong type or the URL is malformed.
    """

    def __init__(self, options: ComponentOptions) -> None:
        unknown = sorted(set(options) - {"url", "socket_timeout", "retries", *_SEPARATE})
        if unknown:
            raise TypeError(
                f"redis driver: unknown option(s) {unknown}; expected url or host, port, db, "
                "username, password; and socket_timeout, retries"
            )
        try:
            import redis
            from redis.backoff import ExponentialBackoff
            from redis.retry import Retry
        except ImportError:
            raise ModuleNotFoundError(
                "the redis driver needs the 'redis' package: install hostapp[redis] "
                "(pip install 'hostapp[redis]')", name="redis",
            ) from None
        timeout = options.get("socket_timeout", 5.0)
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or timeout <= 0:
            raise ValueError(f"redis driver: socket_timeout must be a number of seconds > 0, got {timeout!r}")
        retries = options.get("retries", 0)
        if isinstance(retries, bool) or not isinstance(retries, int) or retries < 0:
            raise ValueError(f"redis driver: retries must be an integer >= 0, got {retries!r}")
        common: dict[str, Any] = {
            "socket_timeout": float(timeout),
            "socket_connect_timeout": float(timeout),
            "retry": Retry(ExponentialBackoff(cap=1.0, base=0.05), retries),
        }
        if "url" in options:
            given = [key for key in _SEPARATE if key in options]
            if given:
                raise TypeError(f"redis driver: give url or {', '.join(given)}, not both")
            if not isinstance(options["url"], str):
                raise ValueError(f"redis driver: url must be a string, got {options['url']!r}")
            self.client = redis.Redis.from_url(options["url"], **common)
        else:
            port, db = options.get("port", 6379), options.get("db", 0)
            for key, value in (("port", port), ("db", db)):
                if isinstance(value, bool) or not isinstance(value, int):
                    raise ValueError(f"redis driver: {key} must be an integer, got {value!r}")
            self.client = redis.Redis(
                host=str(options.get("host", "127.0.0.1")), port=port, db=db,
                username=options.get("username"), password=options.get("password"), **common,
            )

    def connect(self) -> None:
        """``PING`` the server.

        Raises:
            redis.exceptions.ConnectionError: the server does not answer (refused, timed
                out); redis.exceptions.AuthenticationError: wrong credentials.
        """
        self.client.ping()

    def health(self) -> dict[str, Any]:
        """``PING`` and the server's version: ``{"redis_version": "7.0.15"}``.

        Raises:
            redis.exceptions.ConnectionError: the server does not answer.
        """
        self.client.ping()
        return {"redis_version": self.client.info("server").get("redis_version")}

    def close(self) -> None:
        """Close the client and its connection pool."""
        self.client.close()

    def __getattr__(self, name: str) -> Any:
        if name == "client":  # not set: __init__ failed
            raise AttributeError(name)
        return getattr(self.client, name)

    def __repr__(self) -> str:
        pool = getattr(getattr(self, "client", None), "connection_pool", None)
        return f"<RedisComponent {pool!r}>"


@hostapp.hookimpl
def hostapp_drivers() -> hostapp.DriverSpec:
    """Contribute the ``redis`` driver (the ``redis`` package is imported only when a
    component is built)."""
    return hostapp.DriverSpec(
        name="redis",
        factory=RedisComponent,
        description="A Redis client (the redis package, hostapp[redis]); options: url or host/port/db.",
    )
