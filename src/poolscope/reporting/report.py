"""The report: every pool poolscope saw in this process, and what to change.

:func:`build_report` reads what this process's report sinks and recorders saw
(:mod:`.seen`), :func:`report_from` what several processes saw, and each turns it into a
:class:`Report` (plain frozen dataclasses, with the advice of
:mod:`.advice`) that renders as text, JSON or a self-contained HTML timeline.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from typing import Any

from ..core.events import PoolKey
from ..core.folding import OTHER_HOSTS
from ..core.libraries import met_unknown
from ..core.stats import combined, counted_work
from .advice import Evidence, advise
from .limits import left_out_by_limits, other_hosts
from .records import PoolRecord, Samples, all_sinks, by_manager
from .render import html
from .seen import Seen, gather
from .summaries import (
    Advice,
    Connection,
    ManagerShare,
    ManagerSummary,
    Occupancy,
    OtherHosts,
    PoolSummary,
    ProcessShare,
)
from .text import text
from .timeouts import response_times, spread


@dataclass(frozen=True)
class Report:
    """Every pool poolscope saw in this process, and what to change. See :func:`report`."""

    started: float
    ended: float
    pools: tuple[PoolSummary, ...]
    advice: tuple[Advice, ...]
    managers: tuple[ManagerSummary, ...] = ()
    processes: int = 1  # Python processes whose pools it gathers (poolscope run follows children)
    left_out: tuple[str, ...] = ()  # what the report's limits left out; its counts are exact
    # What is missing from its counts: processes that ended before writing their final part.
    incomplete: tuple[str, ...] = ()
    # The hosts folded together past POOLSCOPE_MAX_HOSTS, in all (their counts are exact).
    other_hosts: OtherHosts | None = None

    @property
    def healthy(self) -> bool:
        return not self.advice

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def render_text(self, *, all_hosts: bool = False) -> str:
        """The report as text: at most the 40 hosts that matter most, and a line for the rest,
        unless ``all_hosts``."""
        return text(
            self.pools,
            self.managers,
            self.advice,
            self.processes,
            self.left_out,
            self.incomplete,
            self.other_hosts,
            all_hosts=all_hosts,
        )

    def render_html(self, *, all_hosts: bool = False) -> str:
        """A self-contained page: the hosts that matter and a line for the rest, unless
        ``all_hosts``."""
        return html(
            self.started, self.ended, self.pools, self.advice, self.other_hosts, all_hosts=all_hosts
        )


_percentiles = spread


def _summarize(ev: Evidence, shares: tuple[ProcessShare, ...]) -> PoolSummary:
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
        processes=shares,
        manager_shares=_manager_shares(ev.records),
        occupancy=Occupancy(
            tuple(ev.samples.occupancy.points),
            tuple(ev.samples.occupancy.discards),
            tuple(ev.samples.occupancy.waits),
        ),
        response_time_s=response_times(stats),
        no_read_timeout=stats.no_read_timeout,
        no_connect_timeout=stats.no_connect_timeout,
        read_timeouts=stats.read_timeouts,
        connect_timeouts=stats.connect_timeouts,
        retries=dict(stats.retries),
        errors=dict(stats.errors),
        unretried=dict(stats.unretried),
        retry_setting=stats.retry_setting,
        in_use=stats.in_use,
        idle=stats.idle,
        waiting=stats.waiting,
        streams_peak=stats.streams_peak,
        stream_limit=stats.stream_limit,
        stream_waits=stats.stream_waits,
    )


def _manager_shares(records: list[PoolRecord]) -> tuple[ManagerShare, ...]:
    """One share per kind of manager that served a key (same pool size and, each, the same
    requests and connections), most requests first; none when they were all alike."""
    per: dict[int, list[int]] = {}  # manager id -> [maxsize, requests, created]
    for rec in records:
        counts = per.setdefault(rec.manager_id, [0, 0, 0])
        counts[0] = max(counts[0], rec.maxsize)
        counts[1] += sum(lane.requests for lane in rec.lanes.values())
        counts[2] += len(rec.lanes)
    kinds: dict[tuple[int, int, int], list[int]] = {}
    for manager, (maxsize, requests, created) in sorted(per.items()):
        kinds.setdefault((maxsize, requests, created), []).append(manager)
    if len(kinds) < 2:
        return ()
    return tuple(
        ManagerShare(len(ids), maxsize, requests, created, requests - created, tuple(ids[:5]))
        for (maxsize, requests, created), ids in sorted(
            kinds.items(), key=lambda item: -item[0][1] * len(item[1])
        )
    )


def build_report() -> Report:
    """The report of what this process saw so far."""
    return report_from([gather()])


def report_from(parts: list[Seen], *, incomplete: tuple[str, ...] = ()) -> Report:
    """One report from what one or several processes saw (``poolscope run`` follows a
    program's Python children): pools merged per key, each process's share one level down.
    Connections a process's responses still held as it ended (``Seen.held``) count as never
    given back."""
    if len(parts) > 1:
        parts = _distinct_ids(parts)
    # Vendored copies of urllib3 poolscope left alone: what went through them is not counted.
    incomplete = (*incomplete, *sorted({line for seen in parts for line in seen.vendored}))
    for seen in parts:  # libraries other processes met, for the advice to name
        for name, (built_by, speaks) in seen.libraries.items():
            met_unknown(name, built_by, speaks)
    keys = sorted(
        {k for p in parts for k in p.stats if k != OTHER_HOSTS},
        key=lambda k: (k.origin, k.proxy or ""),
    )
    records = sorted((r for p in parts for r in p.records), key=lambda r: r.pool_id)
    records_of: dict[PoolKey, list[PoolRecord]] = {}
    for rec in records:
        records_of.setdefault(rec.key, []).append(rec)
    evidence, shares = [], []
    for key in keys:
        of_key = [p.stats[key] for p in parts if key in p.stats]
        # One process's counts and samples are already copies that stay still (gathered, or
        # read back): only several are merged into new ones.
        total = of_key[0] if len(of_key) == 1 else combined(key, of_key)
        if not counted_work(total):
            continue  # a pool that was made and never used
        sampled = [part for p in parts if (part := p.samples.get(key)) is not None]
        if len(sampled) == 1:
            samples = sampled[0]
        else:
            samples = Samples()
            for part in sampled:
                samples.extend(part)
        active = sum(p.held.get(key, 0) for p in parts)
        evidence.append(Evidence(total, samples, records_of.get(key, []), active))
        shares.append(_shares(key, parts) if len(parts) > 1 else ())
    pools = tuple(_summarize(ev, share) for ev, share in zip(evidence, shares, strict=True))
    advice = advise(evidence) if evidence else [NOTHING_SEEN]
    started = min((p.started for p in parts), default=time.time())
    managers = _managers(records)
    other = other_hosts(parts)
    if other is not None and advice == [NOTHING_SEEN]:
        advice = []  # it saw pools: every one of them was folded
    left_out = left_out_by_limits(evidence, records, other)
    return Report(
        started,
        time.time(),
        pools,
        tuple(advice),
        managers,
        len(parts),
        left_out,
        incomplete,
        other,
    )


def _shares(key: PoolKey, parts: list[Seen]) -> tuple[ProcessShare, ...]:
    shares = []
    for p in parts:
        stats = p.stats.get(key)
        if stats is not None and stats.created + stats.reused:
            requests = stats.created + stats.reused
            shares.append(ProcessShare(p.pid, requests, stats.created, stats.reused))
    return tuple(shares)


def _distinct_ids(parts: list[Seen]) -> list[Seen]:
    # Pool and manager ids count from 1 in each process: number them anew across processes.
    pool_ids: dict[tuple[int, int], int] = {}
    manager_ids: dict[tuple[int, int], int] = {}
    for n, part in enumerate(parts):
        for rec in part.records:
            rec.pool_id = pool_ids.setdefault((n, rec.pool_id), len(pool_ids) + 1)
            if rec.manager_id:
                rec.manager_id = manager_ids.setdefault((n, rec.manager_id), len(manager_ids) + 1)
    return parts


# Nothing seen is not healthy: a run that made requests poolscope could not see must say so.
NOTHING_SEEN = Advice(
    rule="nothing_seen",
    origin="",
    evidence="poolscope saw no urllib3 or httpx connection pool make a request in this run.",
    change=(
        "If the program made HTTP requests, they went where poolscope cannot see: in child "
        "processes it does not follow (in process: any; under poolscope run: those that are not "
        "Python or were killed), through a vendored copy of urllib3 poolscope left alone (named "
        "under Incomplete), or through another client (aiohttp, urllib.request)."
    ),
    waste=0,
)


def _managers(records: list[PoolRecord]) -> tuple[ManagerSummary, ...]:
    summaries = []
    for manager_id, recs in sorted(by_manager(records).items()):
        if not any(r.num_pools for r in recs):
            continue  # an httpx client's pool: one for every host, no pools to evict
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
    """What every pool poolscope instruments did since the report was first asked for
    (``report=True`` anywhere, whatever each pool reports to), and what to change.

    ::

        poolscope.instrument(report=True)
        ...
        print(poolscope.report().render_text())

    Raises ``RuntimeError`` when the report was never asked for: nothing was kept for it.
    """
    if not all_sinks():
        raise RuntimeError(
            "poolscope.report() has nothing to report: the report was never asked for, so "
            "nothing was kept for it. Ask for it before the requests, with "
            "poolscope.instrument(report=True) or instrument_session(session, report=True), or "
            "run the program unchanged with: poolscope run -- python app.py"
        )
    return build_report()


def json_ready(report: Report) -> dict[str, Any]:
    """:meth:`Report.to_dict` plus ``healthy``: what ``poolscope run --format json`` writes."""
    data = report.to_dict()
    data["healthy"] = report.healthy
    return data
