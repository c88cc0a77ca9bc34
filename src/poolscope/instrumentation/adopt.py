"""Pools built outside poolscope's classes, instrumented all the same: an existing pool in place
(:func:`adopt_pool`), its undo (:func:`detach_pool`), and every pool constructed from now on,
of any class (:func:`instrument_new_pools`, for process-wide instrumentation)."""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import Any

from urllib3.connectionpool import HTTPConnectionPool

from ..core.errors import internal_error
from ..core.recorder import Recorder
from ..core.state import PoolState
from .connections import adopt_connection, detach_connection
from .idle_queue import instrumented_queue_class, uninstrumented_class
from .pools import (
    InstrumentedPoolMixin,
    attach_pool,
    instrumented_pool_class,
    sync_counting,
    with_checkout_hook,
)
from .queue_shape import take_shape


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
        q._poolscope = None  # what the instrumented get() and put() read, before they can run
        q._poolscope_counting = False
        take_shape(q, stdlib_built=False)
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
    ps.recorder.forget_pool(pool)
    q = pool.pool
    if q is not None:
        with q.mutex:
            # Its attributes stay, inert: a get() or put() of another thread may be in the
            # instrumented code still, which reads them (they have no class default).
            q._poolscope = None
            q._poolscope_counting = False
            q.__class__ = uninstrumented_class(type(q))
    for conn in ps.connections():
        detach_connection(conn)
    if isinstance(pool, InstrumentedPoolMixin):
        pool.__class__ = type(pool)._poolscope_base


def instrument_new_pools(recorder: Recorder) -> Callable[[bool], None]:
    """From now on, every urllib3 pool constructed in the process, of any class (SDKs such as
    elastic-transport and docker-py build their own, with no PoolManager), reports to
    ``recorder``; returns the undo, which also gives back every pool converted meanwhile
    (``undo(False)``: they keep reporting).

    urllib3's ``HTTPConnectionPool`` gets a ``__new__`` that builds the instrumented subclass
    of the class asked for (made once per class), so the pool is instrumented from its first
    line and keeps CPython's fast attribute reads (no ``__class__`` assignment later). Pools
    of instrumented classes (a PoolManager's, the drop-in classes) pass through unchanged.
    The ``__new__`` stays after the undo, building plain pools: CPython does not give a class
    back its inherited ``object.__new__`` once one was set and deleted.
    """
    global _target
    converted: weakref.WeakSet[Any] = weakref.WeakSet()
    if HTTPConnectionPool.__dict__.get("__new__") is not _NEW:
        HTTPConnectionPool.__new__ = _NEW  # type: ignore[method-assign]
    target = _target = (recorder, converted)

    def undo(give_back: bool = True) -> None:
        global _target
        if _target is target:
            _target = None
        if give_back:
            for pool in list(converted):
                detach_pool(pool)

    return undo


# The recorder new pools report to, and the pools converted for it; None when not instrumenting.
_target: tuple[Recorder, weakref.WeakSet[Any]] | None = None


def _new_pool(cls: type[Any], *args: Any, **kwargs: Any) -> Any:
    target = _target
    if target is not None and not issubclass(cls, InstrumentedPoolMixin):
        try:
            instrumented = instrumented_pool_class(cls, target[0])
            if target[0].should_count():  # with its checkout hook from the start
                instrumented = with_checkout_hook(instrumented)
        except Exception:
            internal_error("new pool")
        else:
            pool = object.__new__(instrumented)
            target[1].add(pool)
            return pool
    return object.__new__(cls)


_NEW = staticmethod(_new_pool)
