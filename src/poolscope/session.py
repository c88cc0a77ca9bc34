"""requests integration: :func:`instrument_session` instruments a Session's adapters (and its
undo), :class:`InstrumentedHTTPAdapter` is the drop-in adapter."""

from __future__ import annotations

import logging
import threading
from typing import Any, TypeVar

import requests
from requests.adapters import HTTPAdapter

from .config import get_recorder
from .core.errors import internal_error
from .core.recorder import Recorder
from .instrumentation.managers import attach_manager, detach_manager, manager_recorder

log = logging.getLogger("poolscope")

SessionT = TypeVar("SessionT", bound=requests.Session)

_lock = threading.Lock()  # instrumenting and uninstrumenting one session at a time


class _SessionState:
    __slots__ = ("adapters", "recorder", "skipped")

    def __init__(self, recorder: Recorder) -> None:
        self.recorder = recorder
        # The adapters whose managers we instrumented, with their own proxy_manager dicts.
        self.adapters: list[tuple[HTTPAdapter, dict[str, Any]]] = []
        self.skipped: set[int] = set()  # ids of non-HTTPAdapter adapters already logged


class _InstrumentedProxyManagers(dict[str, Any]):
    """Stands in for ``HTTPAdapter.proxy_manager``: each ProxyManager that requests makes for a
    new proxy (``proxy_manager_for``) reports as soon as it is stored."""

    def __init__(self, managers: dict[str, Any], recorder: Recorder) -> None:
        super().__init__(managers)
        self.recorder = recorder

    def __setitem__(self, proxy: str, manager: Any) -> None:
        super().__setitem__(proxy, manager)
        try:
            attach_manager(manager, self.recorder, "requests")
        except Exception:
            internal_error("proxy manager")


def _managers(adapter: HTTPAdapter) -> list[Any]:
    managers = [adapter.poolmanager] if getattr(adapter, "poolmanager", None) is not None else []
    managers.extend(getattr(adapter, "proxy_manager", {}).values())
    return managers


def instrument_session(
    session: SessionT,
    *,
    mode: str = "otel",
    meter_provider: Any = None,
    tracer_provider: Any = None,
    report: bool = False,
) -> SessionT:
    """Make every connection pool behind ``session`` report what it does; returns the session.

    ``mode="otel"`` (the default) reports OpenTelemetry metrics through ``meter_provider`` and
    ``tracer_provider``, or the global providers when they are None. ``mode="logging"`` writes
    one log record per event to the ``poolscope.pool`` logger and makes no OpenTelemetry call.
    ``report=True`` also gathers what :func:`poolscope.report` shows and advises.

    Every ``HTTPAdapter`` mounted on the session is covered, with the pools and connections it
    already has. Calling it again is harmless and also covers adapters mounted since::

        session = poolscope.instrument_session(requests.Session())
        session.get("https://example.org/")
    """
    if not isinstance(session, requests.Session):
        raise TypeError(
            f"instrument_session() takes a requests.Session, not {type(session).__name__}; "
            "for a urllib3 PoolManager use poolscope.InstrumentedPoolManager."
        )
    recorder = get_recorder(mode, meter_provider, tracer_provider, report)
    with _lock:
        state: _SessionState | None = getattr(session, "_poolscope", None)
        if state is not None and state.recorder is not recorder:
            raise ValueError(
                "This session is already instrumented with other options "
                f"({state.recorder.config}, not {recorder.config}); call "
                "poolscope.uninstrument_session(session) first to change how it reports."
            )
        adapters = list({id(a): a for a in session.adapters.values()}.items())
        for _, adapter in adapters:
            if isinstance(adapter, HTTPAdapter):
                for pm in _managers(adapter):
                    other = manager_recorder(pm)
                    if other is not None and other is not recorder:
                        raise ValueError(
                            f"The adapter mounted at {_prefix(session, adapter)!r} already "
                            f"reports with other options ({other.config}, not "
                            f"{recorder.config}): it is shared with another session or was "
                            "instrumented on its own; uninstrument that session first."
                        )
        if state is None:
            state = _SessionState(recorder)
        for adapter_id, adapter in adapters:
            if not isinstance(adapter, HTTPAdapter):
                if adapter_id not in state.skipped:
                    state.skipped.add(adapter_id)
                    log.warning(
                        "poolscope left the adapter mounted at %r (%s) alone: it is not a "
                        "requests HTTPAdapter, so its connections are not reported.",
                        _prefix(session, adapter),
                        type(adapter).__qualname__,
                    )
                continue
            for pm in _managers(adapter):
                attach_manager(pm, recorder, "requests")
            if all(a is not adapter for a, _ in state.adapters):
                original = adapter.proxy_manager
                adapter.proxy_manager = _InstrumentedProxyManagers(original, recorder)
                state.adapters.append((adapter, original))
        session._poolscope = state  # type: ignore[attr-defined]
    return session


def uninstrument_session(session: requests.Session) -> None:
    """Give ``session`` back exactly as it was: its adapters' own managers, pools, classes.

    Connections it has keep working and stop reporting. A session that was never instrumented
    is left as it is.
    """
    if not isinstance(session, requests.Session):
        raise TypeError(
            f"uninstrument_session() takes a requests.Session, not {type(session).__name__}."
        )
    with _lock:
        state: _SessionState | None = getattr(session, "_poolscope", None)
        if state is None:
            return
        del session._poolscope  # type: ignore[attr-defined]
        for adapter, original in state.adapters:
            for pm in _managers(adapter):
                detach_manager(pm)
            if isinstance(adapter.proxy_manager, _InstrumentedProxyManagers):
                original.clear()
                original.update(adapter.proxy_manager)
                adapter.proxy_manager = original


def _prefix(session: requests.Session, adapter: Any) -> str:
    return next((p for p, a in session.adapters.items() if a is adapter), "?")


class InstrumentedHTTPAdapter(HTTPAdapter):
    """A drop-in ``requests.adapters.HTTPAdapter`` whose pools report what they do.

    Takes the parent's arguments, plus keyword-only ``mode``, ``meter_provider`` and
    ``tracer_provider`` as in :func:`instrument_session`::

        session.mount("https://", poolscope.InstrumentedHTTPAdapter(pool_maxsize=16))
    """

    def __init__(
        self,
        pool_connections: int = 10,
        pool_maxsize: int = 10,
        max_retries: Any = 0,
        pool_block: bool = False,
        *,
        mode: str = "otel",
        meter_provider: Any = None,
        tracer_provider: Any = None,
    ) -> None:
        self._poolscope_recorder = get_recorder(mode, meter_provider, tracer_provider)
        super().__init__(pool_connections, pool_maxsize, max_retries, pool_block)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        # After unpickling (__setstate__) the recorder is gone: report to the global providers.
        recorder = getattr(self, "_poolscope_recorder", None) or get_recorder("otel")
        attach_manager(self.poolmanager, recorder, "requests")

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        recorder = getattr(self, "_poolscope_recorder", None) or get_recorder("otel")
        attach_manager(manager, recorder, "requests")
        return manager
