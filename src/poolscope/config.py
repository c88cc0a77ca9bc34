"""Choosing where events go: validating options and sharing one recorder per configuration.

Recorders are shared: every session instrumented with the same mode and providers reports to
one recorder; recorders that report to one meter (that differ by tracer provider, say) share
its instruments (see :mod:`poolscope.sinks.meter`). This is where
the layers meet: a recorder is given its sinks here (metrics and spans, or logging, and the
report's when asked), and pools constructed directly find their recorder through
:func:`get_recorder`, registered with the instrumentation below.
"""

from __future__ import annotations

import threading
import weakref
from typing import Any

from .core.recorder import Recorder
from .instrumentation.pools import use_recorder_lookup
from .reporting.records import ReportSink, all_sinks, new_report_sink
from .sinks.logs import LoggingSink

MODES: tuple[str, ...] = ("otel", "logging")

_recorders: weakref.WeakValueDictionary[tuple[str, int, int], Recorder] = (
    weakref.WeakValueDictionary()
)
_lock = threading.Lock()
# Whether the report is kept. Asked for once (report=True anywhere, or `poolscope run`), every
# recorder, made before or after, also feeds it: the report sees every pool poolscope sees,
# whatever each pool reports to, so observing for it never conflicts with other options.
_report_on = False


def validate(mode: object, meter_provider: object, tracer_provider: object) -> None:
    """Raise a whole-sentence error for options poolscope cannot use; change nothing."""
    if mode not in MODES:
        raise ValueError(
            f"mode must be 'otel' (OpenTelemetry metrics) or 'logging' (log records only), "
            f"not {mode!r}."
        )
    if mode == "logging":
        if meter_provider is not None or tracer_provider is not None:
            raise ValueError(
                "mode='logging' makes no OpenTelemetry calls, so it takes no meter_provider or "
                "tracer_provider; drop them, or use mode='otel'."
            )
        return
    if meter_provider is not None:
        from opentelemetry.metrics import MeterProvider

        if not isinstance(meter_provider, MeterProvider):
            raise TypeError(
                "meter_provider must be an opentelemetry.metrics.MeterProvider (for example "
                "opentelemetry.sdk.metrics.MeterProvider), not "
                f"{type(meter_provider).__name__}; pass None to use the global one."
            )
    if tracer_provider is not None:
        from opentelemetry.trace import TracerProvider

        if not isinstance(tracer_provider, TracerProvider):
            raise TypeError(
                "tracer_provider must be an opentelemetry.trace.TracerProvider (for example "
                "opentelemetry.sdk.trace.TracerProvider), not "
                f"{type(tracer_provider).__name__}; pass None to use the global one."
            )


def get_recorder(
    mode: object, meter_provider: Any = None, tracer_provider: Any = None, report: bool = False
) -> Recorder:
    """The recorder for this configuration, made on first use; validates first.
    ``report=True`` starts keeping the report, for this recorder and every other one."""
    validate(mode, meter_provider, tracer_provider)
    key = (str(mode), id(meter_provider), id(tracer_provider))
    with _lock:
        started = _start_report() if report else []
        recorder = _recorders.get(key)
        if recorder is None:
            recorder = _build(str(mode), meter_provider, tracer_provider)
            if _report_on:
                _feed_report(recorder)
            _recorders[key] = recorder
    _count_now(started)
    return recorder


def report_recorder() -> Recorder:
    """A recorder that feeds the report only (``poolscope run``'s: the program's own output and
    telemetry stay as they are)."""
    key = ("report", 0, 0)
    with _lock:
        started = _start_report()
        recorder = _recorders.get(key)
        if recorder is None:
            recorder = Recorder()
            recorder.config = "the report of poolscope run"
            _feed_report(recorder)
            _recorders[key] = recorder
    _count_now(started)
    return recorder


def stop_report() -> None:
    """Recorders made from now on no longer feed the report (those that do keep doing so), and
    the report starts again from nothing. For tests, which must not leak one test's report
    into the next test's counts."""
    global _report_on
    with _lock:
        _report_on = False
    for sink in all_sinks():
        sink.restart()


def _start_report() -> list[Recorder]:
    # Under _lock. The report sink is kept (the report outlives the sessions it describes).
    global _report_on
    if _report_on:
        return []
    _report_on = True
    recorders = list(_recorders.values())
    for recorder in recorders:
        _feed_report(recorder)
    return recorders


def _feed_report(recorder: Recorder) -> None:
    # One report sink a recorder, however often the report is started and stopped (tests).
    if not any(isinstance(sink, ReportSink) for sink in recorder.sinks.all):
        recorder.add_sink(new_report_sink(recorder))


def _count_now(recorders: list[Recorder]) -> None:
    # A recorder that just got the report's sink counts reuses from now on (outside _lock:
    # starting pools takes their queues' locks).
    for recorder in recorders:
        recorder.should_count()


def _build(mode: str, meter_provider: Any, tracer_provider: Any) -> Recorder:
    recorder = Recorder()
    recorder.config = describe(mode, meter_provider, tracer_provider)
    if mode == "logging":
        recorder.add_sink(LoggingSink())
    else:
        # Imported here, not at the top: mode="logging" imports no OpenTelemetry at all.
        from .sinks.metrics import MetricsSink
        from .sinks.spans import SpanSink

        recorder.add_sink(MetricsSink(recorder, meter_provider))
        recorder.add_sink(SpanSink(tracer_provider))
        recorder.providers = (meter_provider, tracer_provider)  # kept alive: ids are the key
    return recorder


def describe(mode: str, meter_provider: Any, tracer_provider: Any) -> str:
    """Options in words, for errors that name two configurations."""
    if mode == "logging":
        return "mode='logging'"

    def name(provider: Any, kind: str) -> str:
        if provider is None:
            return f"the global {kind} provider"
        return f"{type(provider).__name__} at {id(provider):#x}"

    return f"mode='otel' with {name(meter_provider, 'meter')} and {name(tracer_provider, 'tracer')}"


def _lookup(mode: str, meter_provider: Any, tracer_provider: Any) -> Recorder:
    return get_recorder(mode, meter_provider, tracer_provider)


use_recorder_lookup(_lookup)
