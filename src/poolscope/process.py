"""Process-wide instrumentation: every new urllib3 PoolManager and pool, whoever builds it.

``requests.get()`` builds a throwaway Session per call, and many SDKs drive urllib3 directly:
their pools are never in the user's hands. ``instrument()`` wraps ``PoolManager.__init__`` (which
``ProxyManager`` and requests' ``HTTPAdapter`` go through) so each new manager is instrumented
as it is made, and makes every pool constructed without a manager (elastic-transport's,
docker-py's over a unix socket) an instrumented one (see ``instrument_new_pools``), and does
the same for vendored copies of urllib3 such as pip's as they are imported (see
``instrumentation/copies.py``); ``uninstrument()`` puts urllib3's own functions back and lets
go of everything it instrumented.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from urllib3.poolmanager import PoolManager

from .config import get_recorder, report_recorder
from .core.recorder import Recorder
from .httpx_pools.hooks import instrument_httpcore
from .instrumentation.adopt import instrument_new_pools
from .instrumentation.copies import instrument_copies
from .instrumentation.managers import instrument_new_managers
from .poolmanager import InstrumentedPoolManager

_lock = threading.Lock()


class _ProcessState:
    __slots__ = ("recorder", "undo", "yields")

    def __init__(self, recorder: Recorder, yields: bool) -> None:
        self.recorder = recorder
        self.yields = yields  # poolscope run's: the program's own instrument() takes over
        # Each undoes one patch (new managers, new pools, vendored copies); False: what was
        # instrumented keeps reporting.
        self.undo: list[Callable[[bool], None]] = []


_state: _ProcessState | None = None


def instrument(
    *,
    mode: str = "otel",
    meter_provider: Any = None,
    tracer_provider: Any = None,
    report: bool = False,
) -> None:
    """Instrument every urllib3 ``PoolManager`` and pool made from now on, in the whole process.

    That covers every new ``requests.Session`` (so ``requests.get()`` too), proxies, and SDKs
    that use urllib3 directly, with or without a ``PoolManager`` (boto3, the kubernetes
    client, elasticsearch, opensearch-py, docker-py), vendored copies of urllib3 (pip's), and
    every httpx client, existing ones included, when httpx is installed. ``report=True`` also
    gathers :func:`poolscope.report`'s data. urllib3 managers and pools that exist already are
    not touched: use :func:`instrument_session` or :func:`instrument_pool_manager` for them.
    Calling it again with the same options is harmless::

        poolscope.instrument()
        requests.get("https://example.org/")  # reported
    """
    recorder = get_recorder(mode, meter_provider, tracer_provider, report)
    _instrument(recorder, yields=False)


def instrument_for_report() -> None:
    """``poolscope run``'s instrumentation: every pool feeds the report and nothing else, and
    the program's own :func:`instrument` call, whatever its options, takes over."""
    _instrument(report_recorder(), yields=True)


def _instrument(recorder: Recorder, *, yields: bool) -> None:
    global _state
    with _lock:
        if _state is not None:
            if _state.recorder is recorder:
                return
            if not _state.yields:
                raise ValueError(
                    "poolscope is already instrumenting the process with other options "
                    f"({_state.recorder.config}, not {recorder.config}); call "
                    "poolscope.uninstrument() first to change how it reports."
                )
            # poolscope run's: the managers and pools it instrumented keep feeding the report.
            _uninstrument_locked(give_back=False)
        state = _ProcessState(recorder, yields)
        state.undo = [
            instrument_new_managers(PoolManager, recorder, skip=InstrumentedPoolManager),
            instrument_new_pools(recorder),
            instrument_copies(recorder),
            instrument_httpcore(recorder),
        ]
        _state = state


def uninstrument() -> None:
    """Undo :func:`instrument`: urllib3's own ``PoolManager.__init__`` is put back, and every
    manager it instrumented is given back as it was. A no-op when not instrumenting."""
    with _lock:
        _uninstrument_locked()


def _uninstrument_locked(*, give_back: bool = True) -> None:
    global _state
    state, _state = _state, None
    if state is None:
        return
    for undo in reversed(state.undo):
        undo(give_back)
