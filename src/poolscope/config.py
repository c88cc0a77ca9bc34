"""Choosing where events go: validating options and sharing one recorder per configuration.

Recorders are shared: every session instrumented with the same mode and providers reports to
one recorder, so its metric instruments are created once per meter (OpenTelemetry SDKs ignore
the callbacks of an observable instrument registered twice under the same name). This is where
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
from .reporting.records import new_report_sink
from .sinks.logs import LoggingSink

MODES: tuple[str, ...] = ("otel", "logging")

_recorders: weakref.WeakValueDictionary[tuple[str, int, int, bool], Recorder] = (
    weakref.WeakValueDictionary()
)
_lock = threading.Lock()


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
    """The recorder for this configuration, made on first use; validates first."""
    validate(mode, meter_provider, tracer_provider)
    key = (str(mode), id(meter_provider), id(tracer_provider), bool(report))
    with _lock:
        recorder = _recorders.get(key)
        if recorder is None:
            recorder = _build(str(mode), meter_provider, tracer_provider)
            if report:  # the report sink is kept: the report outlives the sessions it describes
                recorder.add_sink(new_report_sink(recorder))
            _recorders[key] = recorder
    return recorder


def _build(mode: str, meter_provider: Any, tracer_provider: Any) -> Recorder:
    recorder = Recorder()
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


def _lookup(mode: str, meter_provider: Any, tracer_provider: Any) -> Recorder:
    return get_recorder(mode, meter_provider, tracer_provider)


use_recorder_lookup(_lookup)
