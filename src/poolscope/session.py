"""requests integration: :func:`instrument_session` instruments a Session's adapters (and its
undo), :class:`InstrumentedHTTPAdapter` is the drop-in adapter."""

from __future__ import annotations

import logging
import threading
import weakref
from typing import Any, SupportsIndex, TypeVar

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
    already has, and so is every one mounted later. Calling it again is harmless::

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
            # Adapters mounted from now on are covered as they are mounted (an instance
            # attribute: the Session class is left as it is).
            session.mount = _covering_mount(session)  # type: ignore[method-assign]
            # A copy, or the session unpickled, is instrumented again with the same options
            # (an unpickled one with the global providers: providers do not pickle). Also an
            # instance attribute: copy and pickle look __reduce_ex__ up on the instance.
            session.__reduce_ex__ = _reducing(  # type: ignore[method-assign]
                session, mode, report, (meter_provider, tracer_provider)
            )
        _cover(session, state)
        session._poolscope = state  # type: ignore[attr-defined]
    return session


def _covering_mount(session: requests.Session) -> Any:
    session_ref = weakref.ref(session)  # the method lives in the session's own dict

    def mount(prefix: str, adapter: Any) -> None:
        owner = session_ref()
        assert owner is not None  # it is calling us
        type(owner).mount(owner, prefix, adapter)
        try:
            with _lock:
                state: _SessionState | None = getattr(owner, "_poolscope", None)
                if state is not None:
                    _cover(owner, state)
        except Exception:
            internal_error("mount")

    return mount


def _reducing(session: requests.Session, mode: str, report: bool, providers: Any) -> Any:
    session_ref = weakref.ref(session)
    kept = _Providers(providers)

    def __reduce_ex__(protocol: SupportsIndex) -> tuple[Any, ...]:
        owner = session_ref()
        assert owner is not None  # it is calling us
        state = owner.__getstate__()  # type: ignore[attr-defined,unused-ignore]  # not in 3.10's stubs
        return (_instrumented_again, (type(owner), state, mode, report, kept))

    return __reduce_ex__


class _Providers:
    """A session's OpenTelemetry providers, carried by its copies (copy and deepcopy keep
    them) but not by its pickles: providers do not pickle, the unpickled session reports to
    the global ones."""

    def __init__(self, providers: Any) -> None:
        self.meter_provider, self.tracer_provider = providers

    def __reduce__(self) -> tuple[Any, ...]:
        return (_Providers, ((None, None),))

    def __deepcopy__(self, memo: dict[int, Any]) -> _Providers:
        return self


def _instrumented_again(
    cls: type[requests.Session],
    state: dict[str, Any],
    mode: str,
    report: bool,
    providers: _Providers,
) -> requests.Session:
    """A copied or unpickled instrumented session: rebuilt as requests does, instrumented."""
    session = cls.__new__(cls)
    session.__setstate__(state)  # type: ignore[attr-defined,unused-ignore]  # not in the stubs
    return instrument_session(
        session,
        mode=mode,
        meter_provider=providers.meter_provider,
        tracer_provider=providers.tracer_provider,
        report=report,
    )


def _cover(session: requests.Session, state: _SessionState) -> None:
    """Make every adapter mounted on ``session`` report to the session's recorder (under
    _lock); say once for each adapter that is not an HTTPAdapter that it is left alone."""
    recorder = state.recorder
    for adapter_id, adapter in list({id(a): a for a in session.adapters.values()}.items()):
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
        vars(session).pop("mount", None)  # the Session class's own mount again
        vars(session).pop("__reduce_ex__", None)  # and its own way to be copied and pickled
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

    Takes the parent's arguments, plus keyword-only ``mode``, ``meter_provider``,
    ``tracer_provider`` and ``report`` as in :func:`instrument_session`::

        session.mount("https://", poolscope.InstrumentedHTTPAdapter(pool_maxsize=16))

    Pickled or copied, it keeps ``mode`` and ``report``; OpenTelemetry providers are not
    pickled, so a copy reports to the global ones.
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
        report: bool = False,
    ) -> None:
        self._poolscope_recorder = get_recorder(mode, meter_provider, tracer_provider, report)
        self._poolscope_options = (mode, report)  # what survives pickling and copying
        super().__init__(pool_connections, pool_maxsize, max_retries, pool_block)

    def __getstate__(self) -> dict[str, Any]:
        # requests' stubs declare no __getstate__, nor does object's before Python 3.11.
        state: dict[str, Any] = super().__getstate__()  # type: ignore[assignment,misc,unused-ignore]
        state["_poolscope_options"] = getattr(self, "_poolscope_options", ("otel", False))
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        mode, report = state.pop("_poolscope_options", ("otel", False))
        self._poolscope_options = (mode, report)
        self._poolscope_recorder = get_recorder(mode, None, None, report)
        super().__setstate__(state)  # type: ignore[misc]  # requests: calls init_poolmanager

    def _recorder(self) -> Any:
        recorder = getattr(self, "_poolscope_recorder", None)
        return recorder if recorder is not None else get_recorder("otel")

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        attach_manager(self.poolmanager, self._recorder(), "requests")

    def proxy_manager_for(self, proxy: str, **proxy_kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **proxy_kwargs)
        attach_manager(manager, self._recorder(), "requests")
        return manager
