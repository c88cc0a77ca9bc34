"""A small threaded SOCKS5 proxy on loopback (RFC 1928, with RFC 1929's username and password
when the client offers them): ``CONNECT`` only, to loopback targets only.

It counts the client connections it accepts (and those that ended) and the connections it made
to targets, and remembers the usernames it was given.
"""

from __future__ import annotations

import ipaddress
import select
import socket
import socketserver
import struct
import threading


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host == "localhost"


class _Handler(socketserver.BaseRequestHandler):
    server: _Server

    def _read(self, n: int) -> bytes:
        data = b""
        while len(data) < n:
            chunk = self.request.recv(n - len(data))
            if not chunk:
                raise ConnectionError("the client went away")
            data += chunk
        return data

    def handle(self) -> None:
        owner = self.server.owner
        with owner.lock:
            owner.connections += 1
        try:
            self._serve(owner)
        except (ConnectionError, OSError):
            pass
        finally:
            with owner.lock:
                owner.closed += 1

    def _serve(self, owner: SocksProxy) -> None:
        sock = self.request
        version, count = self._read(2)
        methods = self._read(count)
        if version != 5:
            return
        if 2 in methods:  # username and password
            sock.sendall(b"\x05\x02")
            _, ulen = self._read(2)
            user = self._read(ulen).decode()
            (plen,) = self._read(1)
            self._read(plen)
            owner.users.append(user)
            sock.sendall(b"\x01\x00")
        elif 0 in methods:
            sock.sendall(b"\x05\x00")
        else:
            sock.sendall(b"\x05\xff")
            return
        _, command, _, kind = self._read(4)
        if kind == 1:
            host = socket.inet_ntoa(self._read(4))
        elif kind == 4:
            host = socket.inet_ntop(socket.AF_INET6, self._read(16))
        else:
            host = self._read(self._read(1)[0]).decode()
        (port,) = struct.unpack("!H", self._read(2))
        if command != 1 or not _loopback(host):
            sock.sendall(b"\x05\x02\x00\x01\x00\x00\x00\x00\x00\x00")  # not allowed
            return
        try:
            upstream = socket.create_connection((host, port), timeout=10)
        except OSError:
            sock.sendall(b"\x05\x05\x00\x01\x00\x00\x00\x00\x00\x00")  # refused
            return
        with owner.lock:
            owner.tunnels += 1
        sock.sendall(b"\x05\x00\x00\x01\x00\x00\x00\x00\x00\x00")
        try:
            while True:
                readable, _, _ = select.select([sock, upstream], [], [], 10)
                if not readable:
                    return
                for end in readable:
                    data = end.recv(65536)
                    if not data:
                        return
                    (upstream if end is sock else sock).sendall(data)
        finally:
            upstream.close()


class _Server(socketserver.ThreadingTCPServer):
    daemon_threads = True
    allow_reuse_address = True
    owner: SocksProxy


class SocksProxy:
    """``with SocksProxy() as proxy: httpx.Client(proxy=proxy.url)``."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.lock = threading.Lock()
        self.connections = 0  # client connections accepted
        self.closed = 0  # client connections that ended
        self.tunnels = 0  # connections made to targets
        self.users: list[str] = []
        self._server = _Server((host, 0), _Handler)
        self._server.owner = self
        self.port: int = self._server.server_address[1]
        self.url = f"socks5://{host}:{self.port}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), daemon=True
        )

    def __enter__(self) -> SocksProxy:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
