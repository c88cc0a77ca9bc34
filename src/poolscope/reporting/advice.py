"""Advice rules: from what the pools did in this run to the exact change that fixes it.

Each rule reads the :class:`Evidence` of one pool key (the recorder's counts, the report's
samples and pool objects) and returns :class:`Advice` with the evidence (numbers from this run)
and the change (the argument and value to use). A healthy run gets none.
"""

from __future__ import annotations

from typing import NamedTuple

from ..core.stats import PoolStats, needed
from .records import PoolRecord, Samples, by_manager
from .summaries import Advice

# How many throwaway sessions to one host before "use one Session" is worth saying.
THROWAWAY_SESSIONS = 5


class Evidence(NamedTuple):
    """What the report knows of one pool key (scheme, host, port, proxy)."""

    stats: PoolStats  # its counts, across every pool object that served it
    samples: Samples
    records: list[PoolRecord]  # the pool objects that served it
    active_at_end: int  # connections still checked out when the program ended


def advise(evidence: list[Evidence]) -> list[Advice]:
    advice: list[Advice] = []
    for ev in evidence:
        origin = ev.stats.key.origin
        advice += _pool_full(origin, ev.stats)
        advice += _throwaway_sessions(origin, ev.records)
        advice += _dropped(origin, ev.samples)
        advice += _waits(origin, ev.stats)
        advice += _unread(origin, ev.stats.unreturned + ev.active_at_end)
    advice += _evictions([r for ev in evidence for r in ev.records])
    return advice


def _pool_full(origin: str, stats: PoolStats) -> list[Advice]:
    discarded = stats.discarded
    if not discarded:
        return []
    maxsize = stats.maxsize
    need = needed(stats.peak_in_use, maxsize)
    return [
        Advice(
            rule="pool_maxsize",
            origin=origin,
            evidence=(
                f"{discarded} connection(s) to {origin} were opened and then discarded because "
                f"the pool was full (pool_maxsize={maxsize}); up to {need} were in use at once."
            ),
            change=(
                f"Raise pool_maxsize to {need}: HTTPAdapter(pool_maxsize={need}) "
                f"(urllib3: PoolManager(maxsize={need}))."
            ),
            waste=discarded,
        )
    ]


def _throwaway_sessions(origin: str, recs: list[PoolRecord]) -> list[Advice]:
    throwaway = [r for r in recs if r.manager_id and r.short_lived()]
    managers = {r.manager_id for r in throwaway}
    if len(managers) < THROWAWAY_SESSIONS:
        return []
    connections = sum(len(r.lanes) for r in throwaway)
    return [
        Advice(
            rule="one_session",
            origin=origin,
            evidence=(
                f"{len(managers)} separate sessions or PoolManagers each opened their own "
                f"connection to {origin} and closed it after one or two requests "
                "(requests.get() and requests.post() make a new Session on every call)."
            ),
            change=(
                "Make one requests.Session() and send every request through it, so its "
                "connections are reused."
            ),
            waste=connections - 1,
        )
    ]


def _dropped(origin: str, samples: Samples) -> list[Advice]:
    if not samples.drops_seen:
        return []
    dropped = samples.drops_seen  # those whose idle time is known
    shortest = min(samples.drop_idle_times)
    return [
        Advice(
            rule="keepalive",
            origin=origin,
            evidence=(
                f"{dropped} pooled connection(s) to {origin} were found closed by the server "
                f"after sitting idle {shortest:.1f} s or more: its keep-alive timeout is shorter "
                "than your idle gaps, and a request racing such a close fails with a reset."
            ),
            change=(
                "Retry idempotent requests on connection errors, e.g. "
                "HTTPAdapter(max_retries=Retry(total=3, connect=3, read=2)), or keep connections "
                f"busier than every {shortest:.1f} s (fewer sessions or a smaller pool)."
            ),
            waste=dropped,
        )
    ]


def _waits(origin: str, stats: PoolStats) -> list[Advice]:
    waits = stats.waits
    if not waits:
        return []
    maxsize = stats.maxsize
    need = maxsize + stats.peak_waiting
    timeouts = stats.wait_timeouts
    longest = stats.max_wait
    also = f", {timeouts} of them gave up (EmptyPoolError)" if timeouts else ""
    return [
        Advice(
            rule="pool_block",
            origin=origin,
            evidence=(
                f"{waits} request(s) to {origin} waited for a free connection (pool_block=True, "
                f"pool_maxsize={maxsize}), the longest {longest * 1000:.0f} ms{also}; up to "
                f"{need} requests wanted a connection at once."
            ),
            change=(
                f"Raise pool_maxsize to {need}: HTTPAdapter(pool_maxsize={need}, "
                "pool_block=True), or use fewer concurrent workers."
            ),
            waste=waits,
        )
    ]


def _unread(origin: str, unreturned: int) -> list[Advice]:
    if unreturned < 2:
        return []
    return [
        Advice(
            rule="read_responses",
            origin=origin,
            evidence=(
                f"{unreturned} connection(s) to {origin} never went back to the pool: their "
                "responses were not read to the end or not closed (stream=True), so every "
                "request needed a new connection."
            ),
            change=(
                "Read each response to the end (r.content, or iterate r.iter_content()) inside "
                "`with session.get(url, stream=True) as r:`; closing an unread response closes "
                "its connection instead of returning it."
            ),
            waste=unreturned,
        )
    ]


def _evictions(records: list[PoolRecord]) -> list[Advice]:
    advice = []
    for recs in by_manager(records).values():
        evictions = sum(1 for r in recs if r.evicted)
        if not evictions:
            continue
        hosts = sorted({r.key.origin for r in recs})
        pools = max(r.num_pools for r in recs)
        if len(hosts) <= pools:
            continue
        advice.append(
            Advice(
                rule="pool_connections",
                origin=", ".join(hosts),
                evidence=(
                    f"{len(hosts)} hosts took turns in a PoolManager that keeps {pools} pool(s) "
                    f"(pool_connections={pools}): {evictions} pool(s) were evicted, and their "
                    "connections with them."
                ),
                change=(
                    f"Raise pool_connections to {len(hosts)}: "
                    f"HTTPAdapter(pool_connections={len(hosts)}) "
                    f"(urllib3: PoolManager(num_pools={len(hosts)}))."
                ),
                waste=evictions,
            )
        )
    return advice
