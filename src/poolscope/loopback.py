"""A small threaded HTTP/1.1 server on a loopback address: the demo's, and yours to try poolscope
with (the examples use it) or to test against.

    from poolscope.loopback import LoopbackServer

    with LoopbackServer("127.0.0.2") as server:
        requests.get(server.url)
        print(server.connections)  # TCP connections it accepted

It counts the TCP connections it accepts (the server's side of "was my connection reused?"),
and a few paths script the demo's scenarios:

- ``/`` answers ``ok`` and keeps the connection alive;
- ``/close`` answers with ``Connection: close``, ``/maybe-close`` does one time in ten;
- ``/together`` answers only once ``together`` requests are in flight at the same time;
- ``/hold`` answers once :meth:`LoopbackServer.release` is called (``holding`` counts the
  requests waiting there);
- ``/slow`` answers after 0.1 s.

``keepalive`` (seconds) closes a connection that stays idle that long, as servers do.

Each server takes a port that no earlier server of this process had on its address. poolscope
counts by origin, so two servers in a row that the kernel gave the same port would read as one.
"""

from __future__ import annotations

import random
import ssl
import sys
import threading
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True  # headers and body go out as two writes
    server: _Server

    def setup(self) -> None:
        self.timeout = self.server.owner.keepalive  # type: ignore[misc]
        super().setup()
        with self.server.owner._lock:
            self.server.owner.connections += 1

    def do_GET(self) -> None:
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        close = path == "/close" or (path == "/maybe-close" and random.random() < 0.1)
        if path == "/together":
            owner._barrier.wait(timeout=10)
        elif path == "/hold":
            with owner._lock:
                owner.holding += 1
            owner._held.wait(timeout=10)
            with owner._lock:
                owner.holding -= 1
        elif path == "/slow":
            time.sleep(0.1)
        with owner._lock:
            owner.requests += 1
        body = b"ok"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        if close:
            self.send_header("Connection", "close")
            self.close_connection = True
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver listens with a backlog of 5; many threads connecting at once on a busy
    # machine would have their SYNs dropped and retried a second or more later.
    request_queue_size = 64
    owner: LoopbackServer

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (a read timeout) leaves a broken pipe behind: not news.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


_taken: set[tuple[str, int]] = set()  # every (address, port) a server of this process has had
_taken_lock = threading.Lock()
_Bound = TypeVar("_Bound")


def bind_new_origin(
    host: str,
    bind: Callable[[], _Bound],
    port_of: Callable[[_Bound], int],
    close: Callable[[_Bound], None],
) -> _Bound:
    """What ``bind()`` binds on ``host``, once it has a port no earlier server of this process
    had there (``port_of`` reads its port, ``close`` closes one that had). A port the kernel
    hands out again is held open while the next is asked for, so that it is not handed out once
    more; after 64 of them in a row (a process that has used most ports), the next is taken even
    so. Test servers of your own can take their ports here too."""
    held: list[_Bound] = []
    try:
        while True:
            bound = bind()
            origin = (host, port_of(bound))
            with _taken_lock:
                if origin not in _taken or len(held) == 64:
                    _taken.add(origin)
                    return bound
            held.append(bound)
    finally:
        for bound in held:
            close(bound)


class LoopbackServer:
    """``with LoopbackServer("127.0.0.2") as server: requests.get(server.url)``."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        ssl_context: ssl.SSLContext | None = None,
        keepalive: float | None = None,
        together: int = 2,
    ) -> None:
        self.keepalive = keepalive
        self.connections = 0  # TCP connections accepted
        self.requests = 0  # requests answered
        self.holding = 0  # requests waiting in /hold right now
        self._lock = threading.Lock()
        self._barrier = threading.Barrier(together)
        self._held = threading.Event()
        self._httpd = bind_new_origin(
            host,
            lambda: _Server((host, 0), _Handler),
            lambda httpd: httpd.server_address[1],
            _Server.server_close,
        )
        self._httpd.owner = self
        if ssl_context is not None:
            self._httpd.socket = ssl_context.wrap_socket(self._httpd.socket, server_side=True)
        self.host = host
        self.port: int = self._httpd.server_address[1]
        self.scheme = "https" if ssl_context is not None else "http"
        self.url = f"{self.scheme}://{host}:{self.port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever, args=(0.05,), daemon=True)

    def start(self) -> LoopbackServer:
        self._thread.start()
        return self

    def release(self) -> None:
        """Let requests waiting in ``/hold`` answer (and every later one at once)."""
        self._held.set()

    def stop(self) -> None:
        self._held.set()
        if self._thread.is_alive():
            self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> LoopbackServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
