"""``hostapp serve``: a Host and its ASGI app under uvicorn, stopped in order.

Start: the token is resolved (a non-loopback bind without ``HOSTAPP_SERVE_TOKEN`` stops
here), the socket is bound (a port in use stops here), the host starts (components,
sinks, ``hostapp_startup``, background tasks, tracing), the app is built (conflicting
plugin routes stop here, and the host is stopped again), and uvicorn serves on the bound
socket.

Stop, on SIGINT or SIGTERM: uvicorn stops accepting connections, the live streams of the
web view end, requests in flight finish (at most :data:`GRACEFUL_S` seconds), the app's
lifespan ends; then the host stops in its usual order (tasks, ``hostapp_shutdown``, the
sinks drained, components closed, the run recorded). SIGTERM exits with status 143
(``128 + 15``), SIGINT with 130, as :func:`hostapp.host.exit_on_signals` has it.
"""

from __future__ import annotations

import os
import socket
import sys
import threading
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

from hostapp.errors import HostappError
from hostapp.serve import require_extra
from hostapp.serve.security import TOKEN_ENV, is_loopback, resolve_token

if TYPE_CHECKING:
    from hostapp.config import Config

__all__ = ["GRACEFUL_S", "bind_socket", "serve"]

#: Seconds requests in flight get to finish once the server is told to stop.
GRACEFUL_S = 5.0


def bind_socket(host: str, port: int) -> socket.socket:
    """A listening TCP socket on ``(host, port)`` (``port`` 0: a free port).

    Raises:
        HostappError: the address cannot be bound (in use, not an address of this
            machine), naming it.
    """
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
    except socket.gaierror as exc:
        raise HostappError(f"hostapp serve: cannot listen on {host}:{port}: {exc.strerror}") from None
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind(address)
        sock.listen(128)
        sock.set_inheritable(True)
    except OSError as exc:
        sock.close()
        raise HostappError(f"hostapp serve: cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    return sock


def _url(sock: socket.socket, host: str) -> str:
    port = sock.getsockname()[1]
    shown = f"[{host}]" if ":" in host else host
    return f"http://{shown}:{port}/"


def serve(
    config: Config,
    *,
    host: str,
    port: int,
    command: Sequence[str] | None = None,
    open_path: str | None = None,
    echo: Callable[[str], Any] = lambda line: print(line, file=sys.stderr, flush=True),
) -> None:
    """Run ``hostapp serve`` until SIGINT or SIGTERM (see the module docstring).

    Args:
        config: the configuration of the host.
        host: the address to listen on (``127.0.0.1`` unless the user says otherwise).
        port: the port (0: a free one, printed).
        command: the command line recorded on the run.
        open_path: a page to print and open in the web browser once serving
            (``"runs/ID"``; :func:`webbrowser.open`, on a desktop only: macOS, Windows, or
            with ``DISPLAY`` / ``WAYLAND_DISPLAY`` set).
        echo: prints the start lines (the URL, and the token when it was generated).

    Raises:
        MissingExtraError: Starlette or uvicorn is not installed.
        ConfigError: a non-loopback ``host`` without ``HOSTAPP_SERVE_TOKEN``.
        HostappError: the socket cannot be bound, the host cannot start, or the plugins'
            routes conflict (``DuplicateNameError``).
        SystemExit: 143 after SIGTERM; ``KeyboardInterrupt`` after SIGINT.
    """
    require_extra()
    import uvicorn

    from hostapp.host import Host, exit_on_signals
    from hostapp.serve.app import create_app

    token, generated = resolve_token(host)
    sock = bind_socket(host, port)
    try:
        with Host(config, command=list(command) if command else None) as hosted, exit_on_signals():
            app = create_app(hosted, token=token, bind=host)
            context = app.state.hostapp
            url = _url(sock, host)
            echo(f"hostapp serve: {url} (run {hosted.run_id}; Ctrl-C stops)")
            if generated:
                echo(f"hostapp serve: token (printed once; send it as 'Authorization: Bearer TOKEN' "
                     f"for changes): {token}")
            else:
                echo(f"hostapp serve: token from {TOKEN_ENV}")
            if not is_loopback(host):
                echo(f"hostapp serve: {host} is not loopback: every request needs the token "
                     f"(a browser: {url}?token=TOKEN)")
            if open_path:
                page = url + open_path.lstrip("/")
                echo(f"hostapp serve: opening {page}")
                if sys.platform in ("darwin", "win32") or os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"):
                    import webbrowser  # never a text browser taking over this terminal

                    threading.Timer(0.5, webbrowser.open, (page,)).start()

            class Server(uvicorn.Server):
                def handle_exit(self, sig: int, frame: Any) -> None:
                    context.stopping.set()  # the live streams end, so the connections can close
                    super().handle_exit(sig, frame)

            server = Server(uvicorn.Config(
                app,
                lifespan="on",
                log_level="warning",
                access_log=False,
                timeout_graceful_shutdown=int(GRACEFUL_S),
                server_header=False,
            ))
            server.run(sockets=[sock])
            if server.started is False and not context.stopping.is_set():
                raise HostappError("hostapp serve: the server did not start (see the lines above)")
    finally:
        sock.close()
