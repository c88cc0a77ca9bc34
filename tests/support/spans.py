"""Provides ``Spans``: a real OpenTelemetry SDK TracerProvider with an in-memory exporter, the
user's own tracer, and reads of the finished spans (the ``spans`` fixture in tests/conftest.py
makes one per test)."""

from __future__ import annotations

from typing import Any


class Spans:
    """A real SDK TracerProvider with an in-memory exporter, and the user's own tracer."""

    def __init__(self, sampler: Any = None) -> None:
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

        self.exporter = InMemorySpanExporter()
        self.provider = TracerProvider(**({"sampler": sampler} if sampler else {}))
        self.provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.tracer = self.provider.get_tracer("test")

    def finished(self) -> list[Any]:
        return list(self.exporter.get_finished_spans())

    def named(self, prefix: str) -> list[Any]:
        return [s for s in self.finished() if s.name.startswith(prefix)]

    def children(self, parent: Any) -> list[Any]:
        return sorted(
            (s for s in self.finished() if s.parent and s.parent.span_id == parent.context.span_id),
            key=lambda s: s.start_time,
        )
