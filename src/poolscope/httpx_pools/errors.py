"""The errors a request on an httpcore connection raises to the program (as httpx's own
exceptions of the same names: ``httpx.ReadTimeout`` for httpcore's ``ReadTimeout``), and which
timeout fired, for the report's timeout advice. httpcore's pool retries nothing but a request
its connection turned away (``ConnectionNotAvailable``, sent again on another connection), so
every other error a connection raises reaches the program."""

from __future__ import annotations

from typing import Any

from ..core.errors import internal_error
from ..core.events import error_type
from ..core.request_reports import FiredTimeout
from ..core.state import ConnState

# httpcore's exceptions for a timeout that fired, by which timeout it was.
_TIMEOUTS = {"ReadTimeout": "read", "ConnectTimeout": "connect", "WriteTimeout": "write"}


def request_failed(cs: ConnState, exc: BaseException, request: Any) -> None:
    """The request ``request`` on ``cs``'s connection raised ``exc``: counted as an error
    that reached the program, unless httpcore sends it again on another connection."""
    if not isinstance(exc, Exception) or type(exc).__name__ == "ConnectionNotAvailable":
        return
    try:
        which = _TIMEOUTS.get(type(exc).__name__)
        fired: FiredTimeout = None
        if which == "read" or which == "connect":
            read = request.extensions.get("timeout", {}).get("read")
            fired = which, float(read) if isinstance(read, (int, float)) else 0.0
        cs.pool.recorder.request_failed(cs.pool, error_type(exc), fired, "")
    except Exception:
        internal_error("httpx error")
