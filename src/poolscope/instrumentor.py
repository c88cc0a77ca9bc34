"""The OpenTelemetry instrumentor, so ``opentelemetry-instrument python app.py`` turns poolscope on.

Registered under the ``opentelemetry_instrumentor`` entry point as ``poolscope``. Needs the
``opentelemetry-instrumentation`` package, which ``opentelemetry-instrument`` brings anyway.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from opentelemetry.instrumentation.instrumentor import (  # type: ignore[attr-defined]
    BaseInstrumentor,
)

from .process import instrument, uninstrument


class PoolscopeInstrumentor(BaseInstrumentor):  # type: ignore[misc]
    """``PoolscopeInstrumentor().instrument(meter_provider=..., tracer_provider=...)`` does what
    :func:`poolscope.instrument` does, the OpenTelemetry way."""

    def instrumentation_dependencies(self) -> Collection[str]:
        return ("urllib3 >= 1.26, < 3",)

    def _instrument(self, **kwargs: Any) -> None:
        instrument(
            meter_provider=kwargs.get("meter_provider"),
            tracer_provider=kwargs.get("tracer_provider"),
        )

    def _uninstrument(self, **kwargs: Any) -> None:
        uninstrument()
