"""Steady traffic through an instrumented Session, exported to a real backend.

    python examples/backends/traffic.py otlp http://localhost:4318    # Jaeger, Tempo, a collector
    python examples/backends/traffic.py prometheus 9464               # serves /metrics for scraping

Runs until interrupted: every half second a request, a new pool every few seconds (eviction with
pool_connections=1), and now and then two requests at once with pool_maxsize=1 (a discard).
"""

from __future__ import annotations

import sys
import threading
import time

import requests
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import TracerProvider

import poolscope
from poolscope.loopback import LoopbackServer  # the demo's loopback server


def providers(kind: str, where: str) -> tuple[MeterProvider, TracerProvider]:
    tracer_provider = TracerProvider()
    if kind == "otlp":
        from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
        from opentelemetry.sdk.trace.export import BatchSpanProcessor

        tracer_provider.add_span_processor(
            BatchSpanProcessor(OTLPSpanExporter(endpoint=f"{where}/v1/traces"))
        )
        reader: object = PeriodicExportingMetricReader(
            OTLPMetricExporter(endpoint=f"{where}/v1/metrics"), export_interval_millis=5000
        )
    else:
        from opentelemetry.exporter.prometheus import PrometheusMetricReader
        from prometheus_client import start_http_server

        start_http_server(int(where), addr="127.0.0.1")
        reader = PrometheusMetricReader()
    return MeterProvider(metric_readers=[reader]), tracer_provider  # type: ignore[list-item]


def main() -> None:
    kind, where = sys.argv[1], sys.argv[2]
    meter_provider, tracer_provider = providers(kind, where)
    tracer = tracer_provider.get_tracer("traffic")
    s = requests.Session()
    s.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1, pool_maxsize=1))
    poolscope.instrument_session(s, meter_provider=meter_provider, tracer_provider=tracer_provider)

    def get(url: str) -> None:
        with tracer.start_as_current_span("request"):
            s.get(url)

    with LoopbackServer("127.0.0.1", together=2) as a, LoopbackServer("127.0.0.2") as b:
        print(f"traffic to {a.url} and {b.url}; Ctrl-C to stop", flush=True)
        for tick in range(10**9):
            get(a.url)
            if tick % 10 == 9:
                get(b.url)  # evicts A's pool
            if tick % 20 == 19:
                pair = [threading.Thread(target=get, args=(a.url + "/together",)) for _ in range(2)]
                for t in pair:
                    t.start()
                for t in pair:
                    t.join()
            time.sleep(0.5)


if __name__ == "__main__":
    main()
