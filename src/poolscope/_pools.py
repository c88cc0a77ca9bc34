"""Instrumented urllib3 connection pools and their queues: checkouts, reuse, drops, waits, discards.

urllib3 keeps a pool's idle connections in ``pool.pool``, a ``queue.LifoQueue`` made from the
class attribute ``QueueCls``. poolscope's queue subclass sees every checkout and return under the
queue's own lock, so it knows exactly when a checkout had to wait and when a returned connection
found the pool full, without a lock of its own and without changing what urllib3 does.
"""

from __future__ import annotations

import queue
import time
from typing import TYPE_CHECKING, Any, ClassVar

from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ._connections import (
    InstrumentedConnectionMixin,
    InstrumentedHTTPConnection,
    InstrumentedHTTPSConnection,
    as_base_name,
    instrumented_connection_class,
)
from ._events import PoolKey
from ._recorder import ConnState, PoolState, Recorder, internal_error

_now = time.perf_counter
_monotonic = time.monotonic

_DEFAULT_PORTS = {"http": 80, "https": 443}

if TYPE_CHECKING:
    _QueueBase = queue.LifoQueue[Any]
    _PoolBase = HTTPConnectionPool
else:
    _QueueBase = queue.Queue
    _PoolBase = object


class InstrumentedQueueMixin(_QueueBase):
    """A pool's queue of idle connections that reports waits, checkouts and returns."""

    _poolscope: PoolState | None = None  # set once the pool that owns it is set up
    # Whether checkouts and returns are counted (PoolState.counting). Set on each instance
    # when its pool is set up, as an instance attribute: CPython 3.11 specializes reading one,
    # not a class attribute read through the instance.
    _poolscope_counting = False

    # get() and put() are queue.Queue's, reimplemented with the same contract (stdlib's are
    # Python too, so this costs no extra frame): under the queue's own lock we learn whether a
    # checkout had to wait and whether a returned connection found the pool full. Until the
    # pool counts (no sink acts on reuses), each adds one attribute test to stdlib's.

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self.not_empty:
            if not self._qsize():
                if not block:
                    raise queue.Empty
                self._wait_for_item(timeout)
            item = self._get()
            self.not_full.notify()
        if self._poolscope_counting and item is not None:  # None: room for a new connection
            # Plain attribute reads, not getattr() with a default: CPython specializes them,
            # so a checkout costs no method-cache lookup (see benchmarks/instructions.py).
            try:
                cs = item._poolscope
            except AttributeError:  # a connection of a class poolscope did not make
                return item
            # A pool that is closing or collected empties its queue to close what is in it:
            # close() accounts for those connections.
            if cs is not None and cs.in_pool and not cs.pool.draining:
                cs.in_pool = False
                # Open and handed out: a reuse, unless urllib3's drop check closes it now
                # ("Resetting dropped connection"); counted once that is settled.
                cs.checkout = True
                stats = cs.stats
                idle = stats.idle - 1
                stats.idle = idle
                in_use = stats.open - idle
                if in_use > stats.peak_in_use:
                    stats.peak_in_use = in_use
        return item

    def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
        # The bookkeeping comes before the connection enters the queue, so no getter can take
        # it before it counts as idle, and outside the queue's lock, so that lock (which every
        # thread sharing the pool takes) is held no longer than by stdlib's put().
        idled = None  # the connection this put counted as idle
        if self._poolscope_counting and item is not None:
            try:
                cs = item._poolscope
            except AttributeError:  # a connection of a class poolscope did not make
                cs = None
            if cs is None:
                cs = self._adopt(item)
            if cs is not None and cs.open and not cs.in_pool:
                stats = cs.stats
                if cs.checkout:
                    # A reuse the checkout hook did not count (the pool took its hook while
                    # this checkout was under way): settled now that it came back.
                    # Recorder.checkout_settled, inlined.
                    cs.checkout = False
                    cs.requests += 1
                    stats.reused += 1
                cs.in_pool = True
                cs.idle_since = _now()
                stats.idle += 1
                idled = cs
        with self.not_full:
            if self.maxsize > 0 and self._qsize() >= self.maxsize:
                self._put_when_full(item, block, timeout, idled)
            self._put(item)
            self.unfinished_tasks += 1
            self.not_empty.notify()

    def _put_when_full(
        self, item: Any, block: bool, timeout: float | None, idled: ConnState | None
    ) -> None:
        # Runs with self.not_full held; returns once there is room, as queue.Queue.put does.
        try:
            if not block:
                # urllib3 closes a connection that finds its pool full: that close is a
                # discard.
                cs = getattr(item, "_poolscope", None)
                if cs is not None:
                    cs.discarding = True
                raise queue.Full
            self._wait_for_room(timeout)
        except BaseException:
            if idled is not None:  # it never entered the queue
                idled.in_pool = False
                idled.stats.idle -= 1
            raise

    def _wait_for_room(self, timeout: float | None) -> None:
        # The blocking branch of queue.Queue.put; urllib3 never takes it (it puts with
        # block=False), but the contract is kept.
        if timeout is None:
            while self._qsize() >= self.maxsize:
                self.not_full.wait()
        elif timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        else:
            endtime = _monotonic() + timeout
            while self._qsize() >= self.maxsize:
                remaining = endtime - _monotonic()
                if remaining <= 0.0:
                    raise queue.Full
                self.not_full.wait(remaining)

    def _adopt(self, conn: Any) -> ConnState | None:
        # A connection made before its pool was instrumented, coming back: track it from now.
        ps = self._poolscope
        if ps is None:
            return None
        try:
            cs: ConnState = adopt_connection(ps, conn)
        except Exception:
            internal_error("adopt connection")
            return None
        return cs

    def _wait_for_item(self, timeout: float | None) -> None:
        # Runs with self.not_empty held, like the loop it replaces in queue.Queue.get.
        if timeout is not None and timeout < 0:
            raise ValueError("'timeout' must be a non-negative number")
        ps = self._poolscope
        if ps is not None:
            try:
                ps.recorder.wait_started(ps, timeout)
            except Exception:
                internal_error("wait")
        start = _now()
        timed_out = False
        try:
            if timeout is None:
                while not self._qsize():
                    self.not_empty.wait()
            else:
                endtime = _monotonic() + timeout
                while not self._qsize():
                    remaining = endtime - _monotonic()
                    if remaining <= 0.0:
                        timed_out = True
                        raise queue.Empty
                    self.not_empty.wait(remaining)
        finally:
            if ps is not None:
                try:
                    ps.recorder.wait_ended(ps, _now() - start, timed_out)
                except Exception:
                    internal_error("wait")


class InstrumentedLifoQueue(InstrumentedQueueMixin, queue.LifoQueue):  # type: ignore[type-arg]
    """urllib3's default pool queue, instrumented."""


_queue_classes: dict[type[Any], type[Any]] = {queue.LifoQueue: InstrumentedLifoQueue}


def instrumented_queue_class(base: type[Any]) -> type[Any]:
    if issubclass(base, InstrumentedQueueMixin):
        return base
    cls = _queue_classes.get(base)
    if cls is None:
        cls = type(f"Instrumented{base.__name__}", (InstrumentedQueueMixin, base), {})
        cls = _queue_classes.setdefault(base, cls)
    return cls


class InstrumentedPoolMixin(_PoolBase):
    """Reports what one urllib3 connection pool does (see InstrumentedHTTPConnectionPool)."""

    _poolscope_recorder: ClassVar[Recorder | None] = None
    _poolscope_base: ClassVar[type[Any]] = HTTPConnectionPool
    _poolscope: PoolState

    def __new__(
        cls,
        *args: Any,
        mode: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        **kwargs: Any,
    ) -> Any:
        # Made with the checkout hook from the start when its recorder counts: a pool that
        # takes it later (by __class__ assignment) loses CPython's fast attribute reads.
        recorder = _recorder_for(cls, mode, meter_provider, tracer_provider)
        if recorder.should_count():
            cls = hooked_class(cls)
        return super().__new__(cls)

    def __init__(
        self,
        *args: Any,
        mode: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        **kwargs: Any,
    ) -> None:
        recorder = _recorder_for(type(self), mode, meter_provider, tracer_provider)
        super().__init__(*args, **kwargs)
        sync_counting(self, attach_pool(self, recorder))

    def __str__(self) -> str:
        # Exception messages (MaxRetryError, EmptyPoolError) embed str(pool): keep urllib3's.
        return as_base_name(super().__str__(), self)

    def _new_conn(self) -> Any:
        conn = super()._new_conn()
        ps = getattr(self, "_poolscope", None)
        if ps is not None:
            try:
                if not isinstance(conn, InstrumentedConnectionMixin):
                    conn.__class__ = instrumented_connection_class(type(conn))
                conn._poolscope = ps.recorder.new_connection(ps, conn)  # type: ignore[attr-defined]
            except Exception:
                internal_error("new connection")
            sync_counting(self, ps)
        return conn

    def close(self) -> None:
        ps = getattr(self, "_poolscope", None)
        if ps is not None:
            ps.closing()
        super().close()


class CheckoutHookMixin(InstrumentedPoolMixin):
    """Reports each reuse as it happens, for sinks that act on one (spans, logs, idle times).

    A pool has this class (a subclass of its own) once it counts (``PoolState.counting``):
    with no OpenTelemetry SDK behind poolscope, nothing would act on a reuse, and the
    reused-connection path then runs no poolscope code beyond one test in the queue's.
    """

    def _get_conn(self, timeout: float | None = None) -> Any:
        conn = super()._get_conn(timeout)
        cs = getattr(conn, "_poolscope", None)
        if cs is not None and cs.checkout:  # open, and not found dropped
            try:
                cs.pool.recorder.connection_reused(cs)
            except Exception:
                internal_error("reuse")
        return conn


def sync_counting(pool: Any, ps: PoolState) -> None:
    """Make ``pool`` count if its recorder does or should now (see Recorder.should_count).

    Asked when a pool is set up and whenever it makes a connection object (both rare), so an
    SDK configured after instrumenting is picked up by the next connection any pool makes, or
    by the first collection of a metrics reader, whichever comes first."""
    if ps.counting:
        return
    try:
        if ps.recorder.should_count():
            start_counting(pool)
    except Exception:
        internal_error("start counting")


def start_counting(pool: Any) -> None:
    """From now on, ``pool`` counts reuses and idle connections and times returns, and has
    its checkout hook.

    The open connections already idle in its queue are counted idle, with no idle time (how
    long they have sat is not known). A return that races with this (it checked the flag just
    before) enters the queue uncounted and is counted when it next comes back."""
    ps: PoolState | None = getattr(pool, "_poolscope", None)
    if ps is None or ps.counting:
        return
    if not isinstance(pool, CheckoutHookMixin):
        pool.__class__ = hooked_class(type(pool))
    q = pool.pool
    if q is None:  # closed: nothing left to count
        ps.counting = True
        return
    with q.mutex:
        if ps.counting:
            return
        for conn in q.queue:
            if conn is None:
                continue
            cs = getattr(conn, "_poolscope", None)
            if cs is None:  # made before the pool was adopted, returned since
                cs = adopt_connection(ps, conn)
            if cs.open and not cs.in_pool:
                cs.in_pool = True
                ps.stats.idle += 1
        ps.counting = True
        q._poolscope_counting = True


def hooked_class(cls: type[Any]) -> type[Any]:
    """``cls`` with the checkout hook (made once per class)."""
    if issubclass(cls, CheckoutHookMixin):
        return cls
    hooked: type[Any] | None = cls.__dict__.get("_poolscope_hooked")
    if hooked is None:  # a race makes two equivalent classes, harmlessly
        hooked = type(cls.__name__, (CheckoutHookMixin, cls), {"__module__": cls.__module__})
        cls._poolscope_hooked = hooked
    return hooked


def _recorder_for(
    cls: type[Any], mode: str | None, meter_provider: Any, tracer_provider: Any
) -> Recorder:
    recorder: Recorder | None = cls._poolscope_recorder
    if recorder is None or mode or meter_provider is not None or tracer_provider is not None:
        from ._config import get_recorder

        recorder = get_recorder(mode or "otel", meter_provider, tracer_provider)
    return recorder


class InstrumentedHTTPConnectionPool(InstrumentedPoolMixin, HTTPConnectionPool):
    """A drop-in ``urllib3.HTTPConnectionPool`` that reports what its connections do.

    Constructed with exactly the parent's arguments it reports to the global OpenTelemetry
    providers; ``mode="logging"``, ``meter_provider=`` or ``tracer_provider=`` choose others::

        pool = poolscope.InstrumentedHTTPConnectionPool("127.0.0.1", 8080, maxsize=4)
        pool.request("GET", "/")
    """

    ConnectionCls = InstrumentedHTTPConnection
    QueueCls = InstrumentedLifoQueue
    _poolscope_base = HTTPConnectionPool


class InstrumentedHTTPSConnectionPool(InstrumentedPoolMixin, HTTPSConnectionPool):
    """A drop-in ``urllib3.HTTPSConnectionPool`` that also reports TLS handshake time."""

    ConnectionCls = InstrumentedHTTPSConnection
    QueueCls = InstrumentedLifoQueue
    _poolscope_base = HTTPSConnectionPool


_PUBLIC_POOLS: dict[type[Any], type[Any]] = {
    HTTPConnectionPool: InstrumentedHTTPConnectionPool,
    HTTPSConnectionPool: InstrumentedHTTPSConnectionPool,
}


def instrumented_pool_class(base: type[Any], recorder: Recorder) -> type[Any]:
    """The subclass of ``base`` whose pools report to ``recorder`` (made once, then cached).

    A ``PoolManager`` builds pools as ``pool_cls(host, port, **kw)``, so the recorder travels
    as a class attribute rather than an argument.
    """
    base = (
        getattr(base, "_poolscope_base", base) if issubclass(base, InstrumentedPoolMixin) else base
    )
    cls = recorder.pool_classes.get(base)
    if cls is None:
        public = _PUBLIC_POOLS.get(base)
        namespace: dict[str, Any] = {
            "__module__": __name__,
            "_poolscope_recorder": recorder,
            "_poolscope_base": base,
        }
        if public is None:
            namespace["ConnectionCls"] = instrumented_connection_class(base.ConnectionCls)
            namespace["QueueCls"] = instrumented_queue_class(base.QueueCls)
            bases: tuple[type[Any], ...] = (InstrumentedPoolMixin, base)
            name = f"Instrumented{base.__name__}"
        else:
            bases = (public,)
            name = public.__name__
        cls = recorder.pool_classes.setdefault(base, type(name, bases, namespace))
    return cls


def pool_key(pool: Any) -> PoolKey:
    scheme = pool.scheme
    host = (pool.host or "").strip("[]")
    proxy = getattr(pool, "proxy", None)
    via = None
    if proxy is not None and proxy.host:  # a urllib3 Url: keep scheme, host, port; no userinfo
        proxy_host = f"[{proxy.host.strip('[]')}]" if ":" in proxy.host else proxy.host
        proxy_port = proxy.port or _DEFAULT_PORTS.get(proxy.scheme or "http", 0)
        via = f"{proxy.scheme or 'http'}://{proxy_host}:{proxy_port}"
    return PoolKey(scheme, host, pool.port or _DEFAULT_PORTS.get(scheme, 0), via)


def attach_pool(pool: Any, recorder: Recorder) -> PoolState:
    """Give a pool its state; its queue (already instrumented) reports to it from now on.
    It does not count yet: the caller asks sync_counting() next, outside the queue's lock."""
    q = pool.pool
    ps = PoolState(recorder, pool, pool_key(pool), q.maxsize if q is not None else 0)
    pool._poolscope = ps
    if q is not None:
        q._poolscope = ps
        q._poolscope_counting = False
    recorder.add_pool(pool)
    return ps


def adopt_connection(ps: PoolState, conn: Any) -> Any:
    """Instrument a connection made before its pool was instrumented."""
    if not isinstance(conn, InstrumentedConnectionMixin):
        conn.__class__ = instrumented_connection_class(type(conn))
    cs = ps.recorder.new_connection(ps, conn, connected=getattr(conn, "sock", None) is not None)
    conn._poolscope = cs
    return cs


def adopt_pool(pool: Any, recorder: Recorder) -> None:
    """Instrument a pool that already exists, with its idle connections, in place."""
    if isinstance(pool, InstrumentedPoolMixin):
        return
    pool.__class__ = instrumented_pool_class(type(pool), recorder)
    q = pool.pool
    if q is None:  # closed: nothing left to observe, but keep the class consistent
        attach_pool(pool, recorder)
        return
    with q.mutex:
        q.__class__ = instrumented_queue_class(type(q))
        ps = attach_pool(pool, recorder)
        for conn in q.queue:
            if conn is not None:
                adopt_connection(ps, conn)
    sync_counting(pool, ps)  # which counts the open ones idle


def detach_pool(pool: Any) -> None:
    """Undo :func:`adopt_pool` or an instrumented construction: the pool's own classes return."""
    ps: PoolState | None = getattr(pool, "_poolscope", None)
    if ps is None:
        return
    del pool._poolscope
    ps.recorder.remove_pool(pool)
    q = pool.pool
    if q is not None:
        with q.mutex:
            for name in ("_poolscope", "_poolscope_counting"):
                if name in vars(q):
                    delattr(q, name)
            base_queue = next(
                c for c in type(q).__mro__ if not issubclass(c, InstrumentedQueueMixin)
            )
            q.__class__ = base_queue
    for conn in list(ps.conns):
        detach_connection(conn)
    if isinstance(pool, InstrumentedPoolMixin):
        pool.__class__ = type(pool)._poolscope_base


def detach_connection(conn: Any) -> None:
    cs = getattr(conn, "_poolscope", None)
    if cs is not None:
        del conn._poolscope
        if cs.finalizer is not None:
            cs.finalizer.detach()
        stats = cs.pool.stats
        if cs.open:
            stats.open -= 1
        if cs.in_pool:
            stats.idle -= 1
        cs.open = cs.in_pool = False
    if isinstance(conn, InstrumentedConnectionMixin):
        conn.__class__ = type(conn)._poolscope_base
