"""Instrumented urllib3 connection classes: where handshakes, errors and closes are seen.

A connection *object* may carry several network connections: urllib3 reconnects the same
object after it was found dropped or closed. So poolscope counts handshakes in ``connect()``,
not objects in the pool's ``_new_conn()`` (which is what urllib3's "Starting new connection"
log counts).
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from urllib3.connection import HTTPConnection, HTTPSConnection

from ..core.errors import internal_error
from ..core.events import error_type
from ..core.state import ConnState, PoolState
from . import phases
from .callsites import account_close

_now = time.perf_counter

if TYPE_CHECKING:
    _ConnectionBase = HTTPConnection
else:
    _ConnectionBase = object


class InstrumentedConnectionMixin(_ConnectionBase):
    """Reports one urllib3 connection's handshakes, errors and closes to its pool's recorder.

    No ``__slots__`` and no ``__init__``: the mixin adds no layout, so an existing connection
    can take this class (``__class__`` assignment) and give it back unchanged.
    """

    # Set by the pool right after construction. No class default: from Python 3.12 a class
    # attribute of the same name keeps the interpreter from specializing the instance reads
    # the pool's checkouts and returns make (see idle_queue.py); its own methods here run once
    # per connection and read it with getattr().
    _poolscope: ConnState | None
    _poolscope_base: type[Any] = HTTPConnection

    # Another thread may give the connection its own class back (uninstrumenting) at any
    # moment, even between the lookup of one of these methods and its first line: each takes
    # its base's method with base_method() below, not super(), and reads nothing that only
    # this class has.

    # Exception messages embed str() or repr() of the connection: keep them exactly urllib3's.

    def __str__(self) -> str:
        return as_base_name(base_method(InstrumentedConnectionMixin, self, "__str__")(), self)

    def __repr__(self) -> str:
        base = getattr(type(self), "_poolscope_base", type(self))
        if base.__repr__ is object.__repr__:
            return f"<{base.__module__}.{base.__qualname__} object at {id(self):#x}>"
        return as_base_name(base_method(InstrumentedConnectionMixin, self, "__repr__")(), self)

    def _new_conn(self) -> Any:
        # The TCP part of connect(); what connect() spends beyond it is TLS (and tunnelling).
        new_conn = base_method(InstrumentedConnectionMixin, self, "_new_conn")
        start = _now()
        sock = new_conn()
        cs = getattr(self, "_poolscope", None)
        if cs is not None:
            cs.tcp_time = _now() - start
            if cs.timing is not None:
                cs.timing.connect_end_ns = time.time_ns()
        return sock

    def connect(self) -> None:
        connect = base_method(InstrumentedConnectionMixin, self, "connect")
        cs = getattr(self, "_poolscope", None)
        if cs is None:
            connect()
            return
        recorder = cs.pool.recorder
        is_tls = isinstance(self, HTTPSConnection)
        cs.tcp_time = None
        timing = cs.timing = phases.begin() if recorder.sinks.wants_phases() else None
        start = _now()
        try:
            connect()
        except BaseException as exc:
            elapsed = _now() - start
            try:
                if timing is not None:
                    phases.end(timing)
                cs.error_type = error_type(exc)
                recorder.connect_failed(cs, exc, elapsed)
            except Exception:
                internal_error("connect")
            raise
        total = _now() - start
        try:
            tls = tls_version = None
            if is_tls and cs.tcp_time is not None:
                tls = total - cs.tcp_time
            if timing is not None:
                phases.end(timing)
                tls_version = _tls_version(self.sock) if is_tls else None
            # The socket's timeout is the connect timeout until urllib3 sets the read one (a
            # socket that cannot say, as pyOpenSSL's wrapper, counts as timed: not known).
            gettimeout = getattr(self.sock, "gettimeout", None)
            timed = gettimeout is None or gettimeout() is not None
            recorder.connection_created(cs, total, tls, tls_version, connect_timeout=timed)
        except Exception:
            internal_error("connect")

    def close(self) -> None:
        # Taken first: reporting the close may uninstrument (a log handler, say).
        close = base_method(InstrumentedConnectionMixin, self, "close")
        cs = getattr(self, "_poolscope", None)
        if cs is not None:
            try:
                account_close(cs)  # reads who called close(): see callsites
            except Exception:
                internal_error("close")
        close()


def _tls_version(sock: Any) -> str | None:
    version = getattr(sock, "version", None)
    return version() if callable(version) else None  # e.g. "TLSv1.3"


def base_method(mixin: type[Any], obj: Any, name: str) -> Any:
    """The bound method ``name`` that ``super(mixin, obj)`` finds; once another thread has
    given ``obj`` its own class back (super() then raises TypeError), that class's method."""
    try:
        return getattr(super(mixin, obj), name)
    except TypeError:  # no longer an instance of mixin
        return getattr(obj, name)


def as_base_name(text: str, obj: Any) -> str:
    """``text`` with the instrumented class's name, where it leads, put back to its base's."""
    cls = type(obj)
    base = getattr(cls, "_poolscope_base", cls)  # cls itself: uninstrumented meanwhile
    ours = cls.__name__
    for prefix in (ours, "<" + ours):
        if text.startswith(prefix):
            return prefix.replace(ours, base.__name__) + text[len(prefix) :]
    return text


class InstrumentedHTTPConnection(InstrumentedConnectionMixin, HTTPConnection):
    """urllib3's ``HTTPConnection``, reporting to its pool's recorder."""

    _poolscope_base = HTTPConnection


class InstrumentedHTTPSConnection(InstrumentedConnectionMixin, HTTPSConnection):
    """urllib3's ``HTTPSConnection``, reporting TLS handshake time as well."""

    _poolscope_base = HTTPSConnection


_connection_classes: dict[type[Any], type[Any]] = {
    HTTPConnection: InstrumentedHTTPConnection,
    HTTPSConnection: InstrumentedHTTPSConnection,
}


def instrumented_connection_class(base: type[Any]) -> type[Any]:
    """The instrumented subclass of a connection class (made once per class, then cached)."""
    if issubclass(base, InstrumentedConnectionMixin):
        return base
    cls = _connection_classes.get(base)
    if cls is None:
        cls = type(
            f"Instrumented{base.__name__}",
            (InstrumentedConnectionMixin, base),
            {
                "__module__": __name__,
                "_poolscope_base": base,
            },
        )
        cls = _connection_classes.setdefault(base, cls)
    return cls


def adopt_connection(ps: PoolState, conn: Any) -> ConnState:
    """Instrument a connection made before its pool was instrumented."""
    if not isinstance(conn, InstrumentedConnectionMixin):
        conn.__class__ = instrumented_connection_class(type(conn))
    cs: ConnState = ps.recorder.new_connection(
        ps, conn, connected=getattr(conn, "sock", None) is not None
    )
    conn._poolscope = cs
    return cs


def detach_connection(conn: Any) -> None:
    cs = getattr(conn, "_poolscope", None)
    if cs is not None:
        del conn._poolscope
        cs.forget()
    if isinstance(conn, InstrumentedConnectionMixin):
        conn.__class__ = type(conn)._poolscope_base
