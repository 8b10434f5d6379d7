"""A small local HTTP server for the workload scripts (imported by them, not a workload).

``start()`` serves ``GET`` on 127.0.0.1 (a free port) from a daemon thread of the calling
process: every request gets ``200`` with a 2-byte body (``ok``) and a ``Content-Length``,
over HTTP/1.1 so that a ``requests.Session`` keeps its connection open (one buffered
send per response and ``TCP_NODELAY``, so no Nagle/delayed-ACK stalls). Request logging is
silenced. The workloads never shut it down (``shutdown()`` waits up to 0.5 s for the
poll loop): the daemon thread ends with the process. The server runs in the measured
process, so its CPU is part of the workload on both sides of every comparison.

``start_process()`` runs the same server in a child process instead (``python -I
_localserver.py`` prints its URL, then serves until its stdin closes): the measured
process's CPU is then the client's alone, without the server's share and its noise.
Isolated mode (``-I``: no ``PYTHON*`` variables, no user site) keeps the server plain when
the client runs under a tool that reaches child processes through ``PYTHONPATH``
(``ddtrace-run``, ``opentelemetry-instrument``).
"""

from __future__ import annotations

import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

BODY = b"ok"


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 64 * 1024  # headers and body leave in one send (flushed after each request)
    disable_nagle_algorithm = True  # no 40 ms Nagle/delayed-ACK stall on kept-alive connections

    def do_GET(self) -> None:  # noqa: N802 - the http.server name
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(BODY)))
        self.end_headers()
        self.wfile.write(BODY)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - the base name
        pass


def start() -> tuple[ThreadingHTTPServer, str]:
    """Start the server; return it and its base URL (``http://127.0.0.1:PORT``)."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, name="bench-http-server", daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_process() -> tuple[subprocess.Popen[str], str]:
    """Start the server in a child process; return it and its base URL. The child ends when
    this process closes its stdin (at exit, or ``proc.stdin.close()``)."""
    proc = subprocess.Popen(
        [sys.executable, "-I", __file__], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    assert proc.stdout is not None
    return proc, proc.stdout.readline().strip()


if __name__ == "__main__":
    _server, url = start()
    print(url, flush=True)
    sys.stdin.read()  # serve until the parent closes our stdin (or exits)
