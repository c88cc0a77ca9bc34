"""What the report keeps beyond the recorder's counts, gathered from the event stream.

Counts live once, in the recorder's :class:`~poolscope.core.stats.PoolStats`, which the metrics
sink reads too. What the report needs beyond them, :class:`ReportSink` keeps: per (scheme, host,
port), samples of connect times, idle times and the idle times of dropped connections; per pool
object, which manager made it, its sizes, whether it was evicted, and a lane per connection
(opened, requests served, closed) for the timeline and for telling throwaway sessions apart.
Every ReportSink made is kept (the report outlives the sessions it describes): see
:func:`all_sinks`.
"""

from __future__ import annotations

import random
import threading
import time
from itertools import compress, repeat
from operator import attrgetter, itemgetter, not_

from ..core.events import CloseReason, EventKind, PoolEvent, PoolKey
from ..core.folding import OTHER_HOSTS
from ..core.recorder import Recorder
from ..core.sink import Sink
from ..core.stats import PoolStats, add_into, combined
from .occupancy import MERGE_AT, NONE_YET, Occupancy

SAMPLES = 10_000  # connect/idle time samples kept per pool key (a reservoir beyond that)
POOLS = 10_000  # pool objects kept per recorder; later ones only count (in PoolStats)
LANES = 500  # connections kept per pool object for the timeline
USES = 1_000  # request marks kept per connection for the timeline

# A pool's connections closed by the pool itself going away: closed or collected.
_CLOSED_BY_POOL = (CloseReason.POOL_CLOSED.value, CloseReason.GARBAGE_COLLECTED.value)
_key = attrgetter("key")
_REUSED, _CREATED, _CLOSED, _EVICTED = (
    EventKind.REUSED,
    EventKind.CREATED,
    EventKind.CLOSED,
    EventKind.EVICTED,
)
_time = time.time
_record = itemgetter(1)


class Lane:
    """One connection: when it opened and closed, why, and the requests it served."""

    __slots__ = ("closed", "id", "opened", "reason", "requests", "uses")

    def __init__(self, conn_id: int, opened: float) -> None:
        self.id = conn_id
        self.opened = opened
        self.uses: list[float] = [opened]
        self.requests = 1
        self.closed: float | None = None
        self.reason: str | None = None


class PoolRecord:
    """What the report keeps about one pool object: its place, sizes and connections."""

    __slots__ = (
        "evicted",
        "key",
        "lanes",
        "lanes_left_out",
        "library",
        "manager_id",
        "marks_left_out",
        "maxsize",
        "num_pools",
        "pool_id",
    )

    def __init__(self, key: PoolKey, pool_id: int, manager_id: int, library: str) -> None:
        self.key = key
        self.pool_id = pool_id
        self.manager_id = manager_id
        self.library = library  # which library built it
        self.maxsize = 0
        self.num_pools = 0
        self.evicted = False
        self.lanes: dict[int, Lane] = {}
        self.lanes_left_out = 0  # connections beyond LANES, not drawn
        self.marks_left_out = 0  # request marks beyond USES on its lanes, not drawn

    def short_lived(self) -> bool:
        """It opened connections, served at most two requests, reused none, and every
        connection closed with the pool (what ``requests.get()``'s throwaway Session does)."""
        lanes = self.lanes.values()
        opened = len(lanes)
        requests = sum(lane.requests for lane in lanes)
        closed_by_pool = sum(1 for lane in lanes if lane.reason in _CLOSED_BY_POOL)
        return 0 < opened == requests <= 2 and closed_by_pool >= opened


class Samples:
    """Time samples for one pool key: a uniform reservoir of each beyond ``SAMPLES``."""

    __slots__ = (
        "connect_times",
        "connects_seen",
        "drop_idle_times",
        "drops_seen",
        "idle_times",
        "idles_seen",
        "occupancy",
        "pool_timeout",
        "wait_times",
        "waits_seen",
    )

    def __init__(self) -> None:
        self.occupancy = Occupancy()
        self.connect_times: list[float] = []
        self.idle_times: list[float] = []
        self.drop_idle_times = NONE_YET  # a list from the first (see occupancy.NONE_YET)
        self.wait_times = NONE_YET  # how long requests waited for a free connection
        self.connects_seen = 0  # samples offered to each reservoir
        self.idles_seen = 0
        self.drops_seen = 0
        self.waits_seen = 0
        self.pool_timeout = 0.0  # the longest a waiting request would wait (0: no limit seen)

    def extend(self, other: Samples) -> None:
        """Take in another recorder's or process's samples of the same key."""
        self.connect_times += other.connect_times
        self.idle_times += other.idle_times
        if other.drop_idle_times:  # new lists: the rare kinds' may be NONE_YET
            self.drop_idle_times = [*self.drop_idle_times, *other.drop_idle_times]
        self.connects_seen += other.connects_seen
        self.idles_seen += other.idles_seen
        self.drops_seen += other.drops_seen
        if other.wait_times:
            self.wait_times = [*self.wait_times, *other.wait_times]
        self.waits_seen += other.waits_seen
        self.pool_timeout = max(self.pool_timeout, other.pool_timeout)
        self.occupancy.extend(other.occupancy)


def _sample(values: list[float], value: float, seen: int) -> None:
    if len(values) < SAMPLES:
        values.append(value)
    else:  # reservoir sampling keeps a uniform sample of everything offered
        slot = random.randrange(seen)
        if slot < SAMPLES:
            values[slot] = value


class ReportSink(Sink):
    """Keeps what :func:`poolscope.report` needs beyond the counts; thread-safe."""

    kinds = frozenset(EventKind)
    keeps_use_times = True  # how long requests held a connection, for the timeout advice

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder  # whose PoolStats the report reads
        self._kept = recorder.kept
        # Its counts when this sink was added: the report covers what came after.
        self.baseline = {s.key: combined(s.key, [s]) for s in recorder.all_stats()}
        self.baseline_folded = recorder.folded_hosts
        # Reentrant: the garbage collector may run a connection's callback (an event for this
        # sink) at any allocation, also one made while this thread holds the lock. What is
        # iterated under it is a copy, so such an event cannot change it underway.
        self._lock = threading.RLock()
        self.pools: dict[int, PoolRecord] = {}
        self.samples: dict[PoolKey, Samples] = {}
        self.started = time.time()

    def handle(self, event: PoolEvent) -> None:
        now = _time()
        kind = event.kind
        key = event.key
        with self._lock:
            samples = self.samples.get(key)
            stats = self._kept(key)
            if samples is None:
                if stats is None:  # an event of a host just folded: counted in the aggregate
                    return
                samples = self.samples[key] = Samples()
            if stats is not None:  # Occupancy.sample(), inline: one call less an event
                points = samples.occupancy.points
                points.append((now, stats.open - stats.idle, stats.idle, stats.waiting))
                if len(points) >= MERGE_AT:
                    samples.occupancy.halve()
            rec = self.pools.get(event.pool_id)
            if rec is None and len(self.pools) < POOLS:  # beyond POOLS, pools only count
                rec = self.pools[event.pool_id] = PoolRecord(
                    key, event.pool_id, event.manager_id, event.library
                )
            if rec is not None:
                if event.pool_maxsize:
                    rec.maxsize = event.pool_maxsize
                if event.num_pools:
                    rec.num_pools = event.num_pools
            # One test per kind, the most frequent first: reuses, then what every new host
            # brings (its connection, and the close and eviction of an older host's).
            if kind is _REUSED:
                if event.duration is not None:
                    samples.idles_seen += 1
                    _sample(samples.idle_times, event.duration, samples.idles_seen)
                if rec is not None:
                    lane = rec.lanes.get(event.connection_id or 0)
                    if lane is not None:
                        lane.requests += 1
                        if len(lane.uses) < USES:
                            lane.uses.append(now)
                        else:
                            rec.marks_left_out += 1
            elif kind is _CREATED:
                samples.connects_seen += 1
                _sample(samples.connect_times, event.duration or 0.0, samples.connects_seen)
                if rec is not None:
                    if len(rec.lanes) < LANES:
                        conn = event.connection_id or 0
                        rec.lanes[conn] = Lane(conn, now)
                    else:
                        rec.lanes_left_out += 1
            elif kind is _CLOSED:
                if rec is not None:
                    lane = rec.lanes.get(event.connection_id or 0)
                    if lane is not None:
                        lane.closed = now
                        # The enum's value as a plain attribute: .value is a Python property.
                        lane.reason = event.reason._value_ if event.reason is not None else None
            elif kind is _EVICTED:
                if rec is not None:
                    rec.evicted = True
            else:
                self._sample(samples, event, now)

    @staticmethod
    def _sample(samples: Samples, event: PoolEvent, now: float) -> None:
        # Runs under self._lock: the samples of the kinds handle() does not take itself.
        kind = event.kind
        if kind is EventKind.DROPPED and event.duration is not None:
            samples.drops_seen += 1
            if samples.drop_idle_times is NONE_YET:
                samples.drop_idle_times = []
            _sample(samples.drop_idle_times, event.duration, samples.drops_seen)
        elif kind is EventKind.DISCARDED:
            occupancy = samples.occupancy
            if occupancy.discards is NONE_YET:
                occupancy.discards = []
            occupancy.mark(occupancy.discards, now)
        elif kind is EventKind.WAIT_STARTED:
            occupancy = samples.occupancy
            if occupancy.waits is NONE_YET:
                occupancy.waits = []
            occupancy.mark(occupancy.waits, now)
            if event.timeout is not None and event.timeout > samples.pool_timeout:
                samples.pool_timeout = event.timeout
        elif kind is EventKind.WAIT_ENDED or kind is EventKind.WAIT_TIMED_OUT:
            samples.waits_seen += 1
            if samples.wait_times is NONE_YET:
                samples.wait_times = []
            _sample(samples.wait_times, event.duration or 0.0, samples.waits_seen)

    def folded(self, keys: list[PoolKey]) -> None:
        """The recorder folded these hosts: their samples and pool objects go (the report counts
        them in its line for the other hosts), and what they had counted before the report
        began goes to the aggregate's baseline."""
        gone = set(keys)
        with self._lock:
            for key in keys:
                self.samples.pop(key, None)
            # In C (map, filter, compress): a fold takes hundreds of hosts at once.
            befores = list(filter(None, map(self.baseline.pop, keys, repeat(None))))
            if befores:
                add_into(self.baseline.setdefault(OTHER_HOSTS, PoolStats(OTHER_HOSTS)), befores)
            pools = list(self.pools.items())  # one copy: a finalizer may add to it meanwhile
            kept = map(not_, map(gone.__contains__, map(_key, map(_record, pools))))
            self.pools = dict(compress(pools, kept))

    def forget(self) -> None:
        """Start afresh (a forked child: what it holds is its parent's)."""
        with self._lock:
            self.pools.clear()
            self.samples.clear()
            self.started = time.time()
        for stats in self.recorder.all_stats():  # response times, and the slowest, too
            if stats.use_times is not None:
                stats.use_times.clear()
            stats.slowest = 0.0

    def restart(self) -> None:
        """Count from now, as if just added: the report's counts start again (tests: one
        test's report is not the next one's, even where a loopback port comes back)."""
        self.forget()
        with self._lock:
            self.baseline = {s.key: combined(s.key, [s]) for s in self.recorder.all_stats()}
            self.baseline_folded = self.recorder.folded_hosts

    def records(self) -> list[PoolRecord]:
        with self._lock:
            return list(self.pools.values())

    def samples_snapshot(self) -> dict[PoolKey, Samples]:
        """A copy of every key's samples, taken under the lock."""
        with self._lock:
            copies = {}
            for key, samples in list(self.samples.items()):
                copies[key] = Samples()
                copies[key].extend(samples)  # a copy: the lists are new
            return copies


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


def renew_locks_after_fork() -> None:
    """In a forked child: new locks for the registry, every sink and its recorder, as a thread
    of the parent may have held one at the fork (and would never release it here)."""
    global _sinks_lock
    _sinks_lock = threading.Lock()
    for sink in _sinks:
        sink._lock = threading.RLock()
        sink.recorder.renew_lock()


def all_sinks() -> list[ReportSink]:
    with _sinks_lock:
        return list(_sinks)
