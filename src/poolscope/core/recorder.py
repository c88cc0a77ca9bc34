"""The recorder: the one place pool code reports what happened, and events are handed to sinks.

Pool code calls a :class:`Recorder` method once per thing that happened. The recorder updates
the plain integer counters of :class:`~poolscope.core.stats.PoolStats` (read later by the
metrics sink and the report) and, only when a sink wants that kind, builds one
:class:`PoolEvent` and hands it to the sinks. It also owns the counting switch (see
:mod:`poolscope.core.counting`): it knows its pools only as listeners of that switch.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from .collection import ConnRef, exited, report_at_exit
from .counting import CountingSwitch, Listener
from .events import CloseReason, EventKind, PoolEvent, PoolKey, error_type
from .folding import OTHER_HOSTS, fold, max_hosts_from_env, to_fold
from .request_reports import RequestReports
from .sink import Sink, Sinks
from .state import ConnState, PoolState, described, next_connection_id
from .stats import IDLE_SAMPLES_PER_KEY, PoolStats, needed

_now = time.perf_counter
# The kinds every new host makes in a sweep over many hosts, one global read each.
_CREATED, _CLOSED, _EVICTED = EventKind.CREATED, EventKind.CLOSED, EventKind.EVICTED


class Recorder(RequestReports):
    """Receives what the pools report, keeps the counters and feeds the sinks."""

    def __init__(self) -> None:
        self.sinks = Sinks()
        self._wanted = self.sinks.wanted  # the same dict, one attribute read closer
        self._gated_only = self.sinks.gated_only  # likewise
        self.counting_switch = CountingSwitch()
        self._stats: dict[PoolKey, PoolStats] = {}
        # The counts of a key when it has counts of its own now (None: not yet, or folded): the
        # dict's own get (the report sink asks on every event), as _stats is never replaced.
        self.kept: Callable[[PoolKey], PoolStats | None] = self._stats.get
        # Guards making PoolStats, their live counts, folding. Reentrant: the garbage collector
        # may run a connection's callback (an event, keep_idle_times) at any allocation under it.
        self._lock = threading.RLock()
        self.providers: tuple[Any, ...] = ()  # the OpenTelemetry providers it reports to
        self.config = ""  # its options in words, for errors that name two configurations
        # Hosts with counts of their own, at most; the rest are folded (core/folding.py).
        self.max_hosts = max_hosts_from_env()
        self._fold_at = self.max_hosts  # how many kept hosts make the next fold
        self.folded_hosts = 0  # hosts whose counts went to the OTHER_HOSTS aggregate
        # Each tracked connection's weak reference, also in its PoolState.conns (see collection).
        self.connections: dict[ConnState, ConnRef] = {}
        self._on_collected = self._collected  # one bound method for every connection's callback
        report_at_exit(self)

    def renew_lock(self) -> None:
        """A new lock, in a forked child (the parent's may have been held at the fork)."""
        self._lock = threading.RLock()

    def add_sink(self, sink: Sink) -> None:
        self.sinks.add(sink)
        for stats in self.all_stats():  # keys seen before it start keeping what it reads now
            if sink.keeps_use_times and stats.use_times is None:
                stats.use_times = deque(maxlen=IDLE_SAMPLES_PER_KEY)
            if sink.drains_use_times and stats.use_pending is None:
                stats.use_pending = deque(maxlen=IDLE_SAMPLES_PER_KEY)
            stats.timed = stats.use_times is not None or stats.use_pending is not None

    def keep_idle_times(self) -> None:
        """From now on every host keeps the idle times of its reuses, for a sink that has come
        to read them (a metrics sink whose provider records)."""
        with self._lock:
            self.sinks.keep_idle_times = True
            for stats in self._stats.values():
                if stats.idle_times is None:
                    stats.idle_times = deque(maxlen=IDLE_SAMPLES_PER_KEY)

    def should_count(self) -> bool:
        """Whether this recorder's pools count reuses and idle connections, turning the
        counting switch on now if some sink has just come to act on them."""
        switch = self.counting_switch
        if not switch.on and self.sinks.wants_reuse():
            switch.turn_on()
        return switch.on

    def claim(self, key: PoolKey) -> PoolStats:
        """The counts of ``key`` for a pool being made: made on first use (folding others past
        max_hosts), and counted live under the lock, so that no fold takes them meanwhile."""
        folded: list[PoolKey] = []
        with self._lock:
            stats = self._stats.get(key)
            if stats is None:
                stats = self._stats[key] = self._new_stats(key)
                if self._hosts() > self._fold_at:
                    folded = self._fold(key)
            stats.live += 1  # the pool's PoolState lets go of it when closed or collected
        if folded:
            self.sinks.folded(folded)  # outside the lock: sinks take their own
        return stats

    def _fold(self, new: PoolKey) -> list[PoolKey]:
        # Under self._lock, as a new host came: fold down to half of max_hosts, and try again
        # only once as many more hosts came, so that folding stays a small, constant cost a
        # new host however many were seen (when pools stay alive, few can be folded).
        keep = self.max_hosts // 2
        hosts = self._hosts()
        chosen = to_fold(self._stats.values(), keep, hosts, new)
        if chosen:
            self.sinks.folding(chosen)
            other = self._stats.get(OTHER_HOSTS) or self._new_stats(OTHER_HOSTS)
            fold(other, chosen)
            for stats in chosen:
                del self._stats[stats.key]
            self._stats[OTHER_HOSTS] = other
            self.folded_hosts += len(chosen)
        self._fold_at = max(self.max_hosts, hosts - len(chosen) + self.max_hosts // 2)
        return [stats.key for stats in chosen]

    def _hosts(self) -> int:
        """Hosts with counts of their own (the aggregate of the folded ones aside)."""
        return len(self._stats) - (OTHER_HOSTS in self._stats)

    def _new_stats(self, key: PoolKey) -> PoolStats:
        sinks = self.sinks
        return PoolStats(key, sinks.keep_idle_times, sinks.keep_use_times, sinks.drain_use_times)

    def all_stats(self) -> list[PoolStats]:
        """A consistent list of every pool's counters (safe while pools keep working)."""
        return list(self._stats.values())

    def read_counts(self, read: Callable[[list[PoolStats]], None]) -> None:
        """Run ``read`` on every host's counters with no fold meanwhile: for a sink that keeps
        the counts of hosts as they are folded (``Sink.folding``), so that it sees each count
        once, in its own keeping or in the recorder's."""
        with self._lock:
            read(self.all_stats())

    # -- what the pools report ------------------------------------------------------------

    def new_pool(self, pool: Any, key: PoolKey, maxsize: int, library: str) -> PoolState:
        """The state of a pool now reporting here (see watch_pool)."""
        stats = self.claim(key)
        stats.pools += 1
        if not stats.library:
            stats.library = library
        return PoolState(self, stats, pool, maxsize, library)

    def watch_pool(self, pool: Any, start: Listener) -> None:
        """Call ``start(pool)``, a module-level function, when the counting switch turns on."""
        self.counting_switch.watch(pool, start)

    def forget_pool(self, pool: Any) -> None:
        self.counting_switch.forget(pool)

    def new_connection(self, pool: PoolState, conn: Any, *, connected: bool = False) -> ConnState:
        """Start tracking a connection object; ``connected`` when adopting an open one."""
        cs = ConnState(pool)
        ref = pool.conns[cs] = self.connections[cs] = ConnRef(conn, self._on_collected)
        ref.state = cs
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
        tls_version: str | None,
        *,
        connect_timeout: bool = True,
    ) -> None:
        """A connection was opened (``connect_timeout``: with a connect timeout in force)."""
        stats = cs.pool.stats
        if not connect_timeout:
            stats.no_connect_timeout += 1
        if cs.opened_at:  # this object was connected before: a new connection, a new id
            cs.id = next_connection_id()
        cs.open = True
        cs.opened_at = _now()
        if stats.timed:
            cs.taken_at = cs.opened_at  # the request that opened it holds it from here
        cs.requests = 1
        cs.error_type = None
        stats.created += 1
        stats.open += 1
        if cs.pool.counting:  # else idle connections are not counted: in_use is unknown
            in_use = stats.open - stats.idle
            if in_use > stats.peak_since:  # never above peak_in_use: one test, usually
                stats.peak_since = in_use
                if in_use > stats.peak_in_use:
                    stats.peak_in_use = in_use
        sinks = self._wanted[_CREATED]
        if sinks:  # described as described() does, inline: one call less a new connection
            pool = cs.pool
            # Every field, in PoolEvent's order (tests/test_pool_events.py holds it): keywords
            # would make the call build a dict of them, twice its cost (650 ns against 325 on
            # 3.11), and a new host makes three events.
            # fmt: off
            event = PoolEvent(
                _CREATED, pool.key, cs.id, connect_time, tls_time,
                0, None, None,  # requests, reason, error_type
                pool.maxsize, pool.num_pools or None,
                None, None,  # in_use, timeout
                cs.timing, tls_version,
                None,  # checked_out
                pool.id, pool.manager_id, pool.library,
            )
            # fmt: on
            self.sinks.send(sinks, event)

    def connect_failed(self, cs: ConnState, exc: BaseException, elapsed: float) -> None:
        etype = error_type(exc)
        failed = cs.pool.stats.failed
        failed[etype] = failed.get(etype, 0) + 1
        if self._wanted[EventKind.FAILED]:
            event = PoolEvent(EventKind.FAILED, cs.pool.key, cs.id, elapsed, error_type=etype)
            event.timing = cs.timing
            self.sinks.emit(described(cs.pool, event))

    def connection_reused(self, cs: ConnState, at: float = 0.0) -> None:
        # The checkout hook, installed in every pool once the recorder counts: the reuse
        # path of every request then, so ConnState.count_reuse() is inlined here. ``at``: when
        # the request took the connection, if not now (httpx's reuses are counted once their
        # response came: its idle time ended, and its use began, before).
        cs.checkout = False
        served = cs.requests
        cs.requests = served + 1
        stats = cs.stats
        stats.reused += 1
        idle_times = stats.idle_times
        sinks = self.sinks.reuse
        if idle_times is None and not sinks:
            return
        now = at or _now()
        # None: it went idle before its pool stamped returns (a sink that acts on reuses
        # appeared since), so how long it sat is not known.
        idle = now - cs.idle_since if cs.idle_since else None
        if stats.timed:
            cs.taken_at = now
        if idle_times is not None and idle is not None:
            idle_times.append(idle)
        event = None
        for sink, on_reuse, gate in sinks:
            try:
                if on_reuse is not None:  # it takes reuses itself (the span sink)
                    on_reuse(cs.id, idle)
                    continue
                if gate is not None and not gate():  # nothing to do with an event now
                    continue
                if event is None:
                    event = PoolEvent(EventKind.REUSED, cs.pool.key, cs.id, idle, requests=served)
                    described(cs.pool, event)
                sink.handle(event)
            except Exception:
                self.sinks.failed(sink)

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
        elif reason is CloseReason.CLIENT_CLOSED or reason is CloseReason.GARBAGE_COLLECTED:
            stats.unreturned += 1
        lifetime = now - cs.opened_at
        wanted = self._wanted
        if reason is CloseReason.DROPPED:
            stats.dropped += 1
            if wanted[EventKind.DROPPED]:
                event = PoolEvent(EventKind.DROPPED, pool.key, cs.id, idle, requests=cs.requests)
                self.sinks.emit(described(pool, event))
        elif reason is CloseReason.SERVER_CLOSED:
            stats.server_closed += 1
        elif reason is CloseReason.POOL_FULL:
            stats.discarded += 1
            if wanted[EventKind.DISCARDED]:
                event = PoolEvent(EventKind.DISCARDED, pool.key, cs.id, lifetime)
                event.requests, event.in_use = cs.requests, needed(stats.peak_in_use, pool.maxsize)
                self.sinks.emit(described(pool, event))
        sinks = wanted[_CLOSED]
        if sinks:  # described inline, every field in order, as a new connection's
            # fmt: off
            event = PoolEvent(
                _CLOSED, pool.key, cs.id, lifetime,
                None,  # tls_duration
                cs.requests, reason, cs.error_type if reason is CloseReason.ERROR else None,
                pool.maxsize, pool.num_pools or None,
                None, None, None, None,  # in_use, timeout, timing, tls_version
                not was_in_pool,  # checked_out
                pool.id, pool.manager_id, pool.library,
            )
            # fmt: on
            self.sinks.send(sinks, event)

    def exiting(self) -> None:
        """At exit, its connections still alive are reported collected, newest first."""
        for ref in reversed(list(self.connections.values())):
            self._collected(ref)

    def _collected(self, ref: ConnRef) -> None:
        # The callback of a connection's weak reference: it was garbage-collected (reported
        # closed if still counted open). Nothing when it was forgotten first (ConnState.forget)
        # or once the interpreter exits (after exiting()), as a weakref.finalize does nothing.
        cs = ref.state
        if self.connections.pop(cs, None) is not None and not exited():
            cs.pool.conns.pop(cs, None)
            if cs.open:
                self.connection_closed(cs, CloseReason.GARBAGE_COLLECTED)

    def pool_evicted(self, pool: PoolState, num_pools: int) -> None:
        pool.stats.evictions += 1
        sinks = self._wanted[_EVICTED]
        # None built when only gated sinks want one and none takes it now (no span records).
        if sinks and (_EVICTED not in self._gated_only or self.sinks.gate_open(_EVICTED)):
            # Described inline, every field in order, as a new connection's.
            # fmt: off
            event = PoolEvent(
                _EVICTED, pool.key,
                None, None, None, None, None, None,  # connection_id ... error_type
                pool.maxsize, num_pools,
                None, None, None, None, None,  # in_use ... checked_out
                pool.id, pool.manager_id, pool.library,
            )
            # fmt: on
            self.sinks.send(sinks, event)
