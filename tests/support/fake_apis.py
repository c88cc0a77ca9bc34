"""Loopback fakes of the APIs the SDK tests drive (S3 through moto, Kubernetes, Elasticsearch,
OpenSearch, Docker): an HTTP/1.1 keep-alive server for a WSGI app, on TCP or on a unix socket.

It counts the connections it accepts and the requests it answers (the ground truth poolscope's
counts are held against). ``together=N`` answers only once N requests are in flight at once, so
a pool smaller than N must open more connections; ``delay`` answers each request late, so a
pool that blocks makes its requests wait.
"""

from __future__ import annotations

import io
import json
import os
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

WSGIApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "content-length"}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: Any

    def setup(self) -> None:
        super().setup()
        fake: FakeAPI = self.server.fake
        with fake.lock:
            fake.connections += 1

    def _serve(self) -> None:
        fake: FakeAPI = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        if fake.barrier is not None:
            try:
                fake.barrier.wait(timeout=10)
            except threading.BrokenBarrierError:
                pass
        if fake.delay:
            time.sleep(fake.delay)
        path, _, query = self.path.partition("?")
        environ: dict[str, Any] = {
            "REQUEST_METHOD": self.command,
            "SCRIPT_NAME": "",
            "PATH_INFO": path,
            "QUERY_STRING": query,
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": str(fake.port),
            "SERVER_PROTOCOL": "HTTP/1.1",
            "CONTENT_TYPE": self.headers.get("Content-Type", ""),
            "CONTENT_LENGTH": str(length),
            "REMOTE_ADDR": "127.0.0.1",
            "wsgi.version": (1, 0),
            "wsgi.url_scheme": "http",
            "wsgi.input": io.BytesIO(body),
            "wsgi.errors": sys.stderr,
            "wsgi.multithread": True,
            "wsgi.multiprocess": False,
            "wsgi.run_once": False,
        }
        for name, value in self.headers.items():
            key = "HTTP_" + name.upper().replace("-", "_")
            if key not in ("HTTP_CONTENT_TYPE", "HTTP_CONTENT_LENGTH"):
                environ[key] = value
        answer: dict[str, Any] = {}

        def start_response(status: str, headers: list[tuple[str, str]], exc: Any = None) -> Any:
            answer["status"], answer["headers"] = status, headers
            return lambda data: None

        chunks = fake.app(environ, start_response)
        try:
            out = b"".join(chunks)
        finally:
            close = getattr(chunks, "close", None)
            if close is not None:
                close()
        with fake.lock:
            fake.requests += 1
        code, _, reason = answer["status"].partition(" ")
        self.send_response(int(code), reason)
        for name, value in answer["headers"]:
            if name.lower() not in _HOP_BY_HOP:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(out)

    do_GET = do_POST = do_PUT = do_DELETE = do_HEAD = do_PATCH = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def address_string(self) -> str:
        return "unix" if not self.client_address else str(self.client_address[0])


class _UnixHandler(_Handler):
    disable_nagle_algorithm = False  # TCP_NODELAY is TCP's


class _UnixServer(socketserver.ThreadingMixIn, socketserver.UnixStreamServer):
    daemon_threads = True
    request_queue_size = 64  # all the threads connect at once: a unix socket refuses beyond it
    fake: FakeAPI


class _TCPServer(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 64
    fake: FakeAPI


class FakeAPI:
    """``with FakeAPI(app) as api: client(api.url)``; ``unix_path=`` serves on a unix socket."""

    def __init__(
        self,
        app: WSGIApp,
        *,
        unix_path: str | None = None,
        together: int = 0,
        delay: float = 0.0,
    ) -> None:
        self.app = app
        self.connections = 0  # connections accepted
        self.requests = 0  # requests answered
        self.lock = threading.Lock()
        self.barrier = threading.Barrier(together) if together > 1 else None
        self.delay = delay
        self.unix_path = unix_path
        if unix_path is not None:
            if os.path.exists(unix_path):
                os.unlink(unix_path)
            self._server: Any = _UnixServer(unix_path, _UnixHandler)
            self.port = 0
            self.url = "unix://" + unix_path
        else:
            self._server = _TCPServer(("127.0.0.1", 0), _Handler)
            self.port = self._server.server_address[1]
            self.url = f"http://127.0.0.1:{self.port}"
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def __enter__(self) -> FakeAPI:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        if self.barrier is not None:
            self.barrier.abort()
        self._server.shutdown()
        self._server.server_close()
        if self.unix_path is not None and os.path.exists(self.unix_path):
            os.unlink(self.unix_path)


def json_app(routes: dict[str, Any], headers: tuple[tuple[str, str], ...] = ()) -> WSGIApp:
    """A WSGI app answering each path in ``routes`` with that JSON (or text, for a str)."""

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = routes.get(environ["PATH_INFO"])
        if body is None:
            start_response("404 Not Found", [("Content-Type", "application/json")])
            return [b'{"error": "not found"}']
        if isinstance(body, str):
            start_response("200 OK", [("Content-Type", "text/plain"), *headers])
            return [body.encode()]
        start_response("200 OK", [("Content-Type", "application/json"), *headers])
        return [json.dumps(body).encode()]

    return app
