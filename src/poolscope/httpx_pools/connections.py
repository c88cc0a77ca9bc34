"""httpcore's connections, observed: a connection opened (its connect time, TLS included, and
its steps: see :mod:`.phases`) or failed, a request on it (a reuse when it was open before), and
its response closed (the connection idle in its pool again). An HTTP/2 connection carries
several requests at once, a stream each: it is in use while one is open, and a request that
finds every stream the server allows in use waits inside the connection. Sync and async
wrappers alike call httpcore's own method and return or raise what it does (see :mod:`.hooks`)."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..core.errors import internal_error
from ..core.state import ConnState
from ..core.stats import count_use
from .errors import request_failed
from .phases import AsyncSteps, Steps, traced

_now = time.monotonic


def opened(
    conn: Any, cs: ConnState, request: Any, stream: Any, took: float, tls: float | None
) -> None:
    """``conn`` is open on ``stream``, opened for ``request`` in ``took`` seconds (``tls`` of
    them the TLS handshake's, if known): over HTTP/2 or not, and counted created."""
    ssl_object = stream.get_extra_info("ssl_object")
    tls_version = ssl_object.version() if ssl_object is not None else None
    timeout = request.extensions.get("timeout", {}).get("connect") is not None
    alpn = ssl_object.selected_alpn_protocol() if ssl_object is not None else None
    # httpcore's own test for HTTP/2: negotiated over TLS, or with prior knowledge.
    if alpn == "h2" or (conn._http2 and not conn._http1):
        cs.multiplexed, cs.opened_by = True, id(request)
    cs.pool.recorder.connection_created(cs, took, tls, tls_version, connect_timeout=timeout)


def _opened(conn: Any, request: Any, stream: Any, started: float, steps: Steps) -> None:
    cs: ConnState | None = getattr(conn, "_poolscope", None)
    if cs is None:
        return
    try:
        steps.timing.end_ns = time.time_ns()
        cs.timing = steps.timing if cs.pool.recorder.sinks.wants_phases() else None
        opened(conn, cs, request, stream, _now() - started, steps.tls_time())
    except Exception:
        internal_error("httpx connect")


def _failed(conn: Any, exc: BaseException, started: float, steps: Steps) -> None:
    cs: ConnState | None = getattr(conn, "_poolscope", None)
    if cs is not None:
        try:
            steps.timing.end_ns = time.time_ns()
            recorder = cs.pool.recorder
            cs.timing = steps.timing if recorder.sinks.wants_phases() else None
            recorder.connect_failed(cs, exc, _now() - started)
        except Exception:
            internal_error("httpx connect")


# A connect is timed step by step through httpcore's trace extension (see .phases): the
# request's extensions are a copy with poolscope's callback for as long as the connect runs.


def sync_connect(connect: Callable[..., Any]) -> Callable[..., Any]:
    def _connect(self: Any, request: Any) -> Any:
        if getattr(self, "_poolscope", None) is None:
            return connect(self, request)
        steps = Steps()
        extensions = traced(request, steps)
        started = _now()
        try:
            stream = connect(self, request)
        except Exception as exc:
            _failed(self, exc, started, steps)
            raise
        finally:
            if extensions is not None:
                request.extensions = extensions
        _opened(self, request, stream, started, steps)
        return stream

    return _connect


def async_connect(connect: Callable[..., Any]) -> Callable[..., Any]:
    async def _connect(self: Any, request: Any) -> Any:
        if getattr(self, "_poolscope", None) is None:
            return await connect(self, request)
        steps = AsyncSteps()
        extensions = traced(request, steps)
        started = _now()
        try:
            stream = await connect(self, request)
        except Exception as exc:
            _failed(self, exc, started, steps)
            raise
        finally:
            if extensions is not None:
                request.extensions = extensions
        _opened(self, request, stream, started, steps)
        return stream

    return _connect


def _taken(cs: ConnState) -> bool:
    """A request is about to go out on its connection: out of the idle ones (True if it was
    one)."""
    if not cs.in_pool:
        return False
    cs.in_pool = False
    stats = cs.stats
    stats.idle -= 1
    in_use = stats.open - stats.idle
    if in_use > stats.peak_since:  # a new connection's, connection_created counts
        stats.peak_since = in_use
        if in_use > stats.peak_in_use:
            stats.peak_in_use = in_use
    return True


def _served(cs: ConnState, sent: float, waited: bool = False) -> None:
    """A request sent on an open connection at ``sent`` got its response: a reuse (on HTTP/2,
    after ``waited`` for a stream, or not), idle until ``sent`` and in use from then."""
    try:
        if waited:
            cs.stats.stream_waits += 1
        cs.pool.recorder.connection_reused(cs, sent)
    except Exception:
        internal_error("httpx request")


# HTTP/2: a stream opened as a request goes out on a connection known to be HTTP/2, closed as
# its response is (or as the request fails); the connection is in use while one is open. Each
# request's time on its stream is its response time: when it went out is kept on httpcore's
# request (``_poolscope_sent``), for its response's close to read.


def _one_stream_more(cs: ConnState) -> int:
    """A stream opened on ``cs``: its streams open now, the pool's peak raised to them."""
    streams = cs.streams = cs.streams + 1
    stats = cs.stats
    if streams > stats.streams_peak:
        stats.streams_peak = streams
    return streams


def _stream_opened(conn: Any, cs: ConnState, request: Any, sent: float) -> bool:
    """``request`` is about to open a stream on ``conn``: True if every stream the server
    allows is in use already (httpcore makes it wait for one)."""
    try:
        streams = _one_stream_more(cs)
        if streams == 1:
            _taken(cs)
        request._poolscope_sent = sent
        stats = cs.stats
        allowed: int = getattr(conn._connection, "_max_streams", 0)
        if allowed > stats.stream_limit:
            stats.stream_limit = allowed
        return 0 < allowed < streams
    except Exception:
        internal_error("httpx stream")
        return False


def _stream_failed(conn: Any) -> None:
    """A request on an HTTP/2 connection failed: its stream is done (see _back)."""
    try:
        _back(conn)
    except Exception:
        internal_error("httpx stream")


def first_streams(conn: Any, cs: ConnState, request: Any, sent: float) -> None:
    """A request got its response on an HTTP/2 connection opened as it came (it, or another
    that came at once and waited for the connect: a reuse): its stream is open until its
    response is closed."""
    try:
        if _one_stream_more(cs) == 1:  # the others' responses all closed already: idle no
            _taken(cs)  # longer
        request._poolscope_sent = sent
        if id(request) != cs.opened_by and cs.open:
            _served(cs, sent)
    except Exception:
        internal_error("httpx stream")


def _not_served(conn: Any, taken: bool) -> None:
    """The request did not go out on ``conn`` after all (httpcore's ConnectionNotAvailable,
    or an error): an idle connection taken for it is idle again."""
    if taken and not conn.is_closed() and conn.is_idle():
        _back(conn)


# A request on a connection: counted (idle, in use, reused) once its pool counts; until then
# the wrapper costs one test.


def sync_request(handle: Callable[..., Any]) -> Callable[..., Any]:
    def handle_request(self: Any, request: Any) -> Any:
        cs: ConnState | None = getattr(self, "_poolscope", None)
        if cs is None or not cs.pool.counting:
            return handle(self, request)
        if cs.multiplexed:
            sent = _now()
            waited = _stream_opened(self, cs, request, sent)
            try:
                response = handle(self, request)
            except BaseException as exc:
                _stream_failed(self)
                request_failed(cs, exc, request)
                raise
            if cs.open:
                _served(cs, sent, waited)
            return response
        reused = self._connection is not None
        taken = _taken(cs)
        sent = _now()
        try:
            response = handle(self, request)
        except BaseException as exc:
            _not_served(self, taken)
            request_failed(cs, exc, request)
            raise
        if reused and cs.open:
            _served(cs, sent)
        elif cs.multiplexed:
            first_streams(self, cs, request, sent)
        return response

    return handle_request


def async_request(handle: Callable[..., Any]) -> Callable[..., Any]:
    async def counted(self: Any, request: Any, cs: ConnState) -> Any:
        if cs.multiplexed:
            sent = _now()
            waited = _stream_opened(self, cs, request, sent)
            try:
                response = await handle(self, request)
            except BaseException as exc:
                _stream_failed(self)
                request_failed(cs, exc, request)
                raise
            if cs.open:
                _served(cs, sent, waited)
            return response
        reused = self._connection is not None
        taken = _taken(cs)
        sent = _now()
        try:
            response = await handle(self, request)
        except BaseException as exc:
            _not_served(self, taken)
            request_failed(cs, exc, request)
            raise
        if reused and cs.open:
            _served(cs, sent)
        elif cs.multiplexed:
            first_streams(self, cs, request, sent)
        return response

    # Not a coroutine function: until the pool counts, it returns httpcore's own coroutine for
    # the caller to await (see hooks), with no coroutine of poolscope's in between.
    def handle_async_request(self: Any, request: Any) -> Any:
        cs: ConnState | None = getattr(self, "_poolscope", None)
        if cs is None or not cs.pool.counting:
            return handle(self, request)
        return counted(self, request, cs)

    return handle_async_request


def _back(conn: Any, request: Any = None) -> None:
    """The request on ``conn`` (``request``, if its response was read) is done: the
    connection is idle in its pool (if it closes instead, the pool's pass that lets it go
    accounts for that)."""
    cs: ConnState | None = getattr(conn, "_poolscope", None)
    if cs is None or not cs.open or cs.in_pool or not cs.pool.counting:
        return
    if cs.multiplexed:
        sent: float = getattr(request, "_poolscope_sent", 0.0)
        if sent and cs.stats.timed:
            count_use(cs.stats, _now() - sent)
        cs.streams = streams = max(cs.streams - 1, 0)
        if streams:
            return  # other requests have streams on it: still in use
        cs.taken_at = 0.0  # its requests' times are counted stream by stream
    cs.in_pool = True
    cs.idle_since = now = _now()
    stats = cs.stats
    stats.idle += 1
    if cs.taken_at:
        count_use(stats, now - cs.taken_at)
        cs.taken_at = 0.0


# The response's close: counted idle before httpcore's own close runs, whose pass may hand the
# connection to a waiting request at once (which takes it out of the idle ones again).


def _returning(conn: Any, request: Any) -> None:
    try:
        _back(conn, request)
    except Exception:
        internal_error("httpx return")


# Until the pool counts, a close costs one test (what _back would find).


def sync_returned(close: Callable[..., Any]) -> Callable[..., Any]:
    def close_stream(self: Any) -> None:
        if not self._closed:
            conn = self._pool_request.connection
            cs: ConnState | None = getattr(conn, "_poolscope", None)
            if cs is not None and cs.pool.counting:
                _returning(conn, self._pool_request.request)
        close(self)

    return close_stream


def async_returned(close: Callable[..., Any]) -> Callable[..., Any]:
    # Not a coroutine function: it returns httpcore's own coroutine for the caller to await
    # (httpx awaits it at once, so the connection counts idle just before, as in sync).
    def aclose(self: Any) -> Any:
        if not self._closed:
            conn = self._pool_request.connection
            cs: ConnState | None = getattr(conn, "_poolscope", None)
            if cs is not None and cs.pool.counting:
                _returning(conn, self._pool_request.request)
        return close(self)

    return aclose
