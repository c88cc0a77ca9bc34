"""Instrumenting a urllib3 PoolManager: :func:`instrument_pool_manager`, its undo, and the
drop-in :class:`InstrumentedPoolManager`."""

from __future__ import annotations

from typing import Any, TypeVar

from urllib3.poolmanager import PoolManager

from .config import get_recorder
from .instrumentation.managers import attach_manager, detach_manager, manager_recorder


class InstrumentedPoolManager(PoolManager):
    """A drop-in ``urllib3.PoolManager`` whose pools report what their connections do.

    Constructed with exactly the parent's arguments it reports to the global OpenTelemetry
    providers; ``mode``, ``meter_provider``, ``tracer_provider`` and ``report`` are those of
    :func:`poolscope.instrument_session`::

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
        report: bool = False,
        **connection_pool_kw: Any,
    ) -> None:
        recorder = get_recorder(mode or "otel", meter_provider, tracer_provider, report)
        super().__init__(num_pools, headers, **connection_pool_kw)
        attach_manager(self, recorder)


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
    recorder = get_recorder(mode, meter_provider, tracer_provider, report)
    current = manager_recorder(pm)
    if current is not None and current is not recorder:
        raise ValueError(
            f"This PoolManager is already instrumented with other options ({current.config}, "
            f"not {recorder.config}); call poolscope.uninstrument_pool_manager() on it first "
            "to change how it reports."
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
