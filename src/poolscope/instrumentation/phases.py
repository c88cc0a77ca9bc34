"""When each phase of opening a connection happened: DNS lookup, socket connect, TLS handshake.

urllib3 resolves and connects inside one call (``create_connection``), so poolscope learns where
one phase ends and the next begins from Python's audit events: ``socket.getaddrinfo`` starts the
lookup, the first ``socket.connect`` starts the TCP connect (and names the peer address). The
audit hook is installed once, the first time a connection is timed by phase (when a sink wants
phases: the span sink with an SDK behind it), and cannot be removed, as no audit hook can; for
every thread not opening an instrumented connection it costs one prefix test and one
thread-local read per socket audit event.
"""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

from ..core.events import ConnectTiming

_local = threading.local()
_installed = False
_install_lock = threading.Lock()


def begin() -> ConnectTiming:
    """Start timing a connection attempt on this thread (installing the audit hook once)."""
    if not _installed:
        install()
    timing = ConnectTiming()
    _local.timing = timing
    return timing


def end(timing: ConnectTiming) -> None:
    timing.end_ns = time.time_ns()
    _local.timing = None


def install() -> None:
    global _installed
    with _install_lock:
        if not _installed:
            sys.addaudithook(_audit)
            _installed = True


def _audit(event: str, args: tuple[Any, ...]) -> None:
    # An exception here would surface in the audited socket call: never raise.
    if not event.startswith("socket."):
        return
    try:
        timing: ConnectTiming | None = getattr(_local, "timing", None)
        if timing is None:
            return
        if event == "socket.getaddrinfo":
            if timing.dns_start_ns is None:
                timing.dns_start_ns = time.time_ns()
        elif event == "socket.connect":
            now = time.time_ns()
            if timing.connect_start_ns is None:
                timing.connect_start_ns = now
                if timing.dns_start_ns is not None:
                    timing.dns_end_ns = now
            address = args[1]
            if isinstance(address, tuple) and len(address) >= 2:
                timing.peer = (str(address[0]), int(address[1]))
    except BaseException:
        pass
