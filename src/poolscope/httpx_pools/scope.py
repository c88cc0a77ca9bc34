"""What poolscope keeps on one httpcore pool: the recorder it reports to and, per origin, the
pool state its connections count in; and which pools report, one by one or all of them."""

from __future__ import annotations

import contextlib
import sys
import weakref
from collections.abc import Callable
from typing import Any

from ..core.errors import internal_error
from ..core.events import PoolKey
from ..core.recorder import Recorder
from ..core.state import ConnState, PoolState, next_manager_id
from .callsites import building_library, requesting_library
from .proxies import proxy_address

LIBRARY = "httpx"


class PoolScope:
    """What poolscope keeps on one httpcore pool (``pool._poolscope``): its recorder and, per
    origin, the pool state connections to that origin report to."""

    __slots__ = ("built_by", "counting", "made", "manager_id", "origins", "recorder")

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        # The pool's id among the process's managers (urllib3's PoolManagers): an httpx client
        # is one, keeping connections to every host it is sent to. The report tells a client
        # made per call (httpx.get()) from one reused by it, as it does requests.get()'s.
        self.manager_id = next_manager_id()
        self.origins: dict[tuple[bytes, bytes, int], PoolState] = {}
        self.made = 0  # connection objects made: a pass that ends with fewer let one go
        self.counting = False  # its recorder's counting switch is on (see start_counting)
        # An installed library the table lacks that built its client (see built()), or "".
        self.built_by = ""

    def state(self, pool: Any, origin: Any) -> PoolState:
        """The pool state of ``origin`` (an httpcore Origin) in ``pool``, made at its first
        connection: sized by ``max_keepalive_connections``, the idle connections it keeps, and
        spoken of in the words of the library making its requests (an SDK of the table), else
        of the one that built its client (one the table lacks), else httpx's."""
        named = (origin.scheme, origin.host, origin.port)  # an Origin is not hashable
        ps = self.origins.get(named)
        if ps is None:
            scheme, host = origin.scheme.decode("ascii"), origin.host.decode("ascii")
            key = PoolKey(scheme, host, origin.port, proxy_address(pool))  # a proxy's: target's
            recorder = self.recorder
            library = requesting_library(self.built_by or LIBRARY)
            ps = recorder.new_pool(pool, key, _kept(pool), library)
            ps.manager_id = self.manager_id
            self.origins[named] = ps
            # As urllib3's pools: reuses and idle connections are counted once some sink acts
            # on them (an SDK, the report, logging); until then a reuse costs one test.
            if not self.counting:
                recorder.watch_pool(pool, start_counting)
                if recorder.should_count():
                    start_counting(pool)
            ps.counting = self.counting
        return ps


def _kept(pool: Any) -> int:
    """The idle connections ``pool`` keeps (its maxsize), 0 for no limit (httpcore's
    ``sys.maxsize``, for ``max_keepalive_connections=None`` and ``max_connections=None``)."""
    kept: int = pool._max_keepalive_connections
    return 0 if kept >= sys.maxsize else kept


# Pools with no PoolScope of their own report to this recorder (process-wide instrumentation).
TARGET: list[Recorder] = []
# Pools instrumented one client at a time.
ATTACHED: weakref.WeakSet[Any] = weakref.WeakSet()


def built(init: Callable[..., None]) -> Callable[..., None]:
    """httpcore's pool ``__init__``, wrapped: under process-wide instrumentation, a pool built
    by an installed library the table lacks (its httpx client's) says which, where, and the
    program's line that led there. Once per pool, as it is made; nothing when the program or
    a library of the table builds it."""

    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        init(self, *args, **kwargs)
        if TARGET:
            try:
                name = building_library()
                scope = scope_of(self) if name else None
                if scope is not None:
                    scope.built_by = name or ""
            except Exception:
                internal_error("httpx new pool")

    return __init__


def start_counting(pool: Any) -> None:
    """From now on, ``pool``'s pool states count reuses and idle connections; the open ones
    idle now count as idle (with no idle time: how long they have sat is not known)."""
    scope: PoolScope | None = getattr(pool, "_poolscope", None)
    if scope is None or scope.counting:
        return
    scope.counting = True
    for ps in list(scope.origins.values()):
        ps.counting = True
    for conn in list(pool._connections):
        cs = getattr(conn, "_poolscope", None)
        if cs is not None and cs.open and not cs.in_pool and conn.is_idle():
            cs.in_pool = True
            cs.stats.idle += 1


def attach(pool: Any, recorder: Recorder) -> None:
    """Make one httpcore pool report to ``recorder`` from now on (connections it opened
    before are not counted)."""
    scope: PoolScope | None = getattr(pool, "_poolscope", None)
    if scope is None or scope.recorder is not recorder:
        pool._poolscope = PoolScope(recorder)
    ATTACHED.add(pool)


def detach(pool: Any) -> None:
    """``pool`` reports no more; its connections neither (when they close, or are collected)."""
    with contextlib.suppress(AttributeError):
        del pool._poolscope
    ATTACHED.discard(pool)
    for conn in list(pool._connections):
        cs: ConnState | None = getattr(conn, "_poolscope", None)
        if cs is not None:
            del conn._poolscope
            inner: Any = getattr(conn, "_connection", None)  # a forwarding one's to the proxy
            if getattr(inner, "_poolscope", None) is cs:
                del inner._poolscope
            cs.forget()


def scope_of(pool: Any) -> PoolScope | None:
    scope: PoolScope | None = getattr(pool, "_poolscope", None)
    if scope is None and TARGET:
        scope = pool._poolscope = PoolScope(TARGET[0])
    return scope
