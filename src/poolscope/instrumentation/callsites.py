"""The rules that read urllib3's and http.client's call sites: why a connection was closed,
whether urllib3 is about to retry, whether a pool left its manager evicted or cleared, and
which threads are in a request when a program stops.

urllib3 says none of this through an API. poolscope learns it on rare paths only (a close, a
pool leaving its manager) from who made the call, and every such reading is in this module.
The call sites relied on are listed, and checked, in :mod:`.call_sites_read`.
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Iterator
from types import FrameType
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool
from urllib3.exceptions import (
    ConnectTimeoutError,
    HTTPError,
    MaxRetryError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
)
from urllib3.util.retry import Retry

from ..core.events import CloseReason, error_type
from ..core.libraries import URLLIB3, library_of_module
from ..core.state import ConnState
from ..core.unknown import Site, unknown_library

# The urllib3 these rules read: "urllib3", or a vendored copy's package ("pip._vendor.urllib3")
# when this module is loaded against one (see copies.py), with the requests beside it.
URLLIB3_PACKAGE = HTTPConnectionPool.__module__.rpartition(".")[0]
REQUESTS_PACKAGE = URLLIB3_PACKAGE[: -len("urllib3")] + "requests"


def account_close(cs: ConnState) -> None:
    """Account for ``close()`` on a connection, from who called it and what is being raised.

    Called by the instrumented connection's ``close()``, so the frame two up is close()'s
    caller. This is the rare path (a request on a reused connection never closes it), so it
    can look at that frame: that is how poolscope tells urllib3's drop check, http.client's
    "Connection: close" handling and urllib3's cleanup before a retry apart without wrapping
    any method on the reused-connection path.
    """
    caller = sys._getframe(2)
    where = caller.f_code.co_name
    # What urlopen raises through; elsewhere looked for only when the reason depends on it.
    exc = _raised_through(caller) if where == "urlopen" else None
    recorder = cs.pool.recorder
    connected = cs.open  # a timeout on a connection never opened was its connect's (TLS)
    retried = None
    retries = caller.f_locals.get("retries") if where == "urlopen" else None
    history = getattr(retries, "history", None)
    if where == "urlopen" and exc is None:
        # urlopen's cleanup after an error it handled: urllib3 retries next. The incremented
        # Retry ends with the error ("Retrying (...) after connection broken by ...").
        if history and history[-1].error is not None:
            retried = history[-1].error
    if cs.open:
        # urllib3's _get_conn closes a connection only when its drop check found it closed.
        dropped = where == "_get_conn"
        if cs.checkout and not dropped:
            cs.count_reuse()  # a request went out on it: that was a reuse
        cs.checkout = False
        reason = _close_reason(cs, caller, where, dropped, exc, retried)
        recorder.connection_closed(cs, reason)
        cs.discarding = False
    if retried is not None:
        timeout = _fired(retried, caller, connected)
        recorder.request_retried(cs.pool, retry_error_type(retried), timeout)
    elif where == "urlopen" and exc is not None:
        # The error is on its way to the program: retries ran out, or were not allowed.
        error = exc.reason if isinstance(exc, MaxRetryError) and exc.reason is not None else exc
        recorder.request_failed(
            cs.pool,
            retry_error_type(error),
            _fired(error, caller, connected),
            _unretried(error, retries, caller),
        )


def _raised_through(frame: FrameType) -> BaseException | None:
    """The exception being raised or handled in ``frame`` (it is on the exception's
    traceback), if any: not one the program is handling in an outer frame of its own while it
    makes this request."""
    exc = sys.exc_info()[1]
    tb = exc.__traceback__ if exc is not None else None
    while tb is not None:
        if tb.tb_frame is frame:
            return exc
        tb = tb.tb_next
    return None


def _unretried(error: BaseException, retries: object, urlopen: FrameType) -> str:
    """The Retry in force, as urllib3 writes it, when ``error`` reached the program only
    because that Retry allowed no retry: a connection error that Retry(total=3) would have
    retried (refused, DNS; reset or closed while reading, for an idempotent method) on a
    request urllib3 had not retried. Empty otherwise: a timeout, a TLS or proxy error, a
    broken POST (urllib3 never retries those), or a request already retried."""
    if retries is None or any(entry.error for entry in getattr(retries, "history", ())):
        return ""
    if isinstance(error, ProtocolError):  # the connection broke while reading the response
        method = str(urlopen.f_locals.get("method", "")).upper()
        if method not in Retry.DEFAULT_ALLOWED_METHODS:
            return ""
    elif not isinstance(error, NewConnectionError):
        return ""
    return repr(retries)


def _fired(error: BaseException, urlopen: FrameType, connected: bool) -> tuple[str, float] | None:
    """Which timeout ``error`` is, if one ("read" or "connect"), with urlopen's read timeout.
    urllib3 raises ReadTimeoutError for a TLS handshake that stalls: that one is the connect's
    (the connection never opened)."""
    if isinstance(error, ReadTimeoutError):
        which = "read" if connected else "connect"
    elif isinstance(error, ConnectTimeoutError) and not isinstance(error, NewConnectionError):
        which = "connect"  # urllib3 2 derives NewConnectionError (refused...) from it
    else:
        return None
    read = getattr(urlopen.f_locals.get("timeout_obj"), "read_timeout", None)
    return which, float(read) if isinstance(read, (int, float)) else 0.0


def _close_reason(
    cs: ConnState,
    caller: FrameType,
    where: str,
    dropped: bool,
    exc: BaseException | None,
    retried: BaseException | None,
) -> CloseReason:
    # ``exc``: what urlopen raises through, when ``where`` is urlopen; ``retried``: the error
    # urlopen handled before it retries.
    if dropped:
        return CloseReason.DROPPED
    if cs.discarding:
        return CloseReason.POOL_FULL
    pool = cs.pool
    if pool.closed:
        return CloseReason.POOL_CLOSED
    if pool.pool_ref() is None:
        return CloseReason.GARBAGE_COLLECTED
    error = (exc if where == "urlopen" else _raised_through(caller)) or retried
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


def making_for(library: str | None) -> None:
    """An instrumented manager is making a pool for ``library`` on this thread (None: done):
    the pool's library is its manager's, with no walk up the stack (a sweep over thousands
    of hosts makes a pool a request)."""
    _making.library = library


def building_library() -> str:
    """Which library is building a pool or a manager right now, asked once as it is made.

    The first frame, from the caller outward past urllib3's and poolscope's own, that belongs
    to a library of :mod:`poolscope.core.libraries`: botocore, elastic-transport, hvac...
    requests only when no other is further out (an SDK that builds a Session has requests'
    frames nearer urllib3 than its own). Else an installed library the table lacks, named by
    :func:`poolscope.core.unknown.unknown_library`; else the program built it:
    ``urllib3`` (or ``requests``). A pool an instrumented manager makes is that manager's
    library's, with no walk (see making_for).
    """
    made_for: str | None = getattr(_making, "library", None)
    if made_for is not None:
        return made_for
    frame: FrameType | None = sys._getframe(1)
    via_requests = False  # requests' frames passed: an SDK further out may own the Session
    for _ in range(_DEPTH):
        if frame is None:
            break
        module = frame.f_globals.get("__name__") or ""
        if module.startswith(_REQUESTS):  # requests' own, or a vendored copy's beside urllib3
            via_requests = True
        elif not module.startswith(_OWN):
            lib = library_of_module(module)
            if lib is not None and lib.name != "requests":
                return lib.name
            via_requests = via_requests or lib is not None
        frame = frame.f_back
    # No library of the table beyond requests: an installed one poolscope has no entry for
    # (building a Session, past requests), or else requests itself, or the program.
    passed = (URLLIB3_PACKAGE, "poolscope", *([REQUESTS_PACKAGE] if via_requests else []))
    words_of = "requests" if via_requests else URLLIB3.name
    unknown = unknown_library(_sites(sys._getframe(1)), passed, words_of)
    return unknown or words_of


def _sites(frame: FrameType | None) -> Iterator[Site]:
    """The call sites from ``frame`` outward, for naming a library the table lacks."""
    for _ in range(_DEPTH):
        if frame is None:
            return
        code = frame.f_code
        function = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
        yield Site(
            frame.f_globals.get("__name__") or "", code.co_filename, frame.f_lineno, function
        )
        frame = frame.f_back


_OWN = (f"{URLLIB3_PACKAGE}.", "poolscope.")
_REQUESTS = f"{REQUESTS_PACKAGE}."
_making = threading.local()  # .library: the library of the manager making a pool right now
_DEPTH = 40  # frames looked at: the library is near the constructor, the program far out


def pools_in_use_by_threads() -> list[Any]:
    """The pool each thread is making a request through right now (sending it, waiting for
    the answer or reading it), one per thread in a request: what tells, when a program stops,
    a connection in flight from one held by a response nobody read. Asked once, at the end.

    A thread is in a request when a frame of urllib3's pool or response code, or of requests'
    adapter or session, is on its stack: the pool is that frame's ``self`` (a pool), its
    ``self._pool`` (a response), or requests' local ``conn`` (the adapter's pool) or ``r`` (a
    Response, whose ``raw`` holds the pool)."""
    pools = []
    for frame in sys._current_frames().values():
        walked: FrameType | None = frame
        for _ in range(_STACK):
            if walked is None:
                break
            pool = _request_pool(walked)
            if pool is not None:
                pools.append(pool)
                break
            walked = walked.f_back
    return pools


def _request_pool(frame: FrameType) -> Any:
    module = frame.f_globals.get("__name__") or ""
    if not module.startswith(_OWN_OR_REQUESTS):
        return None
    local = frame.f_locals
    for candidate in (
        local.get("self"),
        getattr(local.get("self"), "_pool", None),
        local.get("conn") if module == f"{REQUESTS_PACKAGE}.adapters" else None,
        getattr(getattr(local.get("r"), "raw", None), "_pool", None),
    ):
        if isinstance(candidate, HTTPConnectionPool):
            return candidate
    return None


_STACK = 200  # frames looked at per thread
_OWN_OR_REQUESTS = (f"{URLLIB3_PACKAGE}.", _REQUESTS)


def disposed_by_clear() -> bool:
    """Whether the manager's dispose function, the caller of this, runs for a ``clear()``
    (every pool let go at once) rather than for an eviction by a newer pool."""
    return sys._getframe(2).f_code.co_name == "clear"
