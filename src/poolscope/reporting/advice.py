"""Advice rules: from what the pools did in this run to the exact change that fixes it.

Each rule reads the :class:`Evidence` of one pool key (the recorder's counts, the report's
samples and pool objects) and returns :class:`Advice` with the evidence (numbers from this run)
and the change (the argument and value to use). A healthy run gets none.
"""

from __future__ import annotations

from typing import NamedTuple

from ..core.events import CloseReason
from ..core.knobs import Knob, Library, OneClient
from ..core.libraries import library
from ..core.stats import PoolStats, needed
from .records import PoolRecord, Samples, by_manager
from .summaries import Advice
from .timeouts import advise_timeouts
from .waits import advise_stream_waits, advise_waits

_POOL_FULL = CloseReason.POOL_FULL.value

# How many throwaway sessions to one host before "use one Session" is worth saying.
THROWAWAY_SESSIONS = 5


class Evidence(NamedTuple):
    """What the report knows of one pool key (scheme, host, port, proxy)."""

    stats: PoolStats  # its counts, across every pool object that served it
    samples: Samples
    records: list[PoolRecord]  # the pool objects that served it
    active_at_end: int  # connections still checked out when the program ended

    @property
    def library(self) -> Library:
        """The library that built its pools, whose words the advice speaks."""
        return library(self.records[0].library if self.records else self.stats.library)


def advise(evidence: list[Evidence]) -> list[Advice]:
    advice: list[Advice] = []
    for ev in evidence:
        origin = ev.stats.key.origin
        advice += _pool_full(origin, ev.stats, ev.records, ev.library)
        advice += _throwaway_sessions(origin, ev.records)
        advice += _dropped(origin, ev.samples, ev.library)
        advice += advise_waits(origin, ev.stats, ev.samples, ev.library)
        advice += advise_stream_waits(origin, ev.stats, ev.library)
        advice += _server_closes(origin, ev.stats)
        advice += _unread(origin, ev.stats.unreturned + ev.active_at_end)
        advice += advise_timeouts(origin, ev.stats, ev.samples.connect_times, ev.library)
    advice += _evictions([r for ev in evidence for r in ev.records])
    return advice


def _raise(knob: Knob | None, lib: Library, n: int) -> str:
    """The change, in the words of the library that built the pool."""
    if knob is None:
        return f"{lib.missing[:1].upper()}{lib.missing[1:]}."
    change = f"Raise {knob.name} to {n}: {knob.words(n)}."
    return f"{change} {lib.built_by}" if lib.built_by else change


def _pool_full(origin: str, stats: PoolStats, recs: list[PoolRecord], lib: Library) -> list[Advice]:
    discarded = stats.discarded
    if not discarded:
        return []
    # The size of the pools that discarded (a host's pools can differ: two clients, say, one
    # too small), else the largest its pools had.
    full = [r.maxsize for r in recs if any(lane.reason == _POOL_FULL for lane in r.lanes.values())]
    maxsize = max(full) if full else stats.maxsize
    need = needed(stats.peak_in_use, maxsize)
    return [
        Advice(
            rule="pool_maxsize",
            origin=origin,
            evidence=(
                f"{discarded} connection(s) to {origin} were opened and then discarded because "
                f"the pool was full ({lib.maxsize.name}={maxsize}); up to {need} were in use "
                "at once."
            ),
            change=_raise(lib.maxsize, lib, need),
            waste=discarded,
        )
    ]


def _throwaway_sessions(origin: str, recs: list[PoolRecord]) -> list[Advice]:
    """Many clients (requests Sessions, urllib3 PoolManagers, httpx clients) each made for a
    call or two to one host: a new connection, and on https a new TLS handshake, every time.
    Told in the words of the library that made them, those of each kind counted apart (a host
    can be called through requests and through httpx in one program)."""
    kinds: dict[OneClient, list[PoolRecord]] = {}
    for r in recs:
        if r.manager_id and r.short_lived():
            kinds.setdefault(library(r.library).one_client, []).append(r)
    advice = []
    for one, throwaway in kinds.items():
        managers = {r.manager_id for r in throwaway}
        if len(managers) < THROWAWAY_SESSIONS:
            continue
        connections = sum(len(r.lanes) for r in throwaway)
        handshakes = " and as many TLS handshakes" if throwaway[0].key.scheme == "https" else ""
        advice.append(
            Advice(
                rule="one_session",
                origin=origin,
                evidence=(
                    f"{len(managers)} {one.clients} each opened their own connection to "
                    f"{origin} and closed it after one or two requests: {connections} "
                    f"connection(s){handshakes} where one could have served them all "
                    f"({one.per_call})."
                ),
                change=one.change.format(origin=origin),
                waste=connections - 1,
            )
        )
    return advice


def _dropped(origin: str, samples: Samples, lib: Library) -> list[Advice]:
    if not samples.drops_seen or not samples.drop_idle_times:
        return []
    dropped = samples.drops_seen  # those whose idle time is known
    shortest = min(samples.drop_idle_times)
    # The server's idle limit lies between the longest idle a reused connection survived and
    # the shortest idle after which one was found closed.
    survived = [idle for idle in samples.idle_times if idle < shortest]
    if survived:
        longest = max(survived)
        bound = f"after between {longest:.2f} s and {shortest:.2f} s of idling"
    else:
        longest = shortest / 2  # not known: half the shortest idle it did not survive
        bound = f"after at most {shortest:.2f} s of idling"
    if lib.keepalive is not None:
        # Closed by the client past an idle the server let connections survive.
        expiry = f"{_seconds_down(longest):g}"
        change = (
            f"Close connections idle longer than {expiry} s before the server does: "
            f"{lib.keepalive.words(expiry)}."
        )
    else:
        change = (
            "Retry idempotent requests on connection errors, e.g. "
            "HTTPAdapter(max_retries=Retry(total=3, connect=3, read=2)), or keep connections "
            f"busier than every {longest:.2f} s (fewer sessions or a smaller pool)."
        )
    return [
        Advice(
            rule="keepalive",
            origin=origin,
            evidence=(
                f"{dropped} pooled connection(s) to {origin} were found closed by the server: it "
                f"closes idle connections {bound}, and a request racing such a close fails with "
                "a reset."
            ),
            change=change,
            waste=dropped,
        )
    ]


def _seconds_down(seconds: float) -> float:
    """``seconds`` rounded down to a figure a person writes: two significant digits below 10."""
    if seconds >= 10:
        return float(int(seconds))
    scale = 100 if seconds < 1 else 10
    return max(int(seconds * scale) / scale, 0.01)


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
    """An eviction costs nothing until its host is needed again: then the manager builds a new
    pool, and opens new connections, for a host it had connections to."""
    advice = []
    for recs in by_manager(records).values():
        evicted: set[object] = set()
        rebuilt = []
        for rec in sorted(recs, key=lambda r: r.pool_id):  # in the order they were made
            if rec.key in evicted:
                rebuilt.append(rec)
            if rec.evicted:
                evicted.add(rec.key)
        reopened = sum(len(rec.lanes) for rec in rebuilt)
        if not reopened:
            continue
        hosts = sorted({r.key.origin for r in recs})
        pools = max(r.num_pools for r in recs)
        lib = library(recs[0].library)
        knob = lib.num_pools.name if lib.num_pools else "num_pools"
        advice.append(
            Advice(
                rule="pool_connections",
                origin=", ".join(hosts),
                evidence=(
                    f"{len(hosts)} hosts took turns in a PoolManager that keeps {pools} pool(s) "
                    f"({knob}={pools}): {len(rebuilt)} pool(s) were made again for hosts "
                    f"evicted before, which opened {reopened} connection(s) again."
                ),
                change=_raise(lib.num_pools, lib, len(hosts)),
                waste=reopened,
            )
        )
    return advice


# A host whose server closes (nearly) every connection after one response: at least this many
# connections, this share of them closed by the server, and next to no reuse.
SERVER_CLOSES = (3, 0.9)


def _server_closes(origin: str, stats: PoolStats) -> list[Advice]:
    least, share = SERVER_CLOSES
    requests = stats.created + stats.reused
    closed = stats.server_closed
    if stats.created < least or closed < share * stats.created or stats.reused * 10 > requests:
        return []
    return [
        Advice(
            rule="server_keepalive",
            origin=origin,
            evidence=(
                f"The server at {origin} closed {closed} of the {stats.created} connection(s) "
                f"opened for {requests} request(s) after one response (Connection: close, or "
                f"HTTP/1.0): {stats.reused / requests:.0%} of requests reused a connection."
            ),
            change=(
                "No client setting can reuse connections the server closes: turn keep-alive on "
                "in the server, or in the proxy or load balancer in front of it (for nginx, "
                "keepalive_timeout, and keepalive for its upstreams)."
            ),
            waste=closed,
        )
    ]
