"""Advice on timeouts and retries: requests sent with none, errors urllib3 did not retry,
timeouts that fired. The seed articles' other half, beside pool sizing (advice.py).

Each rule reads one pool key's counts (:class:`~poolscope.core.stats.PoolStats`): requests whose
connection came back with no read timeout on its socket, connections opened with none, read and
connect timeouts that fired, errors that reached the program and whether urllib3 had retried
them, and how long requests held a connection (checkout to return), from which a timeout is
suggested. The change is written in the words of the library that built the pool.
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Iterable

from ..core.knobs import Library
from ..core.stats import PoolStats
from .summaries import Advice

# A read timeout is suggested as this many times the p99 of response times, never below the
# slowest response seen, rounded up to one of these (seconds; whole minutes beyond).
P99_TIMES = 4
ROUND_UP_TO = (1, 2, 3, 5, 10, 15, 20, 30, 45, 60, 90, 120, 180, 300)
CONNECT_TIMEOUT = 3.05  # requests' docs: a little more than a multiple of 3 s, TCP's retransmit
# Errors a server makes by closing a kept-alive connection as it is reused.
_RESETS = ("ConnectionResetError", "http.client.RemoteDisconnected", "BrokenPipeError")


def spread(values: Iterable[float]) -> dict[str, float]:
    """p50, p90, p99 and max of ``values``; empty when there are none."""
    data = list(values)
    if not data:
        return {}
    if len(data) == 1:
        return {"p50": data[0], "p90": data[0], "p99": data[0], "max": data[0]}
    cuts = statistics.quantiles(data, n=100, method="inclusive")
    return {"p50": cuts[49], "p90": cuts[89], "p99": cuts[98], "max": max(data)}


def response_times(stats: PoolStats) -> dict[str, float]:
    """The spread of how long requests held a connection; max is the slowest of all."""
    times = spread(stats.use_times or ())
    if times:
        times["max"] = max(times["max"], stats.slowest)
    return times


def suggested_read_timeout(times: dict[str, float]) -> float:
    """Several times the p99, never below the slowest response seen, rounded up."""
    return rounded_up(max(P99_TIMES * times["p99"], times["max"]))


def rounded_up(wanted: float) -> float:
    """``wanted`` seconds rounded up to one of ROUND_UP_TO, or to whole minutes beyond."""
    for step in ROUND_UP_TO:
        if step >= wanted:
            return float(step)
    return float(60 * math.ceil(wanted / 60))


def _seconds(value: float) -> str:
    return f"{value:g}"


def _timeout_words(lib: Library, connect: float, read: float) -> str:
    assert lib.timeout is not None
    return lib.timeout.words(connect=_seconds(connect), read=_seconds(read))


def advise_timeouts(
    origin: str, stats: PoolStats, connect_times: list[float], lib: Library
) -> list[Advice]:
    """Every timeout and retry rule for one pool key."""
    return [
        *_no_timeout(origin, stats, connect_times, lib),
        *_not_retried(origin, stats, lib),
        *_timeouts_fired(origin, stats, lib),
    ]


def _no_timeout(
    origin: str, stats: PoolStats, connect_times: list[float], lib: Library
) -> list[Advice]:
    no_read, no_connect = stats.no_read_timeout, stats.no_connect_timeout
    if not (no_read or no_connect) or lib.timeout is None:
        return []
    times = response_times(stats)
    parts = []
    if no_read:
        parts.append(f"{no_read} request(s) to {origin} were sent with no read timeout")
    if no_connect:
        parts.append(f"{no_connect} connection(s) to it were opened with no connect timeout")
    evidence = " and ".join(parts) + ": a server that stops answering holds them forever."
    if times:
        read = suggested_read_timeout(times)
        evidence += (
            f" Responses took {times['p50']:.3f} s (p50), {times['p99']:.3f} s (p99), "
            f"{times['max']:.3f} s at the slowest."
        )
        why = f"{P99_TIMES} times the p99, above the slowest"
    else:
        read, why = 30.0, "no response was timed"
    connect = max(CONNECT_TIMEOUT, max(connect_times, default=0.0) * P99_TIMES)
    connect = CONNECT_TIMEOUT if connect == CONNECT_TIMEOUT else float(math.ceil(connect))
    return [
        Advice(
            rule="timeout",
            origin=origin,
            evidence=evidence,
            change=f"Set a timeout ({why}): {_timeout_words(lib, connect, read)}.",
            waste=no_read + no_connect,
        )
    ]


def _not_retried(origin: str, stats: PoolStats, lib: Library) -> list[Advice]:
    unretried = stats.unretried
    failed = sum(unretried.values())
    if not failed or lib.retries is None:
        return []
    kinds = ", ".join(f"{n} {etype}" for etype, n in sorted(unretried.items()))
    resets = sum(n for etype, n in unretried.items() if etype in _RESETS)
    because = (
        " (a server closing a kept-alive connection as it was reused gives these)" if resets else ""
    )
    setting = f" under {stats.retry_setting}" if stats.retry_setting else ""
    return [
        Advice(
            rule="retries",
            origin=origin,
            evidence=(
                f"{failed} request(s) to {origin} failed with a connection error that a retry "
                f"would have caught, and urllib3 retried none{setting}: {kinds}{because}."
            ),
            change=(
                "Retry idempotent requests on connection errors: "
                f"{lib.retries.words('total=3, backoff_factor=0.5')}."
            ),
            waste=failed,
        )
    ]


def _timeouts_fired(origin: str, stats: PoolStats, lib: Library) -> list[Advice]:
    fired = stats.read_timeouts
    if not fired:
        return []
    limit = stats.read_timeout
    times = response_times(stats)
    evidence = f"{fired} read timeout(s) fired on requests to {origin}"
    evidence += f" (read timeout {limit:g} s)" if limit else ""
    if not times:
        evidence += "; no response came back within it."
        change = (
            "No response was seen at all: check that the server answers this request, then "
            "set the read timeout above how long it takes."
        )
    elif times["p99"] >= limit / 2 or not limit:
        read = suggested_read_timeout({**times, "max": max(times["max"], limit)})
        evidence += (
            f"; the responses that came took up to {times['max']:.3f} s (p99 "
            f"{times['p99']:.3f} s), close to the limit: the timeout is too short for this server."
        )
        change = "Raise the read timeout" + (
            f": {_timeout_words(lib, CONNECT_TIMEOUT, read)}." if lib.timeout else "."
        )
    else:
        evidence += (
            f"; the responses that came took {times['p99']:.3f} s (p99), well within it: the "
            "server stalls on some requests."
        )
        retry = lib.retries.words("total=3, read=2") if lib.retries else ""
        change = "Keep the timeout and look at the server's slow requests" + (
            f"; retry reads of idempotent requests: {retry}." if retry else "."
        )
    return [
        Advice(rule="timeouts_firing", origin=origin, evidence=evidence, change=change, waste=fired)
    ]
