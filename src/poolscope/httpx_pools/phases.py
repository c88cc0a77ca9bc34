"""poolscope's callbacks in httpcore's own ``trace`` extension, and what they read from it: when
each step of opening a connection happened (its TCP connect, name resolution included: httpcore
resolves inside it; the peer it reached; the TLS handshake), for the TLS time and the connection
spans, and, for a connection through a proxy, that its connect was under way (:mod:`.proxies`).

For the one request that may open a connection, poolscope's callback is handed to httpcore in a
copy of that request's extensions, in front of the program's own ``trace`` callback if it has
one, and the request's own extensions are put back as it returns. The program's callback is
called with the same arguments as without poolscope, and what it returns (or raises) is
httpcore's to handle, so a callback of the wrong kind (sync on an async client, or the other
way) is refused by httpcore as it would have been.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..core.errors import internal_error
from ..core.events import ConnectTiming


class Chained:
    """A trace callback of poolscope's in front of the program's own (sync clients): notes
    each step, then calls the program's callback and returns what it returns."""

    __slots__ = ("user",)

    def __init__(self) -> None:
        self.user: Callable[..., Any] | None = None  # the program's own trace callback

    def __call__(self, name: str, info: dict[str, Any]) -> Any:
        self.note(name, info)
        if self.user is not None:
            return self.user(name, info)
        return None

    def note(self, name: str, info: dict[str, Any]) -> None:
        """One step httpcore traced (``name`` as ``connection.connect_tcp.started``); it
        never raises."""


class AsyncChained(Chained):
    """The same, for async clients: httpcore awaits what the callback returns, the program's
    own callback's coroutine, or one that does nothing."""

    __slots__ = ()

    def __call__(self, name: str, info: dict[str, Any]) -> Any:
        self.note(name, info)
        if self.user is not None:
            return self.user(name, info)
        return _nothing()


async def _nothing() -> None:
    return None


def traced(request: Any, callback: Chained) -> dict[str, Any] | None:
    """Hand ``request`` to httpcore with ``callback`` in a copy of its extensions, in front of
    the program's own; returns the extensions to put back once httpcore returns (None: left as
    they were)."""
    try:
        extensions: dict[str, Any] = request.extensions
        callback.user = extensions.get("trace")
        request.extensions = {**extensions, "trace": callback}
    except Exception:
        internal_error("httpx trace")
        return None
    return extensions


class Steps(Chained):
    """The steps of one connect, noted as httpcore traces them."""

    __slots__ = ("timing", "tls")

    def __init__(self) -> None:
        super().__init__()
        self.timing = ConnectTiming()  # its start: now
        self.tls = False  # the TLS handshake completed

    def note(self, name: str, info: dict[str, Any]) -> None:
        try:
            step = name.partition(".")[2]  # "connection.connect_tcp.started" -> its step
            timing = self.timing
            if step in ("connect_tcp.started", "connect_unix_socket.started"):
                timing.connect_start_ns = time.time_ns()  # a retry's attempt replaces the last
                timing.connect_end_ns = None
            elif step == "connect_tcp.complete":
                timing.connect_end_ns = time.time_ns()
                peer = info["return_value"].get_extra_info("server_addr")
                if isinstance(peer, tuple) and len(peer) >= 2:
                    timing.peer = (str(peer[0]), int(peer[1]))
            elif step == "connect_unix_socket.complete":
                timing.connect_end_ns = time.time_ns()
            elif step == "start_tls.complete":
                self.tls = True
        except Exception:
            internal_error("httpx connect steps")

    def tls_time(self) -> float | None:
        """Seconds from the TCP connection up to the end of the connect, if TLS was done."""
        timing = self.timing
        if not self.tls or timing.connect_end_ns is None or timing.end_ns is None:
            return None
        return (timing.end_ns - timing.connect_end_ns) / 1e9


class AsyncSteps(AsyncChained, Steps):
    """The steps of one connect, for async clients."""

    __slots__ = ()
