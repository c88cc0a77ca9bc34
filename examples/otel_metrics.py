"""OpenTelemetry metrics from a Session, read with the SDK's in-memory reader.

Run: pip install opentelemetry-sdk && python examples/otel_metrics.py
In a service, use any reader and exporter instead (Prometheus, OTLP): poolscope only calls
the OpenTelemetry API.
"""

from __future__ import annotations

import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

import poolscope
from poolscope.loopback import LoopbackServer  # the demo's loopback server

reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])

with LoopbackServer("127.0.0.1") as server:
    s = poolscope.instrument_session(requests.Session(), meter_provider=provider)
    for _ in range(5):
        s.get(server.url)
    s.get(server.url + "/close")
    data = reader.get_metrics_data()
    assert data is not None
    for metric in data.resource_metrics[0].scope_metrics[0].metrics:
        for point in metric.data.data_points:
            value = getattr(point, "value", None)
            if value is None:
                value = f"count={point.count} sum={point.sum:.6f}"
            attrs = ", ".join(f"{k}={v}" for k, v in point.attributes.items())
            print(f"{metric.name:<40} {value!s:<32} {attrs}")
