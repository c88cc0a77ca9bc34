"""Instrumented urllib3 PoolManagers: the per-manager cache of pools and its evictions.

A ``PoolManager`` keeps at most ``num_pools`` pools (requests' ``pool_connections``) in a
``RecentlyUsedContainer``; adding one more pushes the least recently used pool out. urllib3
1.26.16+ and 2.x do not close an evicted pool at once: its idle connections close when it is
garbage-collected. poolscope sees evictions through the container's ``dispose_func``.
"""

from __future__ import annotations

import sys
import weakref
from collections.abc import Callable
from typing import Any, TypeVar

from urllib3.poolmanager import PoolManager

from ._pools import adopt_pool, detach_pool, instrumented_pool_class
from ._recorder import Recorder, internal_error, manager_ids

# Why no subclass swap here: on CPython 3.11+ assigning ``__class__`` (or touching
# ``__dict__``) turns an object's inline attribute values into a real dict, which makes every
# later attribute read on it slower; a PoolManager's attributes are read on every request. So
# a manager that already exists is instrumented with instance attributes only: its
# ``pool_classes_by_scheme``, a ``_new_pool`` hook, and its pool container's ``dispose_func``.


class ManagerState:
    """What poolscope keeps on one PoolManager (``pm._poolscope``), including how to undo it."""

    __slots__ = (
        "id",
        "original_dispose",
        "original_pool_classes",
        "pools",
        "recorder",
        "reporting_classes",
    )

    def __init__(self, recorder: Recorder, pm: Any) -> None:
        self.id = next(manager_ids)
        self.recorder = recorder
        self.original_pool_classes: dict[str, type[Any]] = pm.pool_classes_by_scheme
        self.reporting_classes = _reporting_classes(self.original_pool_classes, recorder)
        self.original_dispose: Callable[[Any], None] | None = pm.pools.dispose_func
        self.pools: weakref.WeakSet[Any] = weakref.WeakSet()  # every pool it made, evicted too


class InstrumentedPoolManager(PoolManager):
    """A drop-in ``urllib3.PoolManager`` whose pools report what their connections do.

    Constructed with exactly the parent's arguments it reports to the global OpenTelemetry
    providers; ``mode="logging"``, ``meter_provider=`` or ``tracer_provider=`` choose others::

        http = poolscope.InstrumentedPoolManager(num_pools=4, maxsize=8)
        http.request("GET", "http://127.0.0.1:8080/")
    """

    def __init__(
        self,
        num_pools: int = 10,
        headers: Any = None,
        *,
        mode: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        **connection_pool_kw: Any,
    ) -> None:
        from ._config import get_recorder

        recorder = get_recorder(mode or "otel", meter_provider, tracer_provider)
        super().__init__(num_pools, headers, **connection_pool_kw)
        attach_manager(self, recorder)


def attach_manager(pm: Any, recorder: Recorder) -> None:
    """Instrument a PoolManager (or ProxyManager) in place, with the pools it already has."""
    if getattr(pm, "_poolscope", None) is not None:
        return
    state = ManagerState(recorder, pm)
    pm._poolscope = state
    # PoolManager.__init__ stores urllib3's module-level dict itself: rebind, never mutate.
    pm.pool_classes_by_scheme = state.reporting_classes
    pm._new_pool = _new_pool_hook(pm, state)
    pm.pools.dispose_func = _dispose_hook(pm, state)
    with pm.pools.lock:
        existing = list(pm.pools._container.values())
    for pool in existing:
        adopt_pool(pool, recorder)
        _adopted_by(pool, pm, state)


def _new_pool_hook(pm: Any, state: ManagerState) -> Callable[..., Any]:
    pm_ref = weakref.ref(pm)  # the hook lives in pm's own dict: no reference cycle
    new_pool = type(pm)._new_pool

    def _new_pool(*args: Any, **kwargs: Any) -> Any:
        manager = pm_ref()
        assert manager is not None  # it is calling us
        classes = manager.pool_classes_by_scheme
        if classes is not state.reporting_classes:
            # Code that sets its own pool classes after construction (botocore does): the
            # pools it makes report all the same.
            state.original_pool_classes = classes
            state.reporting_classes = _reporting_classes(classes, state.recorder)
            manager.pool_classes_by_scheme = state.reporting_classes
        pool = new_pool(manager, *args, **kwargs)
        try:
            _adopted_by(pool, manager, state)
        except Exception:
            internal_error("new pool")
        return pool

    return _new_pool


def _adopted_by(pool: Any, pm: Any, state: ManagerState) -> None:
    state.pools.add(pool)
    ps = getattr(pool, "_poolscope", None)
    if ps is not None:
        ps.manager_id = state.id
        ps.num_pools = pm.pools._maxsize


def _reporting_classes(classes: dict[str, type[Any]], recorder: Recorder) -> dict[str, type[Any]]:
    return {scheme: instrumented_pool_class(cls, recorder) for scheme, cls in classes.items()}


def _dispose_hook(pm: Any, state: ManagerState) -> Callable[[Any], None]:
    pm_ref = weakref.ref(pm)
    original = state.original_dispose

    def pool_disposed(pool: Any) -> None:
        # Called by RecentlyUsedContainer for a pool pushed out by a newer one (from its
        # __setitem__), and for every pool on clear(); only the first is an eviction.
        try:
            ps = getattr(pool, "_poolscope", None)
            if ps is not None:
                if sys._getframe(1).f_code.co_name == "clear":
                    ps.closing()  # the manager let go of it: its connections are closing
                else:
                    manager = pm_ref()
                    num_pools = manager.pools._maxsize if manager is not None else 0
                    ps.recorder.pool_evicted(ps, num_pools)
        except Exception:
            internal_error("pool eviction")
        if original is not None:
            original(pool)

    return pool_disposed


def detach_manager(pm: Any) -> None:
    """Give a PoolManager back its own pool classes and dispose function; a no-op if not ours."""
    state: ManagerState | None = getattr(pm, "_poolscope", None)
    if state is None:
        return
    del pm._poolscope
    with pm.pools.lock:
        current = list(pm.pools._container.values())
    for pool in {id(p): p for p in [*state.pools, *current]}.values():
        detach_pool(pool)
    del pm._new_pool
    pm.pool_classes_by_scheme = state.original_pool_classes
    pm.pools.dispose_func = state.original_dispose


def manager_recorder(pm: Any) -> Recorder | None:
    state = getattr(pm, "_poolscope", None)
    return state.recorder if state is not None else None


ManagerT = TypeVar("ManagerT", bound=PoolManager)


def instrument_pool_manager(
    pm: ManagerT,
    *,
    mode: str = "otel",
    meter_provider: Any = None,
    tracer_provider: Any = None,
    report: bool = False,
) -> ManagerT:
    """Make a urllib3 ``PoolManager`` or ``ProxyManager`` report what its pools do; returns it.

    The options are those of :func:`instrument_session`. The pools and connections it already
    has are observed from now on; calling it again is harmless::

        http = poolscope.instrument_pool_manager(urllib3.PoolManager(num_pools=4))
    """
    if not isinstance(pm, PoolManager):
        raise TypeError(
            "instrument_pool_manager() takes a urllib3 PoolManager or ProxyManager, not "
            f"{type(pm).__name__}; for a requests.Session use poolscope.instrument_session()."
        )
    from ._config import get_recorder

    recorder = get_recorder(mode, meter_provider, tracer_provider, report)
    current = manager_recorder(pm)
    if current is not None and current is not recorder:
        raise ValueError(
            "This PoolManager is already instrumented with other options; call "
            "poolscope.uninstrument_pool_manager() on it first to change how it reports."
        )
    attach_manager(pm, recorder)
    return pm


def uninstrument_pool_manager(pm: PoolManager) -> None:
    """Give ``pm`` back exactly as it was; a manager that was never instrumented is left as is."""
    if not isinstance(pm, PoolManager):
        raise TypeError(
            "uninstrument_pool_manager() takes a urllib3 PoolManager or ProxyManager, not "
            f"{type(pm).__name__}."
        )
    detach_manager(pm)
