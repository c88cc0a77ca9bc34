"""The report: every pool poolscope saw in this process, and what to change.

:func:`build_report` reads each report sink's per-pool records and its recorder's counts and
turns them into a :class:`Report` (plain frozen dataclasses, with the advice of
:mod:`.advice`) that renders as text, JSON or a self-contained HTML timeline.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import asdict, dataclass
from typing import Any

from ..core.events import PoolKey
from .advice import advise
from .records import PoolRecord, all_sinks, by_manager
from .render import html, text
from .summaries import Advice, Connection, ManagerSummary, PoolSummary


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
        return asdict(self)

    def render_text(self) -> str:
        return text(self.pools, self.managers, self.advice)

    def render_html(self) -> str:
        return html(self.started, self.ended, self.pools, self.advice)


def _percentiles(values: list[float]) -> dict[str, float]:
    if not values:
        return {}
    if len(values) == 1:
        return {"p50": values[0], "p90": values[0], "p99": values[0], "max": values[0]}
    cuts = statistics.quantiles(values, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": max(values)}


def summarize(rec: PoolRecord, peak_in_use: int) -> PoolSummary:
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
    records: list[PoolRecord] = []
    started = time.time()
    peak: dict[PoolKey, int] = {}
    active: dict[str, int] = {}
    for sink in all_sinks():
        records += sink.records()
        started = min(started, sink.started)
        for stats in sink.recorder.all_stats():
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


def _managers(records: list[PoolRecord]) -> tuple[ManagerSummary, ...]:
    summaries = []
    for manager_id, recs in sorted(by_manager(records).items()):
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


def json_ready(report: Report) -> dict[str, Any]:
    """:meth:`Report.to_dict` plus ``healthy``: what ``poolscope run --format json`` writes."""
    data = report.to_dict()
    data["healthy"] = report.healthy
    return data
