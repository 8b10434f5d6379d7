"""The `make demo` program: outbound HTTP calls through four libraries.

It starts a small HTTP server on 127.0.0.1 (a random free port), then calls it with
urllib, requests, httpx and httpx's async client - a GET each, one POST, one 404 - and
prints what it got. Nothing in it knows about hostapp: run it under the host,

    hostapp run examples/outbound_http.py
    hostapp events --last

and the built-in HTTP processors record every call (method, URL, status, duration, the
line that made it) in the embedded SQLite store, with the Authorization header and the
``token`` query parameter redacted.
"""

import asyncio
import http.server
import json
import threading
import urllib.error
import urllib.request

import httpx
import requests


class Api(http.server.BaseHTTPRequestHandler):
    """A tiny JSON API: GET /users/N, POST /orders; anything else is a 404."""

    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def reply(self, status, payload):
        body = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        if self.path.startswith("/users/"):
            user = self.path.split("/")[2].split("?")[0]
            self.reply(200, {"id": user, "name": f"user {user}"})
        else:
            self.reply(404, {"error": "not found"})

    def do_POST(self):
        length = int(self.headers.get("Content-Length") or 0)
        order = json.loads(self.rfile.read(length) or b"{}")
        self.reply(201, {"order": order, "status": "created"})


def main():
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Api)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    auth = {"Authorization": "Bearer demo-secret-token"}

    with urllib.request.urlopen(urllib.request.Request(f"{base}/users/1", headers=auth)) as reply:
        print("urllib        ", reply.status, json.loads(reply.read()))
    try:
        urllib.request.urlopen(f"{base}/nowhere")
    except urllib.error.HTTPError as err:
        print("urllib        ", err.code, "(expected)")

    print("requests      ", requests.get(f"{base}/users/2", params={"token": "t0p-secret"}).json())
    print("requests POST ", requests.post(f"{base}/orders", json={"sku": "A-1", "qty": 2}, headers=auth).status_code)

    with httpx.Client() as client:
        print("httpx         ", client.get(f"{base}/users/3").json())

    async def fetch_many():
        async with httpx.AsyncClient() as client:
            replies = await asyncio.gather(*(client.get(f"{base}/users/{n}") for n in (4, 5, 6)))
        return [r.json()["name"] for r in replies]

    print("httpx async   ", asyncio.run(fetch_many()))
    server.shutdown()


if __name__ == "__main__":
    main()
