"""Instrumented urllib3 connection classes: where handshakes, errors and closes are seen.

A connection *object* may carry several network connections: urllib3 reconnects the same
object after it was found dropped or closed. So poolscope counts handshakes in ``connect()``,
not objects in the pool's ``_new_conn()`` (which is what urllib3's "Starting new connection"
log counts).
"""

from __future__ import annotations

import sys
import time
from types import FrameType
from typing import TYPE_CHECKING, Any

from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.exceptions import HTTPError, MaxRetryError, ProtocolError

from . import _phases as phases
from ._events import CloseReason, error_type
from ._recorder import ConnState, internal_error

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

    _poolscope: ConnState | None = None  # set by the pool right after construction
    _poolscope_tls = False
    _poolscope_base: type[Any] = HTTPConnection

    # Exception messages embed str() or repr() of the connection: keep them exactly urllib3's.
    def __str__(self) -> str:
        return as_base_name(super().__str__(), self)

    def __repr__(self) -> str:
        base = self._poolscope_base
        if base.__repr__ is object.__repr__:  # type: ignore[comparison-overlap]
            return f"<{base.__module__}.{base.__qualname__} object at {id(self):#x}>"
        return as_base_name(super().__repr__(), self)

    def _new_conn(self) -> Any:
        # The TCP part of connect(); what connect() spends beyond it is TLS (and tunnelling).
        start = _now()
        sock = super()._new_conn()
        cs = self._poolscope
        if cs is not None:
            cs.tcp_time = _now() - start
            if cs.timing is not None:
                cs.timing.connect_end_ns = time.time_ns()
        return sock

    def connect(self) -> None:
        cs = self._poolscope
        if cs is None:
            return super().connect()
        recorder = cs.pool.recorder
        cs.tcp_time = None
        timing = cs.timing = phases.begin() if recorder.wants_phases() else None
        start = _now()
        try:
            super().connect()
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
            if self._poolscope_tls and cs.tcp_time is not None:
                tls = total - cs.tcp_time
            if timing is not None:
                phases.end(timing)
                tls_version = _tls_version(self.sock) if self._poolscope_tls else None
            recorder.connection_created(cs, total, tls, tls_version)
        except Exception:
            internal_error("connect")

    def close(self) -> None:
        cs = self._poolscope
        if cs is not None:
            try:
                _closing(cs, sys._getframe(1))
            except Exception:
                internal_error("close")
        super().close()


def _tls_version(sock: Any) -> str | None:
    version = getattr(sock, "version", None)
    return version() if callable(version) else None  # e.g. "TLSv1.3"


def as_base_name(text: str, obj: Any) -> str:
    """``text`` with the instrumented class's name, where it leads, put back to its base's."""
    ours = type(obj).__name__
    for prefix in (ours, "<" + ours):
        if text.startswith(prefix):
            return prefix.replace(ours, type(obj)._poolscope_base.__name__) + text[len(prefix) :]
    return text


def _closing(cs: ConnState, caller: FrameType) -> None:
    """Account for ``close()`` on a connection, from who called it and what is being raised.

    This is the rare path (a request on a reused connection never closes it), so it can look
    at the calling frame: that is how poolscope tells urllib3's drop check, http.client's
    "Connection: close" handling and urllib3's cleanup before a retry apart without wrapping
    any method on the reused-connection path.
    """
    where = caller.f_code.co_name
    exc = sys.exc_info()[1]
    recorder = cs.pool.recorder
    retried = None
    if where == "urlopen" and exc is None:
        # urlopen's cleanup after an error it handled: urllib3 retries next. The incremented
        # Retry ends with the error ("Retrying (...) after connection broken by ...").
        history = getattr(caller.f_locals.get("retries"), "history", None)
        if history and history[-1].error is not None:
            retried = history[-1].error
    if cs.open:
        # urllib3's _get_conn closes a connection only when its drop check found it closed.
        dropped = where == "_get_conn"
        if cs.checkout and not dropped:
            recorder.checkout_settled(cs)  # a request went out on it: that was a reuse
        cs.checkout = False
        reason = _close_reason(cs, where, dropped, exc or retried)
        recorder.connection_closed(cs, reason)
        cs.discarding = False
    if retried is not None:
        recorder.request_retried(cs.pool, retry_error_type(retried))


def _close_reason(
    cs: ConnState, where: str, dropped: bool, error: BaseException | None
) -> CloseReason:
    if dropped:
        return CloseReason.DROPPED
    if cs.discarding:
        return CloseReason.POOL_FULL
    pool = cs.pool
    if pool.closed:
        return CloseReason.POOL_CLOSED
    if pool.pool_ref() is None:
        return CloseReason.GARBAGE_COLLECTED
    if where == "getresponse":
        # http.client closes inside getresponse() for "Connection: close", or on a
        # ConnectionError; urllib3 1.26 calls getresponse() while handling a TypeError.
        if isinstance(error, OSError):
            cs.error_type = error_type(error)
            return CloseReason.ERROR
        return CloseReason.SERVER_CLOSED
    if error is not None:
        cs.error_type = error_type(root_error(error))
        return CloseReason.ERROR
    return CloseReason.CLIENT_CLOSED


def root_error(error: BaseException) -> BaseException:
    """The error under urllib3's wrappers: MaxRetryError's reason, ProtocolError's cause,
    and the socket error a urllib3 timeout or connection error was raised from."""
    for _ in range(8):
        if isinstance(error, MaxRetryError) and error.reason is not None:
            error = error.reason
        elif (cause := _protocol_cause(error)) is not None:
            error = cause
        elif isinstance(error, HTTPError) and (error.__cause__ or error.__context__):
            error = error.__cause__ or error.__context__  # type: ignore[assignment]
        else:
            break
    return error


def retry_error_type(error: BaseException) -> str:
    """urllib3 wraps a broken connection in ProtocolError("Connection aborted.", cause): name
    the cause, which tells a reset from a server that closed without answering."""
    return error_type(_protocol_cause(error) or error)


def _protocol_cause(error: BaseException) -> BaseException | None:
    """The exception a ProtocolError("Connection aborted.", cause) wraps, if any."""
    if isinstance(error, ProtocolError) and len(error.args) > 1:
        cause = error.args[1]
        if isinstance(cause, BaseException):
            return cause
    return None


class InstrumentedHTTPConnection(InstrumentedConnectionMixin, HTTPConnection):
    """urllib3's ``HTTPConnection``, reporting to its pool's recorder."""

    _poolscope_base = HTTPConnection


class InstrumentedHTTPSConnection(InstrumentedConnectionMixin, HTTPSConnection):
    """urllib3's ``HTTPSConnection``, reporting TLS handshake time as well."""

    _poolscope_tls = True
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
                "_poolscope_tls": issubclass(base, HTTPSConnection),
                "_poolscope_base": base,
            },
        )
        cls = _connection_classes.setdefault(base, cls)
    return cls
