"""Advice when requests waited for a free connection: how many were in flight at once, how
long they waited and, when some gave up (httpx's ``PoolTimeout``, urllib3's
``EmptyPoolError``), which of more connections, fewer requests at once or a longer pool
timeout fits what this run saw. The change is written in the words of the library that built
the pool."""

from __future__ import annotations

import math

from ..core.knobs import Knob, Library
from ..core.stats import PoolStats
from .records import Samples
from .summaries import Advice
from .timeouts import response_times, rounded_up, spread

# Beyond this many requests wanting a connection at once, and this many times the connections
# the pool opens, the program starts more requests at once than one pool to one server should
# serve (httpx's own default max_connections is 100): bounding them comes first.
CROWD, CROWD_TIMES = 100, 4


def advise_waits(origin: str, stats: PoolStats, samples: Samples, lib: Library) -> list[Advice]:
    waits = stats.waits
    if not waits:
        return []
    # The connections a request waits for: a pool's maxsize (urllib3's, with block=True), or,
    # where the limit on open connections is a setting of its own (httpx's max_connections),
    # those in use when requests waited (not the pools' size: another client's to the host
    # may keep more idle).
    knob = lib.block or lib.maxsize
    own_limit = knob.name != lib.maxsize.name
    limit = (stats.peak_in_use or stats.maxsize) if own_limit else stats.maxsize
    waiting = stats.peak_waiting
    need = limit + waiting
    timeouts = stats.wait_timeouts
    waited = spread(samples.wait_times)
    held = response_times(stats)
    # A wait is one request's wait; httpcore may hand a waiting request a connection another
    # took first, and the request waits again: a wait of its own.
    evidence = [
        f"Requests to {origin} waited {waits} time(s) for a free connection (the pool blocks, "
        f"{knob.name}={limit}): up to {need} were in flight at once, {limit} on connections "
        f"and {waiting} waiting",
        f"the waits took {_s(waited['p50'])} (p50), {_s(stats.max_wait)} at the longest"
        if waited
        else f"the longest wait {_s(stats.max_wait)}",
    ]
    if timeouts:
        after = f" of {_s(samples.pool_timeout)}" if samples.pool_timeout else ""
        evidence.append(f"{timeouts} of them gave up after the pool timeout{after} ({lib.gave_up})")
    if held:
        evidence.append(f"a request held its connection {_s(held['p50'])} (p50)")
    more = f"raise {knob.name} to {need}: {knob.words(need)}"
    fewer = (
        f"run at most {limit} request(s) at once (fewer worker threads, or an "
        f"asyncio.Semaphore({limit}) around the tasks)"
    )
    options = [fewer, more] if need > CROWD and need > CROWD_TIMES * limit else [more, fewer]
    longer = _longer_wait(knob, lib.pool_timeout, limit, need, held) if timeouts else None
    if longer:
        options.insert(1, longer)
    change = "; or ".join(options)
    lead = (
        f"{need} requests at once is more than one pool should open connections for: "
        if options[0] is fewer
        else ""
    )
    return [
        Advice(
            rule="pool_block",
            origin=origin,
            evidence="; ".join(evidence) + ".",
            change=lead + change[0].upper() + change[1:] + "." + _built_by(lib),
            waste=waits,
        )
    ]


def advise_stream_waits(origin: str, stats: PoolStats, lib: Library) -> list[Advice]:
    """HTTP/2: requests that waited for a stream inside their connection, every stream the
    server allows in use. httpcore opens no second HTTP/2 connection to an origin while the
    first is open, so no pool setting helps: fewer requests at once, or HTTP/1.1 with as many
    connections as requests wanted streams."""
    waits = stats.stream_waits
    if not waits:
        return []
    allowed, wanted = stats.stream_limit, stats.streams_peak
    knob = lib.block or lib.maxsize
    return [
        Advice(
            rule="http2_streams",
            origin=origin,
            evidence=(
                f"{waits} request(s) to {origin} waited for a free HTTP/2 stream: its server "
                f"allows {allowed} at once on a connection, up to {wanted} requests wanted one "
                "at once, and httpx opens no second HTTP/2 connection to a host while the "
                "first is open."
            ),
            change=(
                f"Run at most {allowed} request(s) to it at once (fewer worker threads, or an "
                f"asyncio.Semaphore({allowed}) around the tasks); or turn HTTP/2 off for it "
                f"(http2=False) with as many connections: {knob.words(wanted)}." + _built_by(lib)
            ),
            waste=waits,
        )
    ]


def _longer_wait(
    knob: Knob, pool_timeout: Knob | None, limit: int, need: int, held: dict[str, float]
) -> str | None:
    """Keeping the pool as it is, the pool timeout that lets every request of the busiest
    moment through: the last of ``need`` waits for ``need / limit - 1`` rounds of requests
    holding the connections (their p90 each); None without the numbers or the setting."""
    if pool_timeout is None or not held or limit < 1:
        return None
    rounds = math.ceil(need / limit) - 1
    wait = rounded_up(rounds * held["p90"] * 1.5)
    return (
        f"keep {knob.name}={limit} and let requests wait longer: {pool_timeout.words(f'{wait:g}')}"
    )


def _built_by(lib: Library) -> str:
    return f" {lib.built_by}" if lib.built_by else ""


def _s(seconds: float) -> str:
    return f"{seconds * 1000:.0f} ms" if seconds < 1 else f"{seconds:.2f} s"
