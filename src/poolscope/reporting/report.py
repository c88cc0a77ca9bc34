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
from ..core.stats import PoolStats
from .advice import Evidence, advise
from .records import PoolRecord, Samples, all_sinks, by_manager
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


def _summarize(ev: Evidence) -> PoolSummary:
    stats, key = ev.stats, ev.stats.key
    requests = stats.created + stats.reused
    managers = {r.manager_id for r in ev.records}
    lanes = tuple(
        Connection(lane.id, lane.opened, lane.closed, lane.reason, lane.requests, tuple(lane.uses))
        for rec in ev.records
        for lane in rec.lanes.values()
    )
    return PoolSummary(
        origin=key.origin,
        scheme=key.scheme,
        host=key.host,
        port=key.port,
        proxy=key.proxy,
        manager=managers.pop() if len(managers) == 1 else None,
        pool_maxsize=stats.maxsize,
        pool_connections=max((r.num_pools for r in ev.records), default=0),
        requests=requests,
        created=stats.created,
        reused=stats.reused,
        reuse_ratio=stats.reused / requests if requests else 0.0,
        dropped=stats.dropped,
        discarded=stats.discarded,
        failed=dict(stats.failed),
        evictions=stats.evictions,
        waits=stats.waits,
        wait_timeouts=stats.wait_timeouts,
        max_wait_s=stats.max_wait,
        peak_in_use=stats.peak_in_use,
        unreturned=stats.unreturned,
        connect_time_s=_percentiles(ev.samples.connect_times),
        idle_time_s=_percentiles(ev.samples.idle_times),
        connections=lanes,
        library=ev.library.name,
    )


def build_report(*, final: bool = False) -> Report:
    """The report of every recorder that collects one; ``final`` at exit, when connections
    still checked out can only be responses nobody read or closed."""
    records: list[PoolRecord] = []
    started = time.time()
    stats: dict[PoolKey, list[PoolStats]] = {}
    samples: dict[PoolKey, Samples] = {}
    for sink in all_sinks():
        records += sink.records()
        started = min(started, sink.started)
        for key, part in sink.samples_snapshot().items():
            into = samples.setdefault(key, Samples())
            into.connect_times += part.connect_times
            into.idle_times += part.idle_times
            into.drop_idle_times += part.drop_idle_times
            into.drops_seen += part.drops_seen
        for one in sink.recorder.all_stats():
            stats.setdefault(one.key, []).append(one)
    records.sort(key=lambda r: r.pool_id)
    evidence = []
    for key in sorted(stats, key=lambda k: (k.origin, k.proxy or "")):
        total = combined(key, stats[key])
        if not (total.created or total.reused or total.failed or total.waits or total.evictions):
            continue  # a pool that was made and never used
        evidence.append(
            Evidence(
                total,
                samples.get(key) or Samples(),
                [r for r in records if r.key == key],
                total.in_use if final else 0,
            )
        )
    pools = tuple(_summarize(ev) for ev in evidence)
    advice = advise(evidence) if evidence else [NOTHING_SEEN]
    return Report(started, time.time(), pools, tuple(advice), _managers(records))


# Nothing seen is not healthy: a run that made requests poolscope could not see must say so.
NOTHING_SEEN = Advice(
    rule="nothing_seen",
    origin="",
    evidence="poolscope saw no urllib3 connection pool make a request in this run.",
    change=(
        "If the program made HTTP requests, they went where poolscope cannot see: in child "
        "processes (worker pools, subprocesses), through a vendored copy of urllib3 (pip's, "
        "for one), or through another client (httpx, aiohttp, urllib.request)."
    ),
    waste=0,
)


def combined(key: PoolKey, parts: list[PoolStats]) -> PoolStats:
    """One key's counts across recorders (several report to the report when configured
    differently), as a snapshot that stays still while the report is built."""
    total = PoolStats(key)
    for part in parts:
        for name in _SUMMED:
            setattr(total, name, getattr(total, name) + getattr(part, name))
        for name in _HIGHEST:
            setattr(total, name, max(getattr(total, name), getattr(part, name)))
        for name in ("failed", "retries"):
            into: dict[str, int] = getattr(total, name)
            for etype, count in list(getattr(part, name).items()):
                into[etype] = into.get(etype, 0) + count
    return total


_SUMMED = (
    "created",
    "reused",
    "dropped",
    "discarded",
    "closed",
    "server_closed",
    "unreturned",
    "evictions",
    "waits",
    "wait_timeouts",
    "waiting",
    "open",
    "idle",
)
_HIGHEST = ("peak_in_use", "peak_waiting", "max_wait", "maxsize")


def _managers(records: list[PoolRecord]) -> tuple[ManagerSummary, ...]:
    summaries = []
    for manager_id, recs in sorted(by_manager(records).items()):
        evicted = sum(1 for r in recs if r.evicted)
        summaries.append(
            ManagerSummary(
                id=manager_id,
                pool_connections=max(r.num_pools for r in recs),
                pools_made=len(recs),
                pools_evicted=evicted,
                pools_kept=len(recs) - evicted,
                hosts=tuple(sorted({r.key.origin for r in recs})),
                library=recs[0].library,
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
