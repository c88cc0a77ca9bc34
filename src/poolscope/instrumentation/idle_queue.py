"""The pool's queue of idle connections, instrumented: checkouts, returns, waits, full pools.

urllib3 keeps a pool's idle connections in ``pool.pool``, a ``queue.LifoQueue`` made from the
class attribute ``QueueCls``. poolscope's queue subclass sees every checkout and return under the
queue's own lock, so it knows exactly when a checkout had to wait and when a returned connection
found the pool full, without a lock of its own and without changing what urllib3 does. This is
the hot path of a reused request, and it costs less than stdlib's: get() and put() take the
queue's mutex directly (a C call) rather than through a condition (two Python calls), and wake a
condition only when a thread waits on it (stdlib's notify() makes two Python calls to find
none). Until its pool counts, each adds one attribute test to that. From Python 3.13 the queue
keeps stdlib's shutdown contract too (shutdown(), ``queue.ShutDown``); before, it has none, as
stdlib's queue has none. Both shortcuts rest on how stdlib builds a queue
(:mod:`.queue_shape`); a queue built otherwise takes its conditions and wakes them as stdlib's
does.
"""

from __future__ import annotations

import queue
import sys
import time
from typing import TYPE_CHECKING, Any, ClassVar

from ..core.errors import internal_error
from ..core.state import ConnState, PoolState
from ..core.stats import count_use
from .connections import adopt_connection
from .queue_shape import stdlib_built, take_shape

_now = time.perf_counter
_monotonic = time.monotonic
_EMPTY_POOL = "urllib3.exceptions.EmptyPoolError"  # what urllib3 raises for a wait too long

if TYPE_CHECKING:
    _QueueBase = queue.LifoQueue[Any]
else:
    _QueueBase = queue.Queue


class InstrumentedQueueMixin(_QueueBase):
    """A pool's queue of idle connections that reports waits, checkouts and returns."""

    # The state of the pool that owns it, once that pool is set up; and whether checkouts and
    # returns are counted (a copy of PoolState.counting). Both are instance attributes with no
    # class default, set before get() or put() can run (by __init__, or by adopt_pool before
    # it gives an existing queue this class): CPython specializes reading an instance
    # attribute, but from 3.12 not one that a class attribute of the same name shadows.
    _poolscope: PoolState | None
    _poolscope_counting: bool
    # What get() and put() hold, and the waiting threads they ask about before they wake one
    # (see queue_shape.take_shape): instance attributes too, set with the two above.
    _poolscope_get_lock: Any
    _poolscope_put_lock: Any
    _poolscope_getters: Any
    _poolscope_putters: Any
    # Whether every queue of this class is built as queue.Queue.__init__ builds one, known
    # from its class (see instrumented_queue_class); else each is looked at as it is made.
    _poolscope_stdlib_built: ClassVar[bool] = False

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        self._poolscope = None
        self._poolscope_counting = False
        super().__init__(*args, **kwargs)
        take_shape(self, self._poolscope_stdlib_built)

    # get() and put() are queue.Queue's, reimplemented with the same contract (stdlib's are
    # Python too, so this costs no extra frame): under the queue's own lock we learn whether a
    # checkout had to wait and whether a returned connection found the pool full. Until the
    # pool counts (no sink acts on reuses), each adds one attribute test to stdlib's, and
    # saves the Python calls of its condition (see the module's docstring).

    def get(self, block: bool = True, timeout: float | None = None) -> Any:
        with self._poolscope_get_lock:  # not_empty's lock (its mutex, as stdlib builds it)
            if not self._qsize():
                _refuse_get(self)  # shut down (and empty): ShutDown, from Python 3.13
                if not block:
                    raise queue.Empty
                _wait_for_item(self, timeout)
            elif block and timeout is not None and timeout < 0:
                raise ValueError("'timeout' must be a non-negative number")  # as stdlib's
            item = self._get()
            if self._poolscope_putters:  # not_full's waiting threads
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
                if in_use > stats.peak_since:  # never above peak_in_use: one test, usually
                    stats.peak_since = in_use
                    if in_use > stats.peak_in_use:
                        stats.peak_in_use = in_use
        return item

    # put() counts a connection idle before it enters the queue, so no getter can take it
    # before it counts as idle, and outside the queue's lock, so that lock (which every thread
    # sharing the pool takes) is held no longer than by stdlib's put().
    #
    # From Python 3.13 queue.Queue has shutdown() (inherited as it is), and its get() and put()
    # raise queue.ShutDown: put() once the queue is shut down, get() once it is shut down and
    # empty (an immediate shutdown empties it). What differs is chosen once, at import, for
    # the interpreter running: put() here, _refuse_get() and _refuse_put() below the class.
    # From 3.13, put() tests is_shutdown under the lock as stdlib's does (one attribute test;
    # the two puts are otherwise the same, which tests/test_queue_contract.py checks). get()
    # tests it only once it finds the queue empty: stdlib's raises only then too, so a
    # checkout costs what it did.
    if sys.version_info >= (3, 13):

        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            idled = None  # the connection this put counted as idle
            if self._poolscope_counting and item is not None:
                try:
                    cs = item._poolscope
                except AttributeError:  # a connection of a class poolscope did not make
                    cs = None
                if cs is None:
                    cs = _adopt(self, item)
                if cs is not None and cs.open and not cs.in_pool:
                    if cs.checkout:
                        # A reuse the checkout hook did not count (the pool took its hook
                        # while this checkout was under way): counted now that it came back.
                        cs.count_reuse()
                    cs.in_pool = True
                    now = cs.idle_since = _now()
                    stats = cs.stats
                    stats.idle += 1
                    idled = cs
                    # The socket's timeout is the read timeout of the request just done
                    # (a socket that cannot say, as pyOpenSSL's wrapper, counts neither way).
                    try:
                        if item.sock.gettimeout() is None:
                            stats.no_read_timeout += 1
                    except Exception:
                        pass
                    if cs.taken_at:  # timed at checkout (the report or metrics want use times)
                        count_use(stats, now - cs.taken_at)
                        cs.taken_at = 0.0
            with self._poolscope_put_lock:  # not_full's lock
                if self.is_shutdown or (self.maxsize > 0 and self._qsize() >= self.maxsize):
                    _put_when_full(self, item, block, timeout, idled)  # or ShutDown
                elif block and timeout is not None and timeout < 0 and self.maxsize > 0:
                    _put_when_full(self, item, block, timeout, idled)  # ValueError, as stdlib's
                self._put(item)
                self.unfinished_tasks += 1
                if self._poolscope_getters:  # not_empty's waiting threads
                    self.not_empty.notify()

    else:  # before Python 3.13, queues have no shutdown

        def put(self, item: Any, block: bool = True, timeout: float | None = None) -> None:
            idled = None  # the connection this put counted as idle
            if self._poolscope_counting and item is not None:
                try:
                    cs = item._poolscope
                except AttributeError:  # a connection of a class poolscope did not make
                    cs = None
                if cs is None:
                    cs = _adopt(self, item)
                if cs is not None and cs.open and not cs.in_pool:
                    if cs.checkout:
                        # A reuse the checkout hook did not count (the pool took its hook
                        # while this checkout was under way): counted now that it came back.
                        cs.count_reuse()
                    cs.in_pool = True
                    now = cs.idle_since = _now()
                    stats = cs.stats
                    stats.idle += 1
                    idled = cs
                    # The socket's timeout is the read timeout of the request just done
                    # (a socket that cannot say, as pyOpenSSL's wrapper, counts neither way).
                    try:
                        if item.sock.gettimeout() is None:
                            stats.no_read_timeout += 1
                    except Exception:
                        pass
                    if cs.taken_at:  # timed at checkout (the report or metrics want use times)
                        count_use(stats, now - cs.taken_at)
                        cs.taken_at = 0.0
            with self._poolscope_put_lock:  # not_full's lock
                if self.maxsize > 0 and self._qsize() >= self.maxsize:
                    _put_when_full(self, item, block, timeout, idled)
                elif block and timeout is not None and timeout < 0 and self.maxsize > 0:
                    _put_when_full(self, item, block, timeout, idled)  # ValueError, as stdlib's
                self._put(item)
                self.unfinished_tasks += 1
                if self._poolscope_getters:  # not_empty's waiting threads
                    self.not_empty.notify()


class InstrumentedLifoQueue(InstrumentedQueueMixin, queue.LifoQueue):  # type: ignore[type-arg]
    """urllib3's default pool queue, instrumented."""

    _poolscope_stdlib_built = stdlib_built(queue.LifoQueue)


_queue_classes: dict[type[Any], type[Any]] = {queue.LifoQueue: InstrumentedLifoQueue}


def uninstrumented_class(cls: type[Any]) -> type[Any]:
    """The queue class ``cls`` was made from (``cls`` itself when it is not instrumented)."""
    return next(c for c in cls.__mro__ if not issubclass(c, InstrumentedQueueMixin))


def instrumented_queue_class(base: type[Any]) -> type[Any]:
    if issubclass(base, InstrumentedQueueMixin):
        return base
    cls = _queue_classes.get(base)
    if cls is None:
        namespace = {"_poolscope_stdlib_built": stdlib_built(base)}
        cls = type(f"Instrumented{base.__name__}", (InstrumentedQueueMixin, base), namespace)
        cls = _queue_classes.setdefault(base, cls)
    return cls


# What get() and put() call beyond stdlib's queue: functions, not methods. adopt_pool and
# detach_pool change a queue's class under its lock while other threads use it, so a get() or
# put() that began with one class (one not yet holding the lock, or waiting on not_empty or
# not_full, which releases it) may carry on with the other: it must call nothing that only one
# of them has. Their ``q`` is typed as the instrumented queue, but may be stdlib's by then.

if sys.version_info >= (3, 13):

    def _refuse_get(q: InstrumentedQueueMixin) -> None:
        # With not_empty's lock held: ShutDown if the queue is shut down and empty.
        if q.is_shutdown and not q._qsize():
            raise queue.ShutDown

    def _refuse_put(q: InstrumentedQueueMixin) -> None:
        # With not_full's lock held: ShutDown if the queue is shut down.
        if q.is_shutdown:
            raise queue.ShutDown

else:  # before Python 3.13, queues have no shutdown

    def _refuse_get(q: InstrumentedQueueMixin) -> None:
        pass

    _refuse_put = _refuse_get


def _put_when_full(
    q: InstrumentedQueueMixin,
    item: Any,
    block: bool,
    timeout: float | None,
    idled: ConnState | None,
) -> None:
    # Runs with not_full's lock held, the queue full, shut down (from Python 3.13) or the
    # timeout negative (a ValueError, full or not, as queue.Queue.put's); returns once there
    # is room, as queue.Queue.put does.
    try:
        _refuse_put(q)
        if not block:
            # urllib3 closes a connection that finds its pool full: that close is a
            # discard.
            cs = getattr(item, "_poolscope", None)
            if cs is not None:
                cs.discarding = True
            raise queue.Full
        _wait_for_room(q, timeout)
    except BaseException:
        if idled is not None:  # it never entered the queue
            idled.in_pool = False
            idled.stats.idle -= 1
        raise


def _wait_for_room(q: InstrumentedQueueMixin, timeout: float | None) -> None:
    # The blocking branch of queue.Queue.put; urllib3 never takes it (it puts with
    # block=False), but the contract is kept.
    if timeout is None:
        while q._qsize() >= q.maxsize:
            q.not_full.wait()
            _refuse_put(q)
    elif timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    else:
        endtime = _monotonic() + timeout
        while q._qsize() >= q.maxsize:
            remaining = endtime - _monotonic()
            if remaining <= 0.0:
                raise queue.Full
            q.not_full.wait(remaining)
            _refuse_put(q)


def _adopt(q: InstrumentedQueueMixin, conn: Any) -> ConnState | None:
    # A connection made before its pool was instrumented, coming back: track it from now.
    ps = q._poolscope
    if ps is None:
        return None
    try:
        cs: ConnState = adopt_connection(ps, conn)
    except Exception:
        internal_error("adopt connection")
        return None
    return cs


def _wait_for_item(q: InstrumentedQueueMixin, timeout: float | None) -> None:
    # Runs with not_empty's lock held, like the loop it replaces in queue.Queue.get.
    if timeout is not None and timeout < 0:
        raise ValueError("'timeout' must be a non-negative number")
    ps = q._poolscope
    if ps is not None:
        try:
            ps.recorder.wait_started(ps, timeout)
        except Exception:
            internal_error("wait")
    start = _now()
    timed_out = False
    try:
        if timeout is None:
            while not q._qsize():
                q.not_empty.wait()
                _refuse_get(q)
        else:
            endtime = _monotonic() + timeout
            while not q._qsize():
                remaining = endtime - _monotonic()
                if remaining <= 0.0:
                    timed_out = True
                    raise queue.Empty
                q.not_empty.wait(remaining)
                _refuse_get(q)
    finally:
        if ps is not None:
            try:
                gave_up = _EMPTY_POOL if timed_out else None
                ps.recorder.wait_ended(ps, _now() - start, gave_up)
            except Exception:
                internal_error("wait")
