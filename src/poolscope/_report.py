"""The in-process report: what every pool did in this run, gathered from the event stream.

:class:`ReportSink` keeps, per pool object, its counts, samples of connect and idle times and a
lane per connection (opened, requests served, closed). :func:`report` turns that into a
:class:`Report`: plain frozen dataclasses, with the advice of :mod:`poolscope._advice`, that
render as text, JSON or a self-contained HTML timeline.
"""

from __future__ import annotations

import random
import statistics
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from ._events import CloseReason, EventKind, PoolEvent, PoolKey

SAMPLES = 10_000  # connect/idle time samples kept per pool (a reservoir beyond that)
POOLS = 10_000  # pools kept per recorder; later ones are counted in Report.pools_not_kept
LANES = 500  # connections kept per pool for the timeline
USES = 1_000  # request marks kept per connection for the timeline


class _Lane:
    __slots__ = ("closed", "id", "opened", "reason", "requests", "uses")

    def __init__(self, conn_id: int, opened: float) -> None:
        self.id = conn_id
        self.opened = opened
        self.uses: list[float] = [opened]
        self.requests = 1
        self.closed: float | None = None
        self.reason: str | None = None


class _PoolRecord:
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
        self.lanes: dict[int, _Lane] = {}
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


class ReportSink:
    """Aggregates pool events per pool object for :func:`report`; thread-safe."""

    kinds = frozenset(EventKind)

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.pools: dict[int, _PoolRecord] = {}
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
                rec = self.pools[event.pool_id] = _PoolRecord(
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
                    rec.lanes[conn] = _Lane(conn, now)
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
            elif kind is EventKind.WAITED or kind is EventKind.WAIT_TIMED_OUT:
                rec.waiting = max(0, rec.waiting - 1)
                rec.waits += 1
                rec.max_wait = max(rec.max_wait, event.duration or 0.0)
                if kind is EventKind.WAIT_TIMED_OUT:
                    rec.wait_timeouts += 1

    def records(self) -> list[_PoolRecord]:
        with self._lock:
            return list(self.pools.values())


# -- the report's model -------------------------------------------------------------------


@dataclass(frozen=True)
class Connection:
    """One connection's lane on the timeline (wall-clock seconds since the epoch)."""

    id: int
    opened: float
    closed: float | None
    close_reason: str | None
    requests: int
    uses: tuple[float, ...]


@dataclass(frozen=True)
class PoolSummary:
    """What one pool did: one per (scheme, host, port) per PoolManager."""

    origin: str
    scheme: str
    host: str
    port: int
    proxy: str | None
    manager: int
    pool_maxsize: int
    pool_connections: int
    requests: int
    created: int
    reused: int
    reuse_ratio: float
    dropped: int
    discarded: int
    failed: dict[str, int]
    evictions: int
    waits: int
    wait_timeouts: int
    max_wait_s: float
    peak_in_use: int
    unreturned: int
    connect_time_s: dict[str, float]
    idle_time_s: dict[str, float]
    connections: tuple[Connection, ...] = field(repr=False)


@dataclass(frozen=True)
class ManagerSummary:
    """One PoolManager (one requests adapter): its cache of pools against ``num_pools``."""

    id: int
    pool_connections: int
    pools_made: int
    pools_evicted: int
    pools_kept: int  # made and not evicted: in its cache, unless the manager was cleared
    hosts: tuple[str, ...]


@dataclass(frozen=True)
class Advice:
    """A problem seen in this run, the evidence for it and the exact change to make."""

    rule: str
    origin: str
    evidence: str
    change: str
    waste: int  # how many connections or waits it cost in this run; 0 once fixed


@dataclass(frozen=True)
class Report:
    """Every pool poolscope saw in this process, and what to change. See :func:`report`."""

    started: float
    ended: float
    pools: tuple[PoolSummary, ...]
    advice: tuple[Advice, ...]
    managers: tuple[ManagerSummary, ...] = ()

    @property
    def healthy(self) -> bool:
        return not self.advice

    def to_dict(self) -> dict[str, Any]:
        from dataclasses import asdict

        return asdict(self)

    def render_text(self) -> str:
        from ._render import text

        return text(self)

    def render_html(self) -> str:
        from ._render import html

        return html(self)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": max(values)}


def summarize(rec: _PoolRecord, peak_in_use: int) -> PoolSummary:
    key = rec.key
    requests = rec.requests
    lanes = tuple(
        Connection(lane.id, lane.opened, lane.closed, lane.reason, lane.requests, tuple(lane.uses))
        for lane in rec.lanes.values()
    )
    return PoolSummary(
        origin=key.origin,
        scheme=key.scheme,
        host=key.host,
        port=key.port,
        proxy=key.proxy,
        manager=rec.manager_id,
        pool_maxsize=rec.maxsize,
        pool_connections=rec.num_pools,
        requests=requests,
        created=rec.created,
        reused=rec.reused,
        reuse_ratio=rec.reused / requests if requests else 0.0,
        dropped=rec.dropped,
        discarded=rec.discarded,
        failed=dict(rec.failed),
        evictions=rec.evictions,
        waits=rec.waits,
        wait_timeouts=rec.wait_timeouts,
        max_wait_s=rec.max_wait,
        peak_in_use=max(rec.peak_in_use, peak_in_use),
        unreturned=rec.unreturned,
        connect_time_s=_percentiles(rec.connect_times),
        idle_time_s=_percentiles(rec.idle_times),
        connections=lanes,
    )


def build_report(*, final: bool = False) -> Report:
    """The report of every recorder that collects one; ``final`` at exit, when connections
    still checked out can only be responses nobody read or closed."""
    from ._advice import advise
    from ._config import all_recorders

    records: list[_PoolRecord] = []
    started = time.time()
    peak: dict[PoolKey, int] = {}
    active: dict[str, int] = {}
    for recorder in all_recorders():
        sinks = [s for s in recorder.sinks if isinstance(s, ReportSink)]
        if not sinks:
            continue
        for sink in sinks:
            records += sink.records()
            started = min(started, sink.started)
        for stats in recorder.all_stats():
            peak[stats.key] = max(peak.get(stats.key, 0), stats.peak_in_use)
            if final and stats.in_use > 0:
                active[stats.key.origin] = active.get(stats.key.origin, 0) + stats.in_use
    records.sort(key=lambda r: (r.key.origin, r.manager_id, r.pool_id))
    pools_per_key: dict[PoolKey, int] = {}
    for r in records:
        pools_per_key[r.key] = pools_per_key.get(r.key, 0) + 1
    # The recorder's peak is per (scheme, host, port): it is this pool's only if it is alone.
    pools = tuple(
        summarize(r, peak.get(r.key, 0) if pools_per_key[r.key] == 1 else min(1, r.requests))
        for r in records
    )
    return Report(started, time.time(), pools, tuple(advise(records, active)), _managers(records))


def _managers(records: list[_PoolRecord]) -> tuple[ManagerSummary, ...]:
    by_manager: dict[int, list[_PoolRecord]] = {}
    for rec in records:
        if rec.manager_id:
            by_manager.setdefault(rec.manager_id, []).append(rec)
    summaries = []
    for manager_id, recs in sorted(by_manager.items()):
        evicted = sum(1 for r in recs if r.evictions)
        summaries.append(
            ManagerSummary(
                id=manager_id,
                pool_connections=max(r.num_pools for r in recs),
                pools_made=len(recs),
                pools_evicted=evicted,
                pools_kept=len(recs) - evicted,
                hosts=tuple(sorted({r.key.origin for r in recs})),
            )
        )
    return tuple(summaries)


def report() -> Report:
    """What every pool instrumented with ``report=True`` did so far, and what to change.

    ::

        poolscope.instrument(report=True)
        ...
        print(poolscope.report().render_text())
    """
    return build_report()
