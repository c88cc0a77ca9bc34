"""A small threaded HTTP proxy on loopback: forwards plain HTTP and tunnels CONNECT.

It refuses any target outside 127.0.0.0/8, counts the client connections it accepts (and those
that ended), the requests it forwarded and the tunnels it opened, answers 502 when it cannot
reach a target, and remembers the Proxy-Authorization headers it saw.
"""

from __future__ import annotations

import http.client
import ipaddress
import select
import socket
import socketserver
import threading
from typing import Any
from urllib.parse import urlsplit


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return host == "localhost"


class _Handler(socketserver.StreamRequestHandler):
    server: _Server
    disable_nagle_algorithm = True

    def handle(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.connections += 1
        upstreams: dict[tuple[str, int], http.client.HTTPConnection] = {}
        try:
            while self._one_request(owner, upstreams):
                pass
        finally:
            for conn in upstreams.values():
                conn.close()
            with owner.lock:
                owner.closed += 1

    def _one_request(self, owner: Proxy, upstreams: dict[Any, Any]) -> bool:
        line = self.rfile.readline(65537).decode("latin-1")
        if not line.strip():
            return False
        method, target, _ = line.split(" ", 2)
        headers: list[tuple[str, str]] = []
        while True:
            h = self.rfile.readline(65537).decode("latin-1")
            if h in ("\r\n", "\n", ""):
                break
            name, value = h.split(":", 1)
            headers.append((name.strip(), value.strip()))
        for name, value in headers:
            if name.lower() == "proxy-authorization":
                owner.auth_seen.append(value)
        if method == "CONNECT":
            host, port = target.rsplit(":", 1)
            if not _loopback(host):
                self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
                return False
            try:
                upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=10)
            except OSError:
                self.wfile.write(b"HTTP/1.1 502 Bad Gateway\r\nContent-Length: 0\r\n\r\n")
                return False
            with owner.lock:
                owner.tunnels += 1
            self.wfile.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            self._pipe(upstream)
            return False
        url = urlsplit(target)
        host, port = url.hostname or "", url.port or 80
        if not _loopback(host):
            self.wfile.write(b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n")
            return False
        with owner.lock:
            owner.forwarded += 1
        conn = upstreams.get((host, port))
        if conn is None:
            conn = upstreams[(host, port)] = http.client.HTTPConnection(host, port, timeout=10)
        length = int(next((v for n, v in headers if n.lower() == "content-length"), "0"))
        body = self.rfile.read(length) if length else None
        skip = {"proxy-authorization", "proxy-connection", "connection", "keep-alive"}
        path = url.path + ("?" + url.query if url.query else "")
        conn.request(
            method,
            path or "/",
            body=body,
            headers={n: v for n, v in headers if n.lower() not in skip},
        )
        resp = conn.getresponse()
        data = resp.read()
        out = [f"HTTP/1.1 {resp.status} {resp.reason}\r\n"]
        for name, value in resp.getheaders():
            if name.lower() not in ("transfer-encoding", "connection", "content-length"):
                out.append(f"{name}: {value}\r\n")
        out.append(f"Content-Length: {len(data)}\r\n\r\n")
        self.wfile.write("".join(out).encode("latin-1") + data)
        return True

    def _pipe(self, upstream: socket.socket) -> None:
        client = self.connection
        try:
            while True:
                readable, _, _ = select.select([client, upstream], [], [], 10)
                if not readable:
                    return
                for sock in readable:
                    data = sock.recv(65536)
                    if not data:
                        return
                    (upstream if sock is client else client).sendall(data)
        except OSError:
            return
        finally:
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: Proxy


class Proxy:
    def __init__(self, host: str = "127.0.0.1") -> None:
        self.lock = threading.Lock()
        self.connections = 0  # client connections accepted
        self.tunnels = 0  # CONNECT tunnels opened
        self.forwarded = 0  # plain HTTP requests forwarded
        self.closed = 0  # client connections that ended
        self.auth_seen: list[str] = []
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self.url = f"http://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def __enter__(self) -> Proxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
