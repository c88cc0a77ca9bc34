"""Counters for one (scheme, host, port) within one recorder: the one place each count is kept.

Pools, the queue and the recorder update them; the metrics sink and the report read them.
Counters are plain ``int`` attributes updated with ``+=``: under CPython's GIL an attribute
increment of an ``int`` runs without a thread switch in the middle, which is what keeps the
reused-connection path free of locks of our own.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable
from itertools import chain, compress, repeat
from operator import attrgetter
from typing import Any

from .events import PoolKey

# At most this many idle-time samples wait per pool key for the next metrics collection; beyond it
# the oldest are dropped (the reused counter still counts every reuse).
IDLE_SAMPLES_PER_KEY = 4096


class PoolStats:
    """Counters for one (scheme, host, port) within one recorder, across all its pools."""

    __slots__ = (
        "closed",
        "connect_timeouts",
        "created",
        "discarded",
        "dropped",
        "errors",
        "evictions",
        "failed",
        "idle",
        "idle_times",
        "key",
        "library",
        "live",
        "max_wait",
        "maxsize",
        "no_connect_timeout",
        "no_read_timeout",
        "open",
        "peak_in_use",
        "peak_since",
        "peak_waiting",
        "pools",
        "read_timeout",
        "read_timeouts",
        "retries",
        "retry_setting",
        "reused",
        "server_closed",
        "slowest",
        "stream_limit",
        "stream_waits",
        "streams_peak",
        "timed",
        "unretried",
        "unreturned",
        "use_pending",
        "use_times",
        "wait_timeouts",
        "waiting",
        "waits",
    )

    def __init__(
        self,
        key: PoolKey,
        keep_idle_times: bool = False,
        keep_use_times: bool = False,
        drain_use_times: bool = False,
    ) -> None:
        self.key = key
        self.created = 0  # handshakes completed (TCP, plus TLS for https)
        self.reused = 0  # requests sent on an already-open connection, while counting
        self.dropped = 0  # open connections found closed by the server at checkout
        self.discarded = 0  # connections closed because they came back to a full pool
        self.failed: dict[str, int] = {}  # failed connection attempts by error.type
        self.retries: dict[str, int] = {}  # requests urllib3 retried, by the error.type before
        self.closed = 0  # open connections that were closed, for any reason
        self.server_closed = 0  # closed after a response said Connection: close (or HTTP/1.0)
        # Closed by the client or collected while a request still held them (while counting):
        # their responses were not read to the end or not closed, so never went back to a pool.
        self.unreturned = 0
        self.evictions = 0  # pools pushed out of a PoolManager's cache
        self.waits = 0  # checkouts that had to wait for a free connection
        self.wait_timeouts = 0  # waits that ended in EmptyPoolError
        self.waiting = 0  # checkouts waiting right now
        self.peak_waiting = 0  # most checkouts waiting at once for one pool object
        self.max_wait = 0.0  # the longest wait, in seconds
        # HTTP/2, where one connection carries several requests at once (streams): the most
        # requests wanting a stream of one connection at once, the most streams its server
        # allowed at once, and requests that found every stream of their connection in use
        # and waited inside it (httpcore opens no second HTTP/2 connection to an origin).
        self.streams_peak = 0
        self.stream_limit = 0
        self.stream_waits = 0
        self.open = 0  # connections open right now
        self.idle = 0  # open connections sitting in a pool right now, while counting
        self.peak_in_use = 0  # most open connections checked out at once, while counting
        # The same since the last metrics collection, which starts it again from those in use
        # then: the high-water mark a scrape exports, so no peak between two is missed. Never
        # above peak_in_use, so the checkout path tests it alone (one test, as before).
        self.peak_since = 0
        self.maxsize = 0  # the largest pool_maxsize seen for this key
        self.pools = 0  # pool objects made for this key (one per session or manager)
        self.live = 0  # of them, those neither closed nor collected (none: it may be folded)
        # Timeouts and errors, while counting. A request's read timeout is the socket's when
        # its connection comes back; a connection's connect timeout, the socket's as it connects.
        self.no_read_timeout = 0  # requests whose connection came back with no read timeout
        self.no_connect_timeout = 0  # connections opened with no connect timeout
        self.read_timeouts = 0  # read timeouts that fired (retried or not)
        self.connect_timeouts = 0  # connect timeouts that fired (retried or not)
        self.read_timeout = 0.0  # the largest read timeout in force when one fired
        # Errors that reached the program (urllib3 did not retry, or ran out of retries), by
        # error.type; those of them a retry would have caught had one been allowed, and the
        # Retry in force then.
        self.errors: dict[str, int] = {}
        self.unretried: dict[str, int] = {}  # errors a retry would have caught, none allowed
        self.retry_setting = ""
        self.library = ""  # which library built the key's first pool (poolscope.core.libraries)
        self.slowest = 0.0  # the longest a request held a connection, while timed
        # How long requests held a connection (checkout to return: send, wait for the response,
        # read it), the most recent ones, when the report wants them.
        self.use_times: deque[float] | None = (
            deque(maxlen=IDLE_SAMPLES_PER_KEY) if keep_use_times else None
        )
        # The same not yet collected, when a metrics sink wants them (it drains them).
        self.timed = keep_use_times or drain_use_times  # either is kept: requests are timed
        self.use_pending: deque[float] | None = (
            deque(maxlen=IDLE_SAMPLES_PER_KEY) if drain_use_times else None
        )
        # Idle times of reuses not yet collected, when a metrics sink wants them.
        self.idle_times: deque[float] | None = (
            deque(maxlen=IDLE_SAMPLES_PER_KEY) if keep_idle_times else None
        )

    @property
    def in_use(self) -> int:
        return self.open - self.idle


def needed(peak_in_use: int, maxsize: int) -> int:
    """How many connections were wanted at once by a pool that discarded one: the peak in use
    and, at least, one more than ``maxsize`` (the discarded one was open beside ``maxsize``;
    the peak is not known when counting started late)."""
    return max(peak_in_use, maxsize + 1)


# PoolStats' fields, by how they combine: counts add up across recorders and processes, and
# since a moment (a fork, the report being asked for) are what came after; gauges (right now)
# add up across recorders and processes; maxima are the largest.
SUMMED = (
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
    "stream_waits",
    "pools",
    "no_read_timeout",
    "no_connect_timeout",
    "read_timeouts",
    "connect_timeouts",
)
GAUGES = ("waiting", "open", "idle")
HIGHEST = (
    "peak_in_use",
    "peak_waiting",
    "max_wait",
    "maxsize",
    "read_timeout",
    "slowest",
    "streams_peak",
    "stream_limit",
)
BY_ERROR = ("failed", "retries", "errors", "unretried")
# The Retry in force, as urllib3 writes it, and the library that built the pools: the last
# one seen of any part.
LAST = ("retry_setting", "library")


def count_use(stats: PoolStats, used: float) -> None:
    """A request held its connection ``used`` seconds (checkout to return), for the sinks that
    time uses (see PoolStats.timed)."""
    if stats.use_times is not None:
        stats.use_times.append(used)
    if stats.use_pending is not None:
        stats.use_pending.append(used)
    if used > stats.slowest:
        stats.slowest = used


def counted_work(stats: PoolStats) -> bool:
    """Whether ``stats`` counted any work: a connection made or reused, a failure, a wait, an
    eviction, an error or a retry (a pool made and never used counted none)."""
    return bool(
        stats.created
        or stats.reused
        or stats.failed
        or stats.waits
        or stats.evictions
        or stats.errors
        or stats.retries
    )


def combined(key: PoolKey, parts: list[PoolStats]) -> PoolStats:
    """One key's counts across recorders or processes, as a snapshot that stays still."""
    total = PoolStats(key)
    add_into(total, parts)
    return total


_ADDED = (*SUMMED, *GAUGES)
_added = attrgetter(*_ADDED)
_highest = attrgetter(*HIGHEST)
_by_error = attrgetter(*BY_ERROR)
_LAST_GETTERS = tuple(map(attrgetter, LAST))
_use_times = attrgetter("use_times")


def add_into(total: PoolStats, parts: Iterable[PoolStats]) -> None:
    """Add the counts of ``parts`` to ``total``'s (use times too: up to its deque's maxlen).
    Field by field in C (attrgetter, map, zip): folding runs it on hundreds of hosts at once."""
    parts = list(parts)
    if not parts:
        return
    # Each field's values across total and parts: summed, or the largest (the first of equals).
    added = zip(_added(total), *map(_added, parts), strict=True)
    for name, value in zip(_ADDED, map(sum, added), strict=True):
        setattr(total, name, value)
    highest = zip(_highest(total), *map(_highest, parts), strict=True)
    for name, value in zip(HIGHEST, map(max, highest), strict=True):
        setattr(total, name, value)
    for part in compress(parts, map(any, map(_by_error, parts))):
        for name in BY_ERROR:
            counts: dict[str, int] = getattr(part, name)
            into: dict[str, int] = getattr(total, name)
            for etype, count in list(counts.items()):
                into[etype] = into.get(etype, 0) + count
    for name, last in zip(LAST, map(_last_set, _LAST_GETTERS, repeat(parts)), strict=True):
        if last:  # the last part's that has one
            setattr(total, name, last[0])
    timed = list(filter(None, map(_use_times, parts)))
    if timed:
        if total.use_times is None:
            total.use_times = deque()
        total.use_times.extend(chain.from_iterable(timed))


def _last_set(get: attrgetter[Any], parts: list[PoolStats]) -> deque[Any]:
    return deque(filter(None, map(get, parts)), maxlen=1)


def minus(now: PoolStats, before: PoolStats | None) -> PoolStats:
    """The counts ``now`` has beyond ``before`` (what a recorder counted since a moment: a
    fork, the report being asked for). Gauges and maxima are ``now``'s."""
    if before is None:
        return now
    own = PoolStats(now.key)
    for name in SUMMED:
        setattr(own, name, getattr(now, name) - getattr(before, name))
    for name in (*GAUGES, *HIGHEST, *LAST):
        setattr(own, name, getattr(now, name))
    own.use_times = now.use_times
    for name in BY_ERROR:
        old: dict[str, int] = getattr(before, name)
        diff = {e: n - old.get(e, 0) for e, n in list(getattr(now, name).items())}
        setattr(own, name, {e: n for e, n in diff.items() if n})
    return own
