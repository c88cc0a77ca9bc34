"""A raw scripted HTTP server on loopback, for faults a well-behaved server never makes."""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator

from poolscope.loopback import bind_new_origin

RESPONSE = b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Type: text/plain\r\n\r\nok"


def _bound() -> socket.socket:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    return sock


def _port(sock: socket.socket) -> int:
    return int(sock.getsockname()[1])


def new_origin_socket() -> socket.socket:
    """A socket bound on 127.0.0.1 to a port no earlier server of this process had: the counts
    poolscope keeps for an origin start from nothing for it."""
    return bind_new_origin("127.0.0.1", _bound, _port, socket.socket.close)


class CloseOnReuse:
    """Its first connection answers one request, then takes the next one and closes without a
    word: the race where a server drops a keep-alive connection just as it is reused. Every
    later connection answers everything."""

    def __init__(self) -> None:
        self.sock = new_origin_socket()
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self.connections = 0
        self._stop = False
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            first = self.connections == 1
            threading.Thread(target=self._serve, args=(conn, first), daemon=True).start()

    def _serve(self, conn: socket.socket, first: bool) -> None:
        with conn:
            served = 0
            buf = b""
            while True:
                while b"\r\n\r\n" not in buf:
                    data = conn.recv(65536)
                    if not data:
                        return
                    buf += data
                _, buf = buf.split(b"\r\n\r\n", 1)
                if first and served == 1:
                    return  # read the request, close without answering
                conn.sendall(RESPONSE)
                served += 1

    def close(self) -> None:
        self._stop = True
        self.sock.close()


@contextlib.contextmanager
def full_backlog() -> Iterator[int]:
    """A loopback listener that never accepts, its backlog filled: the kernel drops the next
    SYN, so a connect to the port it yields hangs until its timeout (nothing leaves the
    machine)."""
    listener = new_origin_socket()
    listener.listen(0)
    port = listener.getsockname()[1]
    fillers = []
    try:
        for _ in range(8):
            filler = socket.socket()
            filler.setblocking(False)
            filler.connect_ex(("127.0.0.1", port))
            fillers.append(filler)
        yield port
    finally:
        for sock in (listener, *fillers):
            sock.close()
