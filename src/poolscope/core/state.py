"""What poolscope keeps on one urllib3 pool (:class:`PoolState`) and on one connection object
(:class:`ConnState`): identities, where a connection is (open, idle in its pool, checked out)
and the per-pool flags the instrumentation reads on the hot path."""

from __future__ import annotations

import itertools
import weakref
from operator import methodcaller
from typing import Any

from .events import ConnectTiming, PoolEvent, PoolKey
from .stats import PoolStats

_call = methodcaller("__call__")
_connection_ids = itertools.count(1)
_pool_ids = itertools.count(1)
_manager_ids = itertools.count(1)


def next_manager_id() -> int:
    """A new PoolManager's id: one sequence for the process, whichever urllib3 (or vendored
    copy of it) the manager is of, and for httpcore's pools (an httpx client's) too."""
    return next(_manager_ids)


def next_connection_id() -> int:
    return next(_connection_ids)


class PoolState:
    """What poolscope keeps on one urllib3 pool (``pool._poolscope``).

    ``recorder`` is the :class:`poolscope.core.recorder.Recorder` it reports to (typed loosely
    here so that this module stays below the recorder's).
    """

    __slots__ = (
        "closed",
        "conns",
        "counting",
        "draining",
        "gone",
        "id",
        "key",
        "library",
        "manager_id",
        "maxsize",
        "num_pools",
        "pool_ref",
        "recorder",
        "stats",
        "waiting",
    )

    def __init__(
        self, recorder: Any, stats: PoolStats, pool: Any, maxsize: int, library: str
    ) -> None:
        self.id = next(_pool_ids)
        self.library = library  # which library built it (see poolscope.core.libraries)
        self.manager_id = 0  # the PoolManager (or httpx client) that made or adopted it; 0: none
        self.num_pools = 0  # that manager's num_pools (requests' pool_connections)
        self.recorder = recorder
        self.key: PoolKey = stats.key
        self.stats = stats
        self.closed = False  # set once pool.close() starts; a pool never reopens
        # Closed or collected: its queue is being emptied to close what is in it, which its
        # queue must not take for checkouts. Collection is learnt without calling the weakref:
        # this callback runs before urllib3's own finalizer drains the queue (CPython calls a
        # dying object's weakref callbacks newest first).
        self.draining = False
        self.pool_ref = weakref.ref(pool, self._pool_collected)
        # Whether its queue counts reuses and idle connections and times returns: from the
        # moment its recorder's counting switch turns on, then for good. The queue reads a copy
        # of it (``_poolscope_counting``); both change together, in start_counting().
        self.counting = False
        self.maxsize = maxsize
        self.waiting = 0  # checkouts waiting for a free connection of this pool right now
        # Its connection objects, for uninstrumenting: each one's state, to a weak reference
        # to it (its recorder's, see Recorder.connections), taken out when it is collected or
        # detached.
        self.conns: dict[ConnState, weakref.ref[Any]] = {}
        if maxsize > stats.maxsize:
            stats.maxsize = maxsize
        self.gone = False  # closed or collected: no longer counted in stats.live

    def connections(self) -> list[Any]:
        """Its connection objects alive."""
        alive = map(_call, list(self.conns.values()))
        return [conn for conn in alive if conn is not None]

    def built_by(self, library: str) -> None:
        """Say which library built this pool, learnt after it was made (a manager adopting
        it); for its host's only pool, the host's library too."""
        self.library = library
        if self.stats.pools == 1:
            self.stats.library = library

    def _pool_collected(self, _ref: Any) -> None:
        self.draining = True
        self._let_go()

    def closing(self) -> None:
        self.closed = self.draining = True
        self._let_go()

    def _let_go(self) -> None:
        if not self.gone:
            self.gone = True
            self.stats.live -= 1


class ConnState:
    """What poolscope keeps on one urllib3 connection object (``conn._poolscope``).

    One connection object may carry several network connections over its life: urllib3
    reconnects the same object after it was found dropped or closed.
    """

    __slots__ = (
        "checkout",
        "discarding",
        "error_type",
        "id",
        "idle_since",
        "in_pool",
        "multiplexed",
        "open",
        "opened_at",
        "opened_by",
        "pool",
        "requests",
        "stats",
        "streams",
        "taken_at",
        "tcp_time",
        "timing",
    )

    def __init__(self, pool: PoolState) -> None:
        self.id = next(_connection_ids)
        self.pool = pool
        self.stats = pool.stats  # its pool's, one attribute read closer for the queue
        self.open = False  # a socket is connected and not yet reported closed
        self.opened_at = 0.0
        self.requests = 0  # requests served by the current network connection
        self.idle_since = 0.0  # when it last went idle in its pool; 0.0 when not timed
        self.taken_at = 0.0  # when a request took it, while the report times uses; else 0.0
        self.in_pool = False  # counted in stats.idle
        # Taken from the pool open, and its reuse not yet counted: counted by the pool's
        # checkout hook when one is installed, else when it comes back or is closed.
        self.checkout = False
        self.discarding = False  # being closed because the pool was full
        self.error_type: str | None = None  # the last error seen on this connection
        self.tcp_time: float | None = None
        self.timing: ConnectTiming | None = None  # phases of the last connect, for spans
        # HTTP/2 (httpx): requests on it at once, each in a stream of its own; the id of the
        # request that opened it (the others on it are reuses).
        self.multiplexed = False
        self.streams = 0
        self.opened_by = 0

    def count_reuse(self) -> int:
        """Count the request just sent on this open connection as a reuse; returns how many
        requests it had served before. Counted by the pool's checkout hook as it happens
        (Recorder.connection_reused, which does the same inline), else here, once the
        connection comes back or is closed."""
        self.checkout = False
        served = self.requests
        self.requests = served + 1
        self.stats.reused += 1
        return served

    def forget(self) -> None:
        """Stop tracking this connection (its pool given back): not counted open or idle any
        more, and nothing said when it is collected."""
        self.pool.conns.pop(self, None)
        self.pool.recorder.connections.pop(self, None)
        stats = self.stats
        if self.open:
            stats.open -= 1
        if self.in_pool:
            stats.idle -= 1
        self.open = self.in_pool = False


def described(pool: PoolState, event: PoolEvent) -> PoolEvent:
    """``event``, with what every event says of its pool: which one, its manager, its sizes.
    (The recorder's connection_created, connection_closed and pool_evicted say the same in
    their event's constructor call: those come with every new host of a sweep.)"""
    event.pool_id = pool.id
    event.manager_id = pool.manager_id
    event.library = pool.library
    if event.num_pools is None and pool.num_pools:
        event.num_pools = pool.num_pools
    if event.pool_maxsize is None:
        event.pool_maxsize = pool.maxsize
    return event
