"""A real HTTP/2 server on a loopback address for the test suite: ``H2Server`` answers httpx's
``http2=True`` requests (TLS with ALPN "h2", or cleartext h2c with prior knowledge) and counts
what it serves, so tests can hold poolscope's counts for httpx against the server's.

    with H2Server() as server:
        with httpx.Client(http2=True, verify=server.client_ssl_context()) as client:
            client.get(server.url + "/slow")
        assert (server.connections, server.requests, server.per_connection) == (1, 1, [1])

Built on ``h2``, the sans-IO HTTP/2 library that httpcore's own HTTP/2 uses, with plain sockets
and threads rather than on hypercorn: h2 hands the server each stream where it opens and closes
(so ``peak_streams`` is exact) and takes SETTINGS_MAX_CONCURRENT_STREAMS from the very first
frame; hypercorn would put an ASGI app, an event loop and its own connection handling between
the test and those counts, and one more package in the test extra.

What it counts (thread-safely, under one lock):

- ``connections``: TCP connections accepted that spoke HTTP/2 (the client's preface arrived;
  a TLS handshake that did not pick "h2" by ALPN is not counted);
- ``requests``: streams answered; ``per_connection``: streams answered on each of those
  connections, in the order they spoke HTTP/2;
- ``peak_streams``: the most streams open at once on one connection (from the request's
  HEADERS until the server sends its END_STREAM, or the client resets the stream);
- ``holding``: streams waiting in ``/hold`` right now; ``errors``: unexpected exceptions in the
  server's threads (a client's reset, GOAWAY or close is not one); ``protocol_errors``: the
  clients' HTTP/2 protocol errors (each answered with GOAWAY and a close), such as opening
  more streams than SETTINGS_MAX_CONCURRENT_STREAMS allows.

Paths: any path answers 200 ``ok`` (text/plain); a POST (its body read and discarded) answers
``{}`` (application/json); ``/slow`` answers after 0.1 s, ``/hold`` after 1 s or at
:meth:`H2Server.release`, each without holding up the other streams of its connection.

Threads: one accepts; one per connection does all of that connection's socket I/O (an SSL
socket is not safe to read and write from two threads); a stream that waits (``/slow``,
``/hold``) gets a thread of its own that, when its time comes, writes the answer into the h2
state under the connection's lock and wakes the I/O thread through a pipe to send it.
"""

from __future__ import annotations

import contextlib
import os
import selectors
import socket
import ssl
import tempfile
import threading
import time
from dataclasses import dataclass

import h2.config
import h2.connection
import h2.events
import h2.exceptions
import h2.settings
import trustme

from poolscope.loopback import bind_new_origin

_DELAYS = {"/slow": 0.1, "/hold": 1.0}
_PREFACE = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"  # a client's first bytes on HTTP/2
_HANDSHAKE_TIMEOUT = 5.0  # a client that connects and never finishes TLS is dropped
# A read of a TLS record still arriving, or a write to a client that reads nothing, waits at
# most this long (the read is tried again; the write gives the connection up).
_IO_TIMEOUT = 0.5
# What a client may do to a connection (reset it, close it, break TLS or HTTP/2): not news.
_CONNECTION_ENDED = (OSError, h2.exceptions.H2Error)


@dataclass
class _Stream:
    method: str
    path: str


class _Connection:
    """One accepted TCP connection: its socket, its h2 state and the thread doing its I/O.

    ``lock`` guards ``h2``, ``streams``, ``dead`` and the wake pipe's write end.
    """

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.h2: h2.connection.H2Connection | None = None
        self.lock = threading.Lock()
        self.streams: dict[int, _Stream] = {}  # open and not yet answered
        self.index: int | None = None  # in H2Server.per_connection, once it spoke HTTP/2
        self.head = b""  # the client's first bytes, up to the preface's length
        self.dead = False
        self.terminated = False  # the client sent GOAWAY
        self.wake_r, self.wake_w = os.pipe()
        os.set_blocking(self.wake_r, False)
        os.set_blocking(self.wake_w, False)
        self.thread: threading.Thread | None = None

    def wake(self) -> None:
        """Have the I/O thread look again (send what the h2 state holds, or see closing)."""
        with self.lock:
            if not self.dead:
                with contextlib.suppress(BlockingIOError):  # a wake-up is already pending
                    os.write(self.wake_w, b"\0")

    def shut_down(self) -> None:
        """Break a read or write in progress, from another thread (the I/O thread closes)."""
        with contextlib.suppress(OSError):
            # The plain socket's shutdown on the descriptor: SSLSocket.shutdown would also drop
            # the SSL object under the I/O thread's feet.
            socket.socket.shutdown(self.sock, socket.SHUT_RDWR)

    def finish(self) -> None:
        with self.lock:
            self.dead = True
            os.close(self.wake_w)
            os.close(self.wake_r)
        with contextlib.suppress(OSError):
            self.sock.close()


class H2Server:
    """``with H2Server() as server: httpx.Client(http2=True, verify=server.client_ssl_context())``.

    ``tls=False`` serves h2c with prior knowledge: ``httpx.Client(http1=False, http2=True)``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        *,
        max_concurrent_streams: int = 100,
        tls: bool = True,
        ca: trustme.CA | None = None,
    ) -> None:
        self.host = host
        self.max_concurrent_streams = max_concurrent_streams
        self.connections = 0  # TCP connections that spoke HTTP/2
        self.requests = 0  # streams answered
        self.peak_streams = 0  # most streams open at once on one connection
        self.per_connection: list[int] = []  # streams answered on each connection
        self.holding = 0  # streams waiting in /hold right now
        self.errors: list[BaseException] = []  # unexpected exceptions in the server's threads
        self.protocol_errors: list[h2.exceptions.ProtocolError] = []  # clients' (each: GOAWAY)
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)  # /slow and /hold wait on it
        self._closing = False
        self._released = False
        self._conns: list[_Connection] = []
        self._workers: list[threading.Thread] = []
        self._tmpdir: tempfile.TemporaryDirectory[str] | None = None

        self.ca: trustme.CA | None = None
        self._server_ctx: ssl.SSLContext | None = None
        if tls:
            self.ca = ca if ca is not None else trustme.CA()
            ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
            names = dict.fromkeys([host, "127.0.0.1", "localhost"])
            self.ca.issue_cert(*names).configure_cert(ctx)
            ctx.set_alpn_protocols(["h2"])
            self._server_ctx = ctx

        family = socket.AF_INET6 if ":" in host else socket.AF_INET

        def bind() -> socket.socket:
            listener = socket.socket(family, socket.SOCK_STREAM)
            listener.bind((host, 0))
            return listener

        self._listener = bind_new_origin(host, bind, _port, socket.socket.close)
        self._listener.listen(64)
        self._listener.setblocking(False)
        self.port: int = self._listener.getsockname()[1]
        self.scheme = "https" if tls else "http"
        netloc = f"[{host}]" if ":" in host else host
        self.url = f"{self.scheme}://{netloc}:{self.port}"
        self._wake_r, self._wake_w = os.pipe()
        self._accept_thread = threading.Thread(
            target=self._accept_loop, name=f"h2server-accept-{self.port}", daemon=True
        )

    # -- the interface -----------------------------------------------------------------------

    def start(self) -> H2Server:
        self._accept_thread.start()
        return self

    def client_ssl_context(self) -> ssl.SSLContext:
        """A new client context that trusts this server's CA (httpx's ``verify=``)."""
        if self.ca is None:
            raise RuntimeError("a cleartext (tls=False) H2Server has no CA")
        ctx = ssl.create_default_context()
        self.ca.configure_trust(ctx)
        return ctx

    @property
    def ca_pem_path(self) -> str:
        """The CA certificate as a PEM file (removed by :meth:`close`)."""
        if self.ca is None:
            raise RuntimeError("a cleartext (tls=False) H2Server has no CA")
        with self._lock:
            if self._tmpdir is None:
                self._tmpdir = tempfile.TemporaryDirectory(prefix="h2server-")
            path = os.path.join(self._tmpdir.name, "ca.pem")
        if not os.path.exists(path):
            self.ca.cert_pem.write_to_path(path)
        return path

    def release(self) -> None:
        """Let streams waiting in ``/hold`` answer now (and every later one at once)."""
        with self._wake:
            self._released = True
            self._wake.notify_all()

    def close(self) -> None:
        """Stop accepting, send GOAWAY on and close every connection, join every thread."""
        with self._wake:
            if self._closing:
                return
            self._closing = True
            self._wake.notify_all()
            conns = list(self._conns)
            workers = list(self._workers)
        os.write(self._wake_w, b"\0")
        for conn in conns:
            if conn.h2 is None:
                conn.shut_down()  # still in its TLS handshake: nothing to say goodbye with
            else:
                conn.wake()
        if self._accept_thread.is_alive():
            self._accept_thread.join(1.0)
        deadline = time.monotonic() + 0.3
        for conn in conns:
            if conn.thread is not None:
                conn.thread.join(max(0.0, deadline - time.monotonic()))
        for conn in conns:  # stuck in a write to a client that reads nothing
            if conn.thread is not None and conn.thread.is_alive():
                conn.shut_down()
                conn.thread.join(0.5)
        for worker in workers:
            worker.join(0.5)
        self._listener.close()
        os.close(self._wake_r)
        os.close(self._wake_w)
        if self._tmpdir is not None:
            self._tmpdir.cleanup()

    def __enter__(self) -> H2Server:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- accepting ---------------------------------------------------------------------------

    def _accept_loop(self) -> None:
        with selectors.DefaultSelector() as sel:
            sel.register(self._listener, selectors.EVENT_READ)
            sel.register(self._wake_r, selectors.EVENT_READ)
            while True:
                sel.select()
                with self._lock:
                    if self._closing:
                        return
                try:
                    sock, _ = self._listener.accept()
                except (BlockingIOError, InterruptedError):
                    continue
                except OSError as exc:  # out of descriptors, say: keep serving the others
                    self._record(exc)
                    time.sleep(0.01)
                    continue
                sock.setblocking(True)
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                conn = _Connection(sock)
                thread = threading.Thread(
                    target=self._serve, args=(conn,), name="h2server-conn", daemon=True
                )
                conn.thread = thread
                with self._lock:
                    if self._closing:
                        conn.finish()
                        return
                    self._conns.append(conn)
                thread.start()

    # -- one connection's I/O thread -----------------------------------------------------------

    def _serve(self, conn: _Connection) -> None:
        try:
            self._handshake_and_serve(conn)
        except _CONNECTION_ENDED:
            pass
        except Exception as exc:
            self._record(exc)
        finally:
            conn.finish()

    def _handshake_and_serve(self, conn: _Connection) -> None:
        sock = conn.sock
        if self._server_ctx is not None:
            sock.settimeout(_HANDSHAKE_TIMEOUT)
            tls = self._server_ctx.wrap_socket(
                sock, server_side=True, do_handshake_on_connect=False
            )
            conn.sock = sock = tls  # wrap_socket took the descriptor over
            with self._lock:
                if self._closing:
                    return
            tls.do_handshake()
            if tls.selected_alpn_protocol() != "h2":
                return  # an HTTP/1.1-only client: this server speaks HTTP/2 only
        sock.settimeout(_IO_TIMEOUT)

        state = h2.connection.H2Connection(h2.config.H2Configuration(client_side=False))
        # In force from the first SETTINGS frame on, not only once the client acknowledges it.
        state.local_settings = h2.settings.Settings(
            client=False,
            initial_values={
                h2.settings.SettingCodes.MAX_CONCURRENT_STREAMS: self.max_concurrent_streams,
                h2.settings.SettingCodes.MAX_HEADER_LIST_SIZE: 65536,
            },
        )
        state.initiate_connection()
        with conn.lock:
            conn.h2 = state

        with selectors.DefaultSelector() as sel:
            sel.register(sock, selectors.EVENT_READ, "sock")
            sel.register(conn.wake_r, selectors.EVENT_READ, "wake")
            while True:
                self._flush(conn, sock, state)
                with self._lock:
                    closing = self._closing
                if closing or conn.terminated:
                    self._goodbye(conn, sock, state)
                    return
                if isinstance(sock, ssl.SSLSocket) and sock.pending():
                    readable = True  # decrypted bytes already inside the SSL object
                else:
                    ready = {key.data for key, _ in sel.select()}
                    if "wake" in ready:
                        with contextlib.suppress(BlockingIOError):
                            os.read(conn.wake_r, 4096)
                    readable = "sock" in ready
                if not readable:
                    continue
                try:
                    data = sock.recv(65536)
                except TimeoutError:
                    continue  # a TLS record still arriving
                if not data:
                    return  # the client closed
                with conn.lock:
                    if conn.index is None:
                        self._count_if_preface(conn, data)
                    try:
                        events = state.receive_data(data)
                    except h2.exceptions.ProtocolError as exc:
                        with self._lock:
                            self.protocol_errors.append(exc)
                        conn.terminated = True  # h2 has queued its GOAWAY: send it, then close
                        continue
                    for event in events:
                        self._on_event(conn, state, event)

    def _count_if_preface(self, conn: _Connection, data: bytes) -> None:
        """Count the connection once the client's first bytes are HTTP/2's preface."""
        conn.head += data[: len(_PREFACE) - len(conn.head)]
        if conn.head == _PREFACE:
            with self._lock:
                conn.index = len(self.per_connection)
                self.per_connection.append(0)
                self.connections += 1

    def _flush(
        self, conn: _Connection, sock: socket.socket, state: h2.connection.H2Connection
    ) -> None:
        with conn.lock:
            out = state.data_to_send()
        if out:
            sock.sendall(out)  # only this thread writes, so frames keep h2's order

    def _goodbye(
        self, conn: _Connection, sock: socket.socket, state: h2.connection.H2Connection
    ) -> None:
        with conn.lock:
            # Not after a GOAWAY either way (h2's own, for a protocol error, or the client's).
            if state.state_machine.state != h2.connection.ConnectionState.CLOSED:
                state.close_connection()
            conn.streams.clear()
        self._flush(conn, sock, state)

    def _on_event(
        self, conn: _Connection, state: h2.connection.H2Connection, event: h2.events.Event
    ) -> None:
        """One h2 event, with ``conn.lock`` held."""
        if isinstance(event, h2.events.RequestReceived):
            headers = {_text(k): _text(v) for k, v in event.headers}
            path = headers.get(":path", "/").split("?", 1)[0]
            conn.streams[event.stream_id] = _Stream(headers.get(":method", "GET"), path)
            with self._lock:
                self.peak_streams = max(self.peak_streams, len(conn.streams))
        elif isinstance(event, h2.events.DataReceived):
            # Read and discarded; the window given back so a long body keeps coming.
            with contextlib.suppress(h2.exceptions.StreamClosedError):
                state.acknowledge_received_data(event.flow_controlled_length, event.stream_id)
        elif isinstance(event, h2.events.StreamEnded):
            stream = conn.streams.get(event.stream_id)
            if stream is None:
                return
            delay = _DELAYS.get(stream.path)
            if delay is None:
                self._answer(conn, event.stream_id)
            else:
                self._answer_later(conn, event.stream_id, delay, hold=stream.path == "/hold")
        elif isinstance(event, h2.events.StreamReset):
            conn.streams.pop(event.stream_id, None)
        elif isinstance(event, h2.events.ConnectionTerminated):
            conn.terminated = True

    # -- answering -----------------------------------------------------------------------------

    def _answer(self, conn: _Connection, stream_id: int) -> bool:
        """Put the answer into the h2 state, with ``conn.lock`` held; False if too late."""
        stream = conn.streams.pop(stream_id, None)  # closed once END_STREAM goes: no longer open
        if stream is None or conn.dead or conn.h2 is None or conn.index is None:
            return False
        if stream.method == "POST":
            body, content_type = b"{}", "application/json"
        else:
            body, content_type = b"ok", "text/plain"
        headers = [
            (":status", "200"),
            ("content-type", content_type),
            ("content-length", str(len(body))),
            ("server", "poolscope-h2server"),
        ]
        head_only = stream.method == "HEAD"
        try:
            conn.h2.send_headers(stream_id, headers, end_stream=head_only)
            if not head_only:
                conn.h2.send_data(stream_id, body, end_stream=True)
        except h2.exceptions.H2Error:  # reset, or the connection going away meanwhile
            return False
        with self._lock:
            self.requests += 1
            self.per_connection[conn.index] += 1
        return True

    def _answer_later(self, conn: _Connection, stream_id: int, delay: float, *, hold: bool) -> None:
        def wait_then_answer() -> None:
            try:
                with self._wake:
                    self.holding += int(hold)
                    self._wake.wait_for(
                        lambda: self._closing or (hold and self._released), timeout=delay
                    )
                    self.holding -= int(hold)
                    if self._closing:
                        return
                with conn.lock:
                    answered = self._answer(conn, stream_id)
                if answered:
                    conn.wake()
            except Exception as exc:
                self._record(exc)

        worker = threading.Thread(target=wait_then_answer, name="h2server-stream", daemon=True)
        with self._lock:
            if self._closing:
                return
            self._workers = [w for w in self._workers if w.is_alive()]
            self._workers.append(worker)
        worker.start()

    def _record(self, exc: BaseException) -> None:
        with self._lock:
            self.errors.append(exc)


def _port(listener: socket.socket) -> int:
    return int(listener.getsockname()[1])


def _text(value: bytes | str) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value
