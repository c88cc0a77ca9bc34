"""``poolscope diagnose``: the report's rules over a fleet, from what Prometheus scraped.

It asks Prometheus' HTTP API (or anything that speaks it: Thanos, Mimir, VictoriaMetrics) for
poolscope's series over a time range, per host summed over every process of the selected jobs:
counters as their increase, the peak in use and the pool size as maxima, time samples from
histograms' buckets, and the library that built each host's pools (``urllib3.pool.library``).
From those it builds what one process's report is built from, so the rules, the numbers and
the library's words are the report's own. What the metrics do not carry (the timeline, single
pool objects, responses never read) those rules cannot see, and the report says so under
"Incomplete".
"""

from __future__ import annotations

from collections import deque
from typing import Any

import requests

from ..core.events import PoolKey
from ..core.libraries import URLLIB3, library, met_unknown
from ..core.stats import PoolStats
from ..core.unknown import described
from ..reporting.records import Samples
from ..reporting.report import Report, report_from
from ..reporting.seen import Seen

# PoolStats fields and the counter (as the OpenTelemetry Prometheus exporter names it) each is
# the increase of; the histograms' _count for waits.
_INCREASES = {
    "created": "urllib3_pool_connections_created_total",
    "reused": "urllib3_pool_connections_reused_total",
    "dropped": "urllib3_pool_connections_dropped_total",
    "discarded": "urllib3_pool_connections_discarded_total",
    "evictions": "urllib3_pool_evictions_total",
    "wait_timeouts": "urllib3_pool_wait_timeouts_total",
    "waits": "urllib3_pool_connection_wait_time_seconds_count",
    "no_read_timeout": "urllib3_pool_requests_without_timeout_total",
    "no_connect_timeout": "urllib3_pool_connections_without_timeout_total",
    "read_timeouts": "urllib3_pool_timeouts_read_total",
    "connect_timeouts": "urllib3_pool_timeouts_connect_total",
}
_BY_ERROR = {
    "failed": "urllib3_pool_connections_failed_total",
    "retries": "urllib3_pool_retries_total",
    "errors": "urllib3_pool_errors_total",
}
_MAXIMA = {
    "peak_in_use": "urllib3_pool_connections_peak",
    "maxsize": "urllib3_pool_connections_max",
}
_HOST = ("url_scheme", "server_address", "server_port")

NOT_IN_METRICS = (
    "from Prometheus: the rules that read the timeline or single pool objects (throwaway "
    "sessions, responses never read, evictions) need poolscope run on one process; idle times "
    "come from the idle-time histograms, to their bucket bounds",
)
TIMES_FROM_BUCKETS = (
    "response times come from urllib3.pool.connection.use_time, to its bucket bounds: a time "
    "in the evidence is the upper bound of the bucket it fell in (beyond the last bound, 300 "
    "s, that bound: the least it took)"
)
NO_TIMES = (
    "response times were not exported for hosts sent requests with no read timeout "
    "(POOLSCOPE_METRICS_USE_TIME=1 in the services exports them): their timeout's read value "
    "is a default, not the fleet's"
)
_USE_TIME = "urllib3_pool_connection_use_time_seconds_bucket"
_IDLE_TIME = "urllib3_pool_connection_idle_time_seconds_bucket"
_DROPPED_IDLE_TIME = "urllib3_pool_connection_dropped_idle_time_seconds_bucket"
_SAMPLES = 4096  # response times per host handed to the timeout rule, as one process keeps
_LIBRARY = "urllib3_pool_library"
_WHERE = "where in it, the metrics do not say: poolscope run on one of its processes does"


class PrometheusError(Exception):
    """Prometheus could not be asked, or answered with an error."""


def diagnose(url: str, *, job: str = "", window: str = "1h", started: float = 0.0) -> Report:
    """The report of a fleet from the Prometheus at ``url``: hosts of jobs matching ``job``
    (a regular expression; all when empty) over the last ``window`` (a PromQL duration)."""
    selector = f'{{job=~"{_escape(job)}"}}' if job else ""
    stats: dict[PoolKey, PoolStats] = {}

    def host(labels: dict[str, str]) -> PoolStats | None:
        if not labels.get("server_address"):  # poolscope.other_hosts: no host of its own
            return None
        key = PoolKey(
            labels.get("url_scheme", "http"),
            labels["server_address"],
            int(labels.get("server_port") or 0),
        )
        return stats.setdefault(key, PoolStats(key))

    by = ", ".join(_HOST)
    for field, name in _INCREASES.items():
        for labels, value in _query(url, f"sum by ({by}) (increase({name}{selector}[{window}]))"):
            if (one := host(labels)) is not None:
                setattr(one, field, round(value))
    for field, name in _BY_ERROR.items():
        query = f"sum by ({by}, error_type) (increase({name}{selector}[{window}]))"
        for labels, value in _query(url, query):
            if (one := host(labels)) is not None and round(value):
                getattr(one, field)[labels.get("error_type", "")] = round(value)
    for field, name in _MAXIMA.items():
        query = f"max by ({by}) (max_over_time({name}{selector}[{window}]))"
        for labels, value in _query(url, query):
            if (one := host(labels)) is not None:
                setattr(one, field, round(value))
    # Which library built each host's pools: the one most of its processes name.
    query = f"count by ({by}, poolscope_library) (max_over_time({_LIBRARY}{selector}[{window}]))"
    named: dict[PoolKey, tuple[float, str]] = {}
    for labels, value in _query(url, query):
        one, name = host(labels), labels.get("poolscope_library", "")
        if one is not None and name and (value, name) > named.get(one.key, (0.0, "")):
            named[one.key] = (value, name)
    for key, (_, name) in named.items():
        stats[key].library = name
        if library(name) is URLLIB3 and name != URLLIB3.name:  # a library not in the table
            met_unknown(name, described(name, _WHERE, words_of=URLLIB3.name))

    # Time samples, from histograms' buckets: how long requests held a connection (the timeout
    # rule), and idle times of reused and of dropped connections (the keep-alive rule).
    def buckets(name: str) -> dict[PoolKey, list[tuple[float, float]]]:
        found: dict[PoolKey, list[tuple[float, float]]] = {}
        query = f"sum by ({by}, le) (increase({name}{selector}[{window}]))"
        for labels, value in _query(url, query):
            if (one := host(labels)) is not None:
                found.setdefault(one.key, []).append((float(labels.get("le", "+Inf")), value))
        return found

    used = buckets(_USE_TIME)
    for key, cumulative in used.items():
        samples = _samples(cumulative)
        stats[key].use_times, stats[key].slowest = deque(samples), max(samples, default=0.0)
    sampled: dict[PoolKey, Samples] = {}
    for key, cumulative in buckets(_IDLE_TIME).items():
        sampled.setdefault(key, Samples()).idle_times = _samples(cumulative)
    for key, cumulative in buckets(_DROPPED_IDLE_TIME).items():
        drop_idle_times = _samples(cumulative)
        if drop_idle_times:  # the rule reads the shortest: none, no rule
            drops = sampled.setdefault(key, Samples())
            drops.drop_idle_times = drop_idle_times
            # How many: the counter's increase (it exists from the pool's start; a histogram's
            # series appears with its first drop, and increase() extrapolates from there).
            drops.drops_seen = max(stats[key].dropped, 1)
    seen = Seen(pid=0, started=started, stats=stats, samples=sampled)
    untimed = [k for k, s in stats.items() if s.no_read_timeout and not s.use_times]
    timed = (TIMES_FROM_BUCKETS,) if used else ()
    return report_from([seen], incomplete=(*NOT_IN_METRICS, *timed, *_no_times(untimed)))


def _no_times(hosts: list[PoolKey]) -> tuple[str, ...]:
    if not hosts:
        return ()
    named = ", ".join(sorted(key.origin for key in hosts)[:3]) + (", ..." if len(hosts) > 3 else "")
    return (f"{NO_TIMES} ({named})",)


def _samples(cumulative: list[tuple[float, float]]) -> list[float]:
    """A histogram's cumulative buckets (bound, count) as at most _SAMPLES values, each the
    upper bound of its bucket, in proportion; those beyond the last finite bound at that bound
    (the least they took). Each bucket's increase() is extrapolated on its own, so a count
    below the one before it is taken as that one."""
    buckets = sorted(cumulative)
    finite = [bound for bound, _ in buckets if bound != float("inf")]
    total = max((count for _, count in buckets), default=0.0)
    if not finite or total < 0.5:
        return []
    scale = min(1.0, _SAMPLES / total)
    samples: list[float] = []
    taken = 0  # samples so far: rounding the running total loses no fraction
    running = 0.0
    for bound, count in buckets:
        running = max(running, count)
        n = round(running * scale) - taken
        if n > 0:
            samples += [min(bound, finite[-1])] * n
            taken += n
    return samples


def _query(url: str, query: str) -> list[tuple[dict[str, str], float]]:
    """An instant query's result: each series' labels and value."""
    try:
        answer = requests.get(
            f"{url.rstrip('/')}/api/v1/query", params={"query": query}, timeout=60
        )
        body: Any = answer.json()
    except (requests.RequestException, ValueError) as exc:
        reason = (
            "no connection could be made"
            if isinstance(exc, requests.ConnectionError)
            else f"{type(exc).__name__}: {exc}"
        )
        raise PrometheusError(
            f"Prometheus at {url} could not be asked ({reason}). Check the URL (for example "
            "http://prometheus:9090) and that this machine can reach it."
        ) from exc
    if body.get("status") != "success":
        raise PrometheusError(
            f"Prometheus at {url} refused the query {query!r}: {body.get('error', body)}."
        )
    return [
        (result["metric"], float(result["value"][1]))
        for result in body["data"]["result"]
        if result["value"][1] not in ("NaN", "+Inf", "-Inf")
    ]


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"')
