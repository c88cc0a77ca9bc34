"""When each step of opening an httpcore connection happened, read from httpcore's own ``trace``
extension: its TCP connect (name resolution included: httpcore resolves inside it), the peer
it reached, and the TLS handshake, for the TLS time and the connection spans.

For the one connect a request makes, poolscope's callback is handed to httpcore in a copy of
that request's extensions, in front of the program's own ``trace`` callback if it has one (which
is then called with the same arguments, and whose result or exception is httpcore's, as
without poolscope); the request's own extensions are put back as the connect returns. A
callback of the wrong kind (sync on an async client, or the other way) is passed on as it is,
for httpcore to refuse as it would have: poolscope returns
what the program's callback returns.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from ..core.errors import internal_error
from ..core.events import ConnectTiming


class Steps:
    """The steps of one connect, noted as httpcore traces them (sync clients)."""

    __slots__ = ("timing", "tls", "user")

    def __init__(self, timing: ConnectTiming, user: Callable[..., Any] | None) -> None:
        self.timing = timing
        self.tls = False  # the TLS handshake completed
        self.user = user  # the program's own trace callback

    def __call__(self, name: str, info: dict[str, Any]) -> Any:
        self.note(name, info)
        if self.user is not None:
            return self.user(name, info)
        return None

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


class AsyncSteps(Steps):
    """The steps of one connect, for async clients: httpcore awaits what the callback returns,
    the program's own callback's coroutine, or one that does nothing."""

    __slots__ = ()

    def __call__(self, name: str, info: dict[str, Any]) -> Any:
        self.note(name, info)
        if self.user is not None:
            return self.user(name, info)
        return _nothing()


async def _nothing() -> None:
    return None


def traced(request: Any, steps_class: type[Steps]) -> tuple[Steps, dict[str, Any] | None]:
    """Hand ``request`` to httpcore with poolscope's callback in a copy of its extensions;
    returns the steps and the extensions to put back once the connect returns (None: left as
    they were)."""
    steps = steps_class(ConnectTiming(), None)
    try:
        extensions: dict[str, Any] = request.extensions
        steps.user = extensions.get("trace")
        request.extensions = {**extensions, "trace": steps}
    except Exception:
        internal_error("httpx connect steps")
        return steps, None
    return steps, extensions
