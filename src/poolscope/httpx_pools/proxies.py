"""Connections through a proxy, observed: httpcore's ``HTTPProxy`` and ``SOCKSProxy`` pools
(``httpx.Client(proxy=...)``) make connections of their own classes, and this module is the one
that knows their shapes.

- A forwarding connection (``ForwardHTTPConnection``, a plain ``http://`` target) holds an
  ``HTTPConnection`` to the proxy, made with it and used for every request it sends: that one is
  the network connection, so it carries the pool's mark too and the connection wrappers count it
  as they count a direct one (its connect, its requests, its reuses).
- A tunnel (``TunnelHTTPConnection``: ``CONNECT``, then TLS to the target) and a SOCKS5
  connection (``Socks5Connection``) connect inside their own ``handle_request``, with no
  ``_connect`` to wrap. The request that opens one carries a ``trace`` callback of poolscope's
  (httpcore's own extension, the user's own callback called as before): the connection is open
  at the first step traced once the tunnel is through (or the SOCKS handshake and its TLS), and
  its connect time runs from the request's arrival to then. Once open, a request on it is
  counted by the same wrapper as a direct connection's.

Every connection through a proxy counts once, in the pool state of its pool and target: httpcore
keeps a proxy's connections per target, forwarded or tunnelled (docs/decisions.md), and the
pool state names the proxy as ``scheme://host:port``, never its credentials.
"""

from __future__ import annotations

import importlib
import time
from collections.abc import Callable
from typing import Any

from ..core.errors import internal_error
from ..core.state import ConnState
from .connections import async_request, first_streams, opened, sync_request
from .phases import AsyncChained, Steps, traced

_now = time.monotonic

Wrap = Callable[[Callable[..., Any]], Callable[..., Any]]
Patch = tuple[type[Any], str, Wrap]

# The forwarding connection classes of every httpcore hooked (sync and async).
_FORWARDING: set[type[Any]] = set()


def proxy_address(pool: Any) -> str | None:
    """``scheme://host:port`` of the proxy ``pool`` goes through (httpcore's ``_proxy_url``,
    which never holds credentials: httpx hands them over as ``proxy_auth``), or None."""
    url = getattr(pool, "_proxy_url", None)
    if url is None:
        return None
    origin = url.origin  # its port filled in from the scheme when the URL has none
    host = origin.host.decode("ascii")
    host = f"[{host}]" if ":" in host else host
    return f"{origin.scheme.decode('ascii')}://{host}:{origin.port}"


def expired(conn: Any, now: float) -> bool:
    """``conn``'s HTTP/1.1 connection is idle past its ``keepalive_expiry``: a direct
    connection's (or an open tunnel's, or SOCKS connection's) is its ``_connection``, a
    forwarding connection's one further in, that of its connection to the proxy."""
    inner = getattr(conn, "_connection", None)
    expire_at = getattr(inner, "_expire_at", None)
    if expire_at is None:
        expire_at = getattr(getattr(inner, "_connection", None), "_expire_at", None)
    return expire_at is not None and now > expire_at


def proxied(wrap: Wrap) -> Wrap:
    """``wrap``, hooks' ``create_connection`` wrapper, for a pool class of its own (a proxy's):
    a forwarding connection's connection to the proxy carries its mark too."""

    def wrapping(create: Callable[..., Any]) -> Callable[..., Any]:
        created = wrap(create)

        def create_connection(self: Any, origin: Any) -> Any:
            conn = created(self, origin)
            if type(conn) in _FORWARDING:
                cs: ConnState | None = getattr(conn, "_poolscope", None)
                if cs is not None:
                    conn._connection._poolscope = cs  # the network connection, counted there
            return conn

        return create_connection

    return wrapping


def proxy_patches(name: str) -> list[Patch]:
    """The methods of httpcore ``name``'s proxy connections to wrap: a tunnel's and a SOCKS5
    connection's request (SOCKS only when ``socksio`` is installed, as httpcore's own)."""
    try:
        sync_http = importlib.import_module(f"{name}._sync.http_proxy")
        async_http = importlib.import_module(f"{name}._async.http_proxy")
    except ImportError:
        return []
    _FORWARDING.update((sync_http.ForwardHTTPConnection, async_http.AsyncForwardHTTPConnection))
    patches: list[Patch] = [
        (sync_http.TunnelHTTPConnection, "handle_request", lambda f: _sync(f, _tunnelled)),
        (
            async_http.AsyncTunnelHTTPConnection,
            "handle_async_request",
            lambda f: _async(f, _tunnelled),
        ),
    ]
    try:
        sync_socks = importlib.import_module(f"{name}._sync.socks_proxy")
        async_socks = importlib.import_module(f"{name}._async.socks_proxy")
    except ImportError:  # no socksio
        return patches
    patches.append((sync_socks.Socks5Connection, "handle_request", lambda f: _sync(f, _open)))
    patches.append(
        (async_socks.AsyncSocks5Connection, "handle_async_request", lambda f: _async(f, _open))
    )
    return patches


def _tunnelled(conn: Any) -> bool:
    return bool(conn._connected)  # set once CONNECT and TLS are through


def _open(conn: Any) -> bool:
    return conn._connection is not None  # a SOCKS connection's, made once it is through


class _Opening(Steps):
    """A request that may open a connection through a proxy, as the ``trace`` callback it
    carries (its steps timed as a direct connect's). It opens it if it saw a step of the
    connect (the connect to the proxy comes first, always traced): the connection counts as
    created at the first step traced once it is open. A request that waited for another's
    connect (HTTP/2) sees none: not its own."""

    __slots__ = ("conn", "connecting", "cs", "done", "established", "request", "started")

    def __init__(
        self, conn: Any, cs: ConnState, request: Any, established: Callable[[Any], bool]
    ) -> None:
        super().__init__()
        self.conn, self.cs, self.request, self.established = conn, cs, request, established
        self.started = _now()
        self.connecting = False  # a step of the connect was traced
        self.done = False  # the connection was found open

    def note(self, name: str, info: dict[str, Any]) -> None:
        super().note(name, info)
        try:
            self.step()
        except Exception:
            internal_error("httpx proxy connect")

    def step(self) -> None:
        if self.done:
            return
        if not self.established(self.conn):
            self.connecting = True
            return
        self.done = True
        if self.connecting:
            self._created()

    def _ended(self) -> None:
        self.timing.end_ns = time.time_ns()
        cs = self.cs
        cs.timing = self.timing if cs.pool.recorder.sinks.wants_phases() else None

    def _created(self) -> None:
        # The tunnel's TLS time takes in its CONNECT, as urllib3's does.
        try:
            self._ended()
            conn, took = self.conn, _now() - self.started
            stream = conn._connection._network_stream
            opened(conn, self.cs, self.request, stream, took, self.tls_time())
        except Exception:
            internal_error("httpx proxy connect")

    def failed(self, exc: BaseException) -> None:
        """The request failed: if it was connecting and the connection is not open, the
        connect failed."""
        if self.done or not self.connecting or not isinstance(exc, Exception):
            return
        if self.established(self.conn):
            self.step()  # open after all, the request failing after
            return
        try:
            self._ended()
            self.cs.pool.recorder.connect_failed(self.cs, exc, _now() - self.started)
        except Exception:
            internal_error("httpx proxy connect")

    def served(self) -> None:
        """The request got its response: on HTTP/2, its stream is open until it is closed
        (a reuse if another request opened the connection)."""
        self.step()
        cs = self.cs
        if cs.multiplexed and cs.pool.counting:
            first_streams(self.conn, cs, self.request, self.started)


class _AsyncOpening(AsyncChained, _Opening):
    """The same, for async clients."""

    __slots__ = ()


def _sync(handle: Callable[..., Any], established: Callable[[Any], bool]) -> Callable[..., Any]:
    counted = sync_request(handle)  # open: a request on it is counted as on a direct one

    def handle_request(self: Any, request: Any) -> Any:
        cs: ConnState | None = getattr(self, "_poolscope", None)
        if cs is None:
            return handle(self, request)
        if established(self):
            return counted(self, request)
        opening = _Opening(self, cs, request, established)
        extensions = traced(request, opening)
        try:
            response = handle(self, request)
        except BaseException as exc:
            opening.failed(exc)
            raise
        finally:
            if extensions is not None:
                request.extensions = extensions
        opening.served()
        return response

    return handle_request


def _async(handle: Callable[..., Any], established: Callable[[Any], bool]) -> Callable[..., Any]:
    counted = async_request(handle)

    async def opening_request(self: Any, request: Any, cs: ConnState) -> Any:
        opening = _AsyncOpening(self, cs, request, established)
        extensions = traced(request, opening)
        try:
            response = await handle(self, request)
        except BaseException as exc:
            opening.failed(exc)
            raise
        finally:
            if extensions is not None:
                request.extensions = extensions
        opening.served()
        return response

    # Not a coroutine function: on an open connection, it returns what a direct connection's
    # wrapper returns (httpcore's own coroutine until the pool counts; see hooks).
    def handle_async_request(self: Any, request: Any) -> Any:
        cs: ConnState | None = getattr(self, "_poolscope", None)
        if cs is None:
            return handle(self, request)
        if established(self):
            return counted(self, request)
        return opening_request(self, request, cs)

    return handle_async_request
