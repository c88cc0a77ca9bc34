"""Bookkeeping for pools and connections, and the one place events are handed to sinks.

Pool code calls a :class:`Recorder` method once per thing that happened. The recorder updates
plain integer counters (read later by observable instruments and the report) and, only when a
sink listens, builds one :class:`PoolEvent` and hands it to each sink.

Counters are plain ``int`` attributes updated with ``+=``. Under CPython's GIL an attribute
increment of an ``int`` runs without a thread switch in the middle, which is what keeps the
reused-connection path free of locks of our own.
"""

from __future__ import annotations

import itertools
import logging
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from ._events import CloseReason, EventKind, PoolEvent, PoolKey, error_type
from ._phases import ConnectTiming

log = logging.getLogger("poolscope")

_connection_ids = itertools.count(1)
_pool_ids = itertools.count(1)
manager_ids = itertools.count(1)
_now = time.perf_counter


# At most this many idle-time samples wait per pool for the next metrics collection; beyond it
# the oldest are dropped (the reused counter still counts every reuse).
IDLE_SAMPLES_PER_POOL = 4096


class Sink(Protocol):
    """Anything that consumes pool events: metrics, logs, spans, the report.

    ``kinds`` says which events it wants: the recorder builds an event only when some sink
    wants its kind, which keeps the reused-connection path to integer bookkeeping. A sink may
    also have ``gate()``, asked before a reuse event is built for it: False means it has
    nothing to do right now (the span sink, when no span is recording); ``wants_reuse()``,
    asked when a pool or connection is made: False means it will never act on a reuse while
    it stays so (an OpenTelemetry sink with no SDK behind it), which lets pools skip counting
    reuses and the per-checkout hook altogether (Recorder.should_count); and
    ``wants_phases()``, whether connects should be timed phase by phase.
    """

    kinds: frozenset[EventKind]

    def handle(self, event: PoolEvent) -> None: ...


class PoolStats:
    """Counters for one (scheme, host, port) within one recorder, across all its pools."""

    __slots__ = (
        "__weakref__",
        "closed",
        "created",
        "discarded",
        "dropped",
        "evictions",
        "failed",
        "idle",
        "idle_times",
        "key",
        "maxsize",
        "open",
        "peak_in_use",
        "retries",
        "reused",
        "wait_timeouts",
        "waiting",
        "waits",
    )

    def __init__(self, key: PoolKey, keep_idle_times: bool = False) -> None:
        self.key = key
        self.created = 0  # handshakes completed (TCP, plus TLS for https)
        self.reused = 0  # requests sent on an already-open connection, while counting
        self.dropped = 0  # open connections found closed by the server at checkout
        self.discarded = 0  # connections closed because they came back to a full pool
        self.failed: dict[str, int] = {}  # failed connection attempts by error.type
        self.retries: dict[str, int] = {}  # requests urllib3 retried, by the error.type before
        self.closed = 0  # open connections that were closed, for any reason
        self.evictions = 0  # pools pushed out of a PoolManager's cache
        self.waits = 0  # checkouts that had to wait for a free connection
        self.wait_timeouts = 0  # waits that ended in EmptyPoolError
        self.waiting = 0  # checkouts waiting right now
        self.open = 0  # connections open right now
        self.idle = 0  # open connections sitting in a pool right now, while counting
        self.peak_in_use = 0  # most open connections checked out at once, while counting
        self.maxsize = 0  # the largest pool_maxsize seen for this key
        # Idle times of reuses not yet collected, when a metrics sink wants them.
        self.idle_times: deque[float] | None = (
            deque(maxlen=IDLE_SAMPLES_PER_POOL) if keep_idle_times else None
        )

    @property
    def in_use(self) -> int:
        return self.open - self.idle


class PoolState:
    """What poolscope keeps on one urllib3 pool (``pool._poolscope``)."""

    __slots__ = (
        "closed",
        "conns",
        "counting",
        "draining",
        "id",
        "key",
        "manager_id",
        "maxsize",
        "num_pools",
        "pool_ref",
        "recorder",
        "stats",
    )

    def __init__(self, recorder: Recorder, pool: Any, key: PoolKey, maxsize: int) -> None:
        self.id = next(_pool_ids)
        self.manager_id = 0  # the PoolManager that made or adopted it; 0 for a pool on its own
        self.num_pools = 0  # that manager's num_pools (requests' pool_connections)
        self.recorder = recorder
        self.key = key
        self.stats = recorder.stats_for(key)
        self.closed = False  # set once pool.close() starts; a pool never reopens
        # Closed or collected: its queue is being emptied to close what is in it, which its
        # queue must not take for checkouts. Collection is learnt without calling the weakref:
        # this callback runs before urllib3's own finalizer drains the queue (CPython calls a
        # dying object's weakref callbacks newest first).
        self.draining = False
        self.pool_ref = weakref.ref(pool, self._pool_collected)
        # Whether its queue counts reuses and idle connections and times returns: from the
        # moment some sink of its recorder acts on them (Recorder.counting), then for good.
        self.counting = False
        self.maxsize = maxsize
        self.conns: weakref.WeakSet[Any] = weakref.WeakSet()  # for uninstrumenting
        if maxsize > self.stats.maxsize:
            self.stats.maxsize = maxsize

    def _pool_collected(self, _ref: Any) -> None:
        self.draining = True

    def closing(self) -> None:
        self.closed = self.draining = True


class ConnState:
    """What poolscope keeps on one urllib3 connection object (``conn._poolscope``).

    One connection object may carry several network connections over its life: urllib3
    reconnects the same object after it was found dropped or closed.
    """

    __slots__ = (
        "checkout",
        "discarding",
        "error_type",
        "finalizer",
        "id",
        "idle_since",
        "in_pool",
        "open",
        "opened_at",
        "pool",
        "requests",
        "stats",
        "tcp_time",
        "timing",
    )

    def __init__(self, pool: PoolState) -> None:
        self.id = next(_connection_ids)
        self.pool = pool
        self.stats = pool.stats  # its pool's, one attribute read closer for the queue
        self.open = False  # a socket is connected and not yet reported closed
        self.opened_at = 0.0
        self.requests = 0  # requests served by the current network connection
        self.idle_since = 0.0  # when it last went idle in its pool; 0.0 when not timed
        self.in_pool = False  # counted in stats.idle
        # Taken from the pool open, and its reuse not yet counted: counted by the pool's
        # checkout hook when one is installed, else when it comes back or is closed.
        self.checkout = False
        self.discarding = False  # being closed because the pool was full
        self.error_type: str | None = None  # the last error seen on this connection
        self.tcp_time: float | None = None
        self.timing: ConnectTiming | None = None  # phases of the last connect, for spans
        self.finalizer: weakref.finalize[Any, Any] | None = None


class Recorder:
    """Receives what the pools report, keeps the counters and feeds the sinks."""

    def __init__(self, name: str) -> None:
        self.name = name
        self._sinks: tuple[Sink, ...] = ()
        self._wanted: dict[EventKind, tuple[Sink, ...]] = {kind: () for kind in EventKind}
        self._reuse_sinks: tuple[tuple[Sink, Callable[[], bool] | None], ...] = ()
        self._reuse_wants: tuple[Callable[[], bool], ...] = ()
        self._phase_wants: tuple[Callable[[], bool], ...] = ()
        self.keep_idle_times = False  # set by a sink that reads PoolStats.idle_times
        self._stats: dict[PoolKey, PoolStats] = {}
        self._lock = threading.Lock()  # guards creation of PoolStats, and the pools' set
        self._failed_sinks: set[int] = set()
        self.pool_classes: dict[type, type] = {}  # base pool class -> instrumented subclass
        self.providers: tuple[Any, ...] = ()  # the OpenTelemetry providers it reports to
        # Whether its pools count reuses and idle connections (see should_count), and the
        # pools to tell when that starts (under self._lock: pools come from any thread).
        self.counting = False
        self._pools: weakref.WeakSet[Any] = weakref.WeakSet()

    def add_sink(self, sink: Sink) -> None:
        self._sinks = (*self._sinks, sink)
        for kind in sink.kinds:
            self._wanted[kind] = (*self._wanted[kind], sink)
        if EventKind.REUSED in sink.kinds:
            self._reuse_sinks = (*self._reuse_sinks, (sink, getattr(sink, "gate", None)))
        wants_reuse = getattr(sink, "wants_reuse", None)
        if wants_reuse is None and EventKind.REUSED in sink.kinds:
            wants_reuse = _always
        if wants_reuse is not None:
            self._reuse_wants = (*self._reuse_wants, wants_reuse)
        wants_phases = getattr(sink, "wants_phases", None)
        if wants_phases is not None:
            self._phase_wants = (*self._phase_wants, wants_phases)

    def should_count(self) -> bool:
        """Whether this recorder's pools count reuses and idle connections, starting that now
        if some sink has just come to act on them.

        A reused request is the one thing poolscope can see only on the hot path, in the
        pool's queue. With no sink acting on it (OpenTelemetry's API alone: no SDK, nothing
        would record or export) the queue does not look; once one does, every pool of the
        recorder starts counting, for good, from that moment, as measurements made through
        OpenTelemetry's API before an SDK is set are not kept either."""
        if not self.counting and self.wants_reuse_events():
            self.start_counting()
        return self.counting

    def start_counting(self) -> None:
        """Make every pool of this recorder count reuses and idle connections from now on
        (asked again by each pool; a metrics reader collecting asks too)."""
        with self._lock:
            if self.counting:
                return
            self.counting = True
            pools = list(self._pools)
        from ._pools import start_counting

        for pool in pools:
            try:
                start_counting(pool)
            except Exception:
                internal_error("start counting")

    def add_pool(self, pool: Any) -> None:
        with self._lock:
            self._pools.add(pool)

    def remove_pool(self, pool: Any) -> None:
        with self._lock:
            self._pools.discard(pool)

    def wants_reuse_events(self) -> bool:
        """Whether some sink acts on each reuse (then pools install their checkout hook)."""
        return self._sink_says(self._reuse_wants)

    def wants_phases(self) -> bool:
        """Whether some sink wants connects timed phase by phase (DNS, TCP, TLS)."""
        return self._sink_says(self._phase_wants)

    def _sink_says(self, asks: tuple[Callable[[], bool], ...]) -> bool:
        for ask in asks:
            try:
                if ask():
                    return True
            except Exception:
                self.sink_failed(ask)
        return False

    @property
    def sinks(self) -> tuple[Sink, ...]:
        return self._sinks

    def stats_for(self, key: PoolKey) -> PoolStats:
        stats = self._stats.get(key)
        if stats is None:
            with self._lock:
                stats = self._stats.setdefault(key, PoolStats(key, self.keep_idle_times))
        return stats

    def all_stats(self) -> list[PoolStats]:
        """A consistent list of every pool's counters (safe while pools keep working)."""
        return list(self._stats.values())

    # -- what the pools report ------------------------------------------------------------

    def new_connection(self, pool: PoolState, conn: Any, *, connected: bool = False) -> ConnState:
        """Start tracking a connection object; ``connected`` when adopting an open one."""
        cs = ConnState(pool)
        pool.conns.add(conn)
        cs.finalizer = weakref.finalize(conn, self.connection_collected, cs)
        if connected:
            cs.open = True
            cs.opened_at = _now()
            pool.stats.open += 1
        return cs

    def connection_created(
        self,
        cs: ConnState,
        connect_time: float,
        tls_time: float | None,
        tls_version: str | None = None,
    ) -> None:
        stats = cs.pool.stats
        if cs.opened_at:  # this object was connected before: a new connection, a new id
            cs.id = next(_connection_ids)
        cs.open = True
        cs.opened_at = _now()
        cs.requests = 1
        cs.error_type = None
        stats.created += 1
        stats.open += 1
        if cs.pool.counting:  # else idle connections are not counted: in_use is unknown
            in_use = stats.open - stats.idle
            if in_use > stats.peak_in_use:
                stats.peak_in_use = in_use
        if self._wanted[EventKind.CREATED]:
            self._emit(
                cs.pool,
                PoolEvent(
                    EventKind.CREATED,
                    cs.pool.key,
                    cs.id,
                    duration=connect_time,
                    tls_duration=tls_time,
                    requests=0,
                    timing=cs.timing,
                    tls_version=tls_version,
                ),
            )

    def connect_failed(self, cs: ConnState, exc: BaseException, elapsed: float) -> None:
        etype = error_type(exc)
        failed = cs.pool.stats.failed
        failed[etype] = failed.get(etype, 0) + 1
        if self._wanted[EventKind.FAILED]:
            self._emit(
                cs.pool,
                PoolEvent(
                    EventKind.FAILED,
                    cs.pool.key,
                    cs.id,
                    duration=elapsed,
                    error_type=etype,
                    timing=cs.timing,
                ),
            )

    def checkout_settled(self, cs: ConnState) -> None:
        """Count a reuse that no checkout hook counted (the pool has none): the connection
        came back to its pool, or was closed, after a request on it."""
        cs.checkout = False
        cs.requests += 1
        cs.stats.reused += 1

    def connection_reused(self, cs: ConnState) -> None:
        # The checkout hook, installed when some sink acts on reuses (see wants_reuse_events).
        cs.checkout = False
        stats = cs.pool.stats
        served = cs.requests
        cs.requests = served + 1
        stats.reused += 1
        idle_times = stats.idle_times
        sinks = self._reuse_sinks
        if idle_times is None and not sinks:
            return
        # 0.0: it went idle before its pool stamped returns (a sink that acts on reuses
        # appeared since), so how long it sat is not known.
        idle = _now() - cs.idle_since if cs.idle_since else None
        if idle_times is not None and idle is not None:
            idle_times.append(idle)
        event = None
        for sink, gate in sinks:
            try:
                if gate is not None and not gate():
                    continue
            except Exception:
                self.sink_failed(sink)
                continue
            if event is None:
                event = PoolEvent(
                    EventKind.REUSED, cs.pool.key, cs.id, duration=idle, requests=served
                )
                self._describe(cs.pool, event)
            try:
                sink.handle(event)
            except Exception:
                self.sink_failed(sink)

    def connection_closed(self, cs: ConnState, reason: CloseReason) -> None:
        if not cs.open:
            return
        now = _now()
        cs.open = False
        pool = cs.pool
        stats = pool.stats
        stats.open -= 1
        stats.closed += 1
        idle = now - cs.idle_since if cs.idle_since else None
        was_in_pool = cs.in_pool
        if cs.in_pool:
            cs.in_pool = False
            stats.idle -= 1
        if reason is CloseReason.DROPPED:
            stats.dropped += 1
        elif reason is CloseReason.POOL_FULL:
            stats.discarded += 1
        lifetime = now - cs.opened_at
        etype = cs.error_type if reason is CloseReason.ERROR else None
        if reason is CloseReason.DROPPED and self._wanted[EventKind.DROPPED]:
            self._emit(
                pool,
                PoolEvent(EventKind.DROPPED, pool.key, cs.id, duration=idle, requests=cs.requests),
            )
        elif reason is CloseReason.POOL_FULL and self._wanted[EventKind.DISCARDED]:
            self._emit(
                pool,
                PoolEvent(
                    EventKind.DISCARDED,
                    pool.key,
                    cs.id,
                    duration=lifetime,
                    requests=cs.requests,
                    pool_maxsize=pool.maxsize,
                    in_use=max(stats.peak_in_use, pool.maxsize + 1),
                ),
            )
        if not self._wanted[EventKind.CLOSED]:
            return
        self._emit(
            pool,
            PoolEvent(
                EventKind.CLOSED,
                pool.key,
                cs.id,
                duration=lifetime,
                requests=cs.requests,
                reason=reason,
                error_type=etype,
                checked_out=not was_in_pool,
            ),
        )

    def connection_collected(self, cs: ConnState) -> None:
        """A connection object was garbage-collected while we still counted it open."""
        if cs.open:
            self.connection_closed(cs, CloseReason.GARBAGE_COLLECTED)

    def pool_evicted(self, pool: PoolState, num_pools: int) -> None:
        pool.stats.evictions += 1
        if self._wanted[EventKind.EVICTED]:
            self._emit(
                pool,
                PoolEvent(
                    EventKind.EVICTED, pool.key, num_pools=num_pools, pool_maxsize=pool.maxsize
                ),
            )

    def request_retried(self, pool: PoolState, error_type: str) -> None:
        retries = pool.stats.retries
        retries[error_type] = retries.get(error_type, 0) + 1
        if self._wanted[EventKind.RETRIED]:
            self._emit(pool, PoolEvent(EventKind.RETRIED, pool.key, error_type=error_type))

    def wait_started(self, pool: PoolState, timeout: float | None) -> None:
        pool.stats.waiting += 1
        if self._wanted[EventKind.WAIT_STARTED]:
            self._emit(
                pool,
                PoolEvent(
                    EventKind.WAIT_STARTED, pool.key, pool_maxsize=pool.maxsize, timeout=timeout
                ),
            )

    def wait_ended(self, pool: PoolState, waited: float, timed_out: bool) -> None:
        stats = pool.stats
        stats.waiting -= 1
        stats.waits += 1
        if timed_out:
            stats.wait_timeouts += 1
        kind = EventKind.WAIT_TIMED_OUT if timed_out else EventKind.WAITED
        if self._wanted[kind]:
            self._emit(pool, PoolEvent(kind, pool.key, duration=waited, pool_maxsize=pool.maxsize))

    # -- sinks ------------------------------------------------------------------------------

    def _emit(self, pool: PoolState, event: PoolEvent) -> None:
        self._describe(pool, event)
        for sink in self._wanted[event.kind]:
            try:
                sink.handle(event)
            except Exception:
                self.sink_failed(sink)

    @staticmethod
    def _describe(pool: PoolState, event: PoolEvent) -> None:
        event.pool_id = pool.id
        event.manager_id = pool.manager_id
        if event.num_pools is None and pool.num_pools:
            event.num_pools = pool.num_pools
        if event.pool_maxsize is None:
            event.pool_maxsize = pool.maxsize

    def sink_failed(self, sink: object) -> None:
        # Telemetry never breaks a request: contain the failure, say so once per sink.
        owner = getattr(sink, "__self__", sink)  # a sink's bound method: the sink
        if id(owner) in self._failed_sinks:
            return
        self._failed_sinks.add(id(owner))
        try:
            log.warning(
                "poolscope's %s raised while handling a pool event; requests are unaffected, "
                "but its telemetry may be incomplete. This is reported once.",
                type(owner).__name__,
                exc_info=sys.exc_info(),
            )
        except Exception:  # a broken log handler must not break the request either
            pass


def _always() -> bool:
    return True


def internal_error(where: str) -> None:
    """Report, once per place, a bug in poolscope's own bookkeeping; never raises."""
    if where in _reported_internal:
        return
    _reported_internal.add(where)
    try:
        log.warning(
            "poolscope failed in %s; the request went on unaffected, but telemetry for it may "
            "be incomplete. Please report this with the traceback. This is reported once.",
            where,
            exc_info=sys.exc_info(),
        )
    except Exception:
        pass


_reported_internal: set[str] = set()
