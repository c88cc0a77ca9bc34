"""Instrumented urllib3 PoolManagers: the per-manager cache of pools and its evictions.

A ``PoolManager`` keeps at most ``num_pools`` pools (requests' ``pool_connections``) in a
``RecentlyUsedContainer``; adding one more pushes the least recently used pool out. urllib3
1.26.16+ and 2.x do not close an evicted pool at once: its idle connections close when it is
garbage-collected. poolscope sees evictions through the container's ``dispose_func``.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, TypeVar

from urllib3.poolmanager import PoolManager

from ._pools import adopt_pool, detach_pool, instrumented_pool_class
from ._recorder import Recorder, internal_error, manager_ids

if TYPE_CHECKING:
    _ManagerBase = PoolManager
else:
    _ManagerBase = object


class ManagerState:
    """What poolscope keeps on one PoolManager (``pm._poolscope``), including how to undo it."""

    __slots__ = (
        "clearing",
        "id",
        "original_class",
        "original_dispose",
        "original_pool_classes",
        "pools",
        "recorder",
    )

    def __init__(self, recorder: Recorder, pm: Any) -> None:
        self.id = next(manager_ids)
        self.recorder = recorder
        self.original_class: type[Any] = type(pm)
        self.original_pool_classes: dict[str, type[Any]] = pm.pool_classes_by_scheme
        self.original_dispose: Callable[[Any], None] | None = pm.pools.dispose_func
        self.clearing = False  # inside PoolManager.clear(): disposals are closes, not evictions
        self.pools: weakref.WeakSet[Any] = weakref.WeakSet()  # every pool it made, evicted too


class InstrumentedPoolManagerMixin(_ManagerBase):
    """Reports pool evictions and hands its pools a recorder (see InstrumentedPoolManager)."""

    _poolscope: ManagerState

    # A data descriptor, so that code assigning its own pool classes after construction (as
    # botocore does) still gets pools that report.
    @property
    def pool_classes_by_scheme(self) -> dict[str, type[Any]]:
        classes: dict[str, type[Any]] = self.__dict__["pool_classes_by_scheme"]
        return classes

    @pool_classes_by_scheme.setter
    def pool_classes_by_scheme(self, classes: dict[str, type[Any]]) -> None:
        state = self.__dict__.get("_poolscope")
        if state is not None:
            state.original_pool_classes = classes
            classes = _reporting_classes(classes, state.recorder)
        self.__dict__["pool_classes_by_scheme"] = classes

    def _new_pool(self, *args: Any, **kwargs: Any) -> Any:
        pool = super()._new_pool(*args, **kwargs)
        state = self.__dict__.get("_poolscope")
        if state is not None:
            _adopted_by(pool, self, state)
        return pool

    def clear(self) -> None:
        state = self.__dict__.get("_poolscope")
        if state is None:
            return super().clear()
        state.clearing = True
        try:
            super().clear()
        finally:
            state.clearing = False


class InstrumentedPoolManager(InstrumentedPoolManagerMixin, PoolManager):
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
        _attach(self, recorder, type(self))


_manager_classes: dict[type[Any], type[Any]] = {PoolManager: InstrumentedPoolManager}
_classes_lock = threading.Lock()


def _instrumented_manager_class(base: type[Any]) -> type[Any]:
    if issubclass(base, InstrumentedPoolManagerMixin):
        return base
    with _classes_lock:
        cls = _manager_classes.get(base)
        if cls is None:
            cls = type(f"Instrumented{base.__name__}", (InstrumentedPoolManagerMixin, base), {})
            _manager_classes[base] = cls
    return cls


def attach_manager(pm: Any, recorder: Recorder) -> None:
    """Instrument a PoolManager (or ProxyManager) in place, with the pools it already has."""
    state = pm.__dict__.get("_poolscope")
    if state is not None:
        return
    _attach(pm, recorder, type(pm))
    pm.__class__ = _instrumented_manager_class(type(pm))


def _attach(pm: Any, recorder: Recorder, original_class: type[Any]) -> None:
    state = ManagerState(recorder, pm)
    state.original_class = original_class
    pm._poolscope = state
    # PoolManager.__init__ stores urllib3's module-level dict itself: rebind, never mutate.
    pm.__dict__["pool_classes_by_scheme"] = _reporting_classes(
        state.original_pool_classes, recorder
    )
    pm.pools.dispose_func = _dispose_hook(pm, state)
    with pm.pools.lock:
        existing = list(pm.pools._container.values())
    for pool in existing:
        adopt_pool(pool, recorder)
        _adopted_by(pool, pm, state)


def _adopted_by(pool: Any, pm: Any, state: ManagerState) -> None:
    state.pools.add(pool)
    ps = pool.__dict__.get("_poolscope")
    if ps is not None:
        ps.manager_id = state.id
        ps.num_pools = pm.pools._maxsize


def _reporting_classes(classes: dict[str, type[Any]], recorder: Recorder) -> dict[str, type[Any]]:
    return {scheme: instrumented_pool_class(cls, recorder) for scheme, cls in classes.items()}


def _dispose_hook(pm: Any, state: ManagerState) -> Callable[[Any], None]:
    pm_ref = weakref.ref(pm)
    original = state.original_dispose

    def pool_disposed(pool: Any) -> None:
        # Called by RecentlyUsedContainer for a pool pushed out by a newer one, and for every
        # pool on clear(); only the first is an eviction.
        try:
            ps = pool.__dict__.get("_poolscope")
            if ps is not None:
                if state.clearing:
                    ps.closed = True  # the manager let go of it: its connections are closing
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
    """Give a PoolManager back its own classes, dict and dispose function; a no-op if not ours."""
    state: ManagerState | None = pm.__dict__.pop("_poolscope", None)
    if state is None:
        return
    with pm.pools.lock:
        current = list(pm.pools._container.values())
    for pool in {id(p): p for p in [*state.pools, *current]}.values():
        detach_pool(pool)
    pm.__class__ = state.original_class
    pm.__dict__["pool_classes_by_scheme"] = state.original_pool_classes
    pm.pools.dispose_func = state.original_dispose


def manager_recorder(pm: Any) -> Recorder | None:
    state = pm.__dict__.get("_poolscope")
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
