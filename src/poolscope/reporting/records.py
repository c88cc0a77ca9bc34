"""What the report keeps of each pool object, gathered from the event stream by ReportSink.

Counts live once, in the recorder's :class:`~poolscope.core.stats.PoolStats`; what the report
needs beyond them is per pool object: which manager made it and its sizes, samples of connect
and idle times, the idle times of dropped connections, and a lane per connection (opened,
requests served, closed) for the timeline. Every ReportSink made is kept (the report outlives
the sessions it describes) and :func:`all_sinks` lists them.
"""

from __future__ import annotations

import random
import threading
import time

from ..core.events import CloseReason, EventKind, PoolEvent, PoolKey
from ..core.recorder import Recorder
from ..core.sink import Sink

SAMPLES = 10_000  # connect/idle time samples kept per pool (a reservoir beyond that)
POOLS = 10_000  # pools kept per recorder; later ones are counted in Report.pools_not_kept
LANES = 500  # connections kept per pool for the timeline
USES = 1_000  # request marks kept per connection for the timeline


class Lane:
    __slots__ = ("closed", "id", "opened", "reason", "requests", "uses")

    def __init__(self, conn_id: int, opened: float) -> None:
        self.id = conn_id
        self.opened = opened
        self.uses: list[float] = [opened]
        self.requests = 1
        self.closed: float | None = None
        self.reason: str | None = None


class PoolRecord:
    """Everything the report keeps about one pool object."""

    def __init__(self, key: PoolKey, pool_id: int, manager_id: int) -> None:
        self.key = key
        self.pool_id = pool_id
        self.manager_id = manager_id
        self.maxsize = 0
        self.num_pools = 0
        self.created = self.reused = self.dropped = self.discarded = 0
        self.failed: dict[str, int] = {}
        self.evictions = self.waits = self.wait_timeouts = 0
        self.waiting = self.peak_waiting = 0
        self.max_wait = 0.0
        self.peak_in_use = 0
        self.unreturned = 0  # connections closed while a response still held them
        self.closed_by_pool = 0
        self.connect_times: list[float] = []
        self.idle_times: list[float] = []
        self.drop_idle_times: list[float] = []
        self.connects_seen = 0  # samples offered to each reservoir
        self.idles_seen = 0
        self.lanes: dict[int, Lane] = {}
        self.first_seen = time.time()

    @property
    def requests(self) -> int:
        return self.created + self.reused


def _sample(values: list[float], value: float, seen: int) -> None:
    if len(values) < SAMPLES:
        values.append(value)
    else:  # reservoir sampling keeps a uniform sample of everything offered
        slot = random.randrange(seen)
        if slot < SAMPLES:
            values[slot] = value


class ReportSink(Sink):
    """Aggregates pool events per pool object for :func:`poolscope.report`; thread-safe."""

    kinds = frozenset(EventKind)

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder  # whose PoolStats the report reads
        self._lock = threading.Lock()
        self.pools: dict[int, PoolRecord] = {}
        self.pools_not_kept: set[int] = set()
        self.started = time.time()

    def handle(self, event: PoolEvent) -> None:
        now = time.time()
        with self._lock:
            rec = self.pools.get(event.pool_id)
            if rec is None:
                if len(self.pools) >= POOLS:
                    self.pools_not_kept.add(event.pool_id)
                    return
                rec = self.pools[event.pool_id] = PoolRecord(
                    event.key, event.pool_id, event.manager_id
                )
            if event.pool_maxsize:
                rec.maxsize = event.pool_maxsize
            if event.num_pools:
                rec.num_pools = event.num_pools
            kind = event.kind
            conn = event.connection_id
            if kind is EventKind.CREATED:
                rec.created += 1
                rec.connects_seen += 1
                _sample(rec.connect_times, event.duration or 0.0, rec.connects_seen)
                if conn is not None and len(rec.lanes) < LANES:
                    rec.lanes[conn] = Lane(conn, now)
            elif kind is EventKind.REUSED:
                rec.reused += 1
                if event.duration is not None:
                    rec.idles_seen += 1
                    _sample(rec.idle_times, event.duration, rec.idles_seen)
                lane = rec.lanes.get(conn or 0)
                if lane is not None:
                    lane.requests += 1
                    if len(lane.uses) < USES:
                        lane.uses.append(now)
            elif kind is EventKind.DROPPED:
                rec.dropped += 1
                if event.duration is not None:
                    rec.drop_idle_times.append(event.duration)
            elif kind is EventKind.DISCARDED:
                rec.discarded += 1
                rec.peak_in_use = max(rec.peak_in_use, event.in_use or 0)
            elif kind is EventKind.FAILED:
                etype = event.error_type or "unknown"
                rec.failed[etype] = rec.failed.get(etype, 0) + 1
            elif kind is EventKind.CLOSED:
                reason = event.reason
                if event.checked_out and reason in (
                    CloseReason.CLIENT_CLOSED,
                    CloseReason.GARBAGE_COLLECTED,
                ):
                    rec.unreturned += 1
                if reason in (CloseReason.POOL_CLOSED, CloseReason.GARBAGE_COLLECTED):
                    rec.closed_by_pool += 1
                lane = rec.lanes.get(conn or 0)
                if lane is not None:
                    lane.closed = now
                    lane.reason = reason.value if reason is not None else None
            elif kind is EventKind.EVICTED:
                rec.evictions += 1
            elif kind is EventKind.WAIT_STARTED:
                rec.waiting += 1
                rec.peak_waiting = max(rec.peak_waiting, rec.waiting)
            elif kind is EventKind.WAIT_ENDED or kind is EventKind.WAIT_TIMED_OUT:
                rec.waiting = max(0, rec.waiting - 1)
                rec.waits += 1
                rec.max_wait = max(rec.max_wait, event.duration or 0.0)
                if kind is EventKind.WAIT_TIMED_OUT:
                    rec.wait_timeouts += 1

    def records(self) -> list[PoolRecord]:
        with self._lock:
            return list(self.pools.values())


def by_manager(records: list[PoolRecord]) -> dict[int, list[PoolRecord]]:
    """The records of pools a PoolManager made, grouped by manager."""
    managers: dict[int, list[PoolRecord]] = {}
    for rec in records:
        if rec.manager_id:
            managers.setdefault(rec.manager_id, []).append(rec)
    return managers


_sinks: list[ReportSink] = []
_sinks_lock = threading.Lock()


def new_report_sink(recorder: Recorder) -> ReportSink:
    """A ReportSink for ``recorder``, kept for the report from now on."""
    sink = ReportSink(recorder)
    with _sinks_lock:
        _sinks.append(sink)
    return sink


def all_sinks() -> list[ReportSink]:
    with _sinks_lock:
        return list(_sinks)
