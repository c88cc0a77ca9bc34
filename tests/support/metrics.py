"""Provides ``Metrics``: a real OpenTelemetry SDK MeterProvider with an in-memory reader, and
easy reads of its points (the ``metrics`` fixture in tests/conftest.py makes one per test)."""

from __future__ import annotations

from typing import Any

from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader


class Metrics:
    """A real SDK MeterProvider with an in-memory reader, and easy reads of its points."""

    def __init__(self) -> None:
        self.reader = InMemoryMetricReader()
        self.provider = MeterProvider(metric_readers=[self.reader])

    def collect(self) -> dict[str, list[Any]]:
        data = self.reader.get_metrics_data()
        points: dict[str, list[Any]] = {}
        if data is None:
            return points
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    points.setdefault(metric.name, []).extend(metric.data.data_points)
        return points

    @staticmethod
    def value(points: dict[str, list[Any]], name: str, **attrs: Any) -> Any:
        """Sum of the points of ``name`` whose attributes include ``attrs`` (dots as __)."""
        want = {k.replace("__", "."): v for k, v in attrs.items()}
        total = 0
        for p in points.get(name, []):
            if all(p.attributes.get(k) == v for k, v in want.items()):
                total += p.count if hasattr(p, "bucket_counts") else p.value
        return total
