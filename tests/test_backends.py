"""End to end into real backends: a Prometheus server scraping the OpenTelemetry Prometheus
exporter, and an OTLP/HTTP receiver decoding with the official opentelemetry-proto messages."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import poolscope
from poolscope.loopback import LoopbackServer

from .support.prometheus import prom_query, wait_for


def test_prometheus_sees_the_pool_series(
    prometheus: tuple[str, int], server: LoopbackServer, server_b: LoopbackServer
) -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    url, port = prometheus
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exposition = start_http_server(port, addr="127.0.0.1")
    try:
        s = requests.Session()
        s.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1))
        poolscope.instrument_session(s, meter_provider=provider)
        for srv in (server, server, server, server_b, server):  # A A A B A
            s.get(srv.url)
        a = f"server_port={server.port}"

        def created() -> dict[tuple[str, ...], float]:
            return prom_query(url, "urllib3_pool_connections_created_total")

        series = wait_for(lambda: len(created()) == 2 and created(), 30, "the first scrape")
        assert series[("server_address=127.0.0.1", a, "url_scheme=http")] == 2
        assert (
            series[("server_address=127.0.0.2", f"server_port={server_b.port}", "url_scheme=http")]
            == 1
        )
        reused = prom_query(url, "urllib3_pool_connections_reused_total")
        assert reused[("server_address=127.0.0.1", a, "url_scheme=http")] == 2
        evictions = prom_query(url, "sum(urllib3_pool_evictions_total)")
        assert list(evictions.values()) == [2]
        open_now = prom_query(url, f'http_client_open_connections{{server_port="{server.port}"}}')
        assert open_now == {
            ("http_connection_state=active", "server_address=127.0.0.1", a, "url_scheme=http"): 0,
            ("http_connection_state=idle", "server_address=127.0.0.1", a, "url_scheme=http"): 1,
        }
        idle = prom_query(
            url, f'urllib3_pool_connection_idle_time_seconds_count{{server_port="{server.port}"}}'
        )
        assert list(idle.values()) == [2]
    finally:
        exposition[0].shutdown()
        exposition[0].server_close()
        provider.shutdown()


class _Receiver(http.server.BaseHTTPRequestHandler):
    bodies: dict[str, list[bytes]]

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        self.server.bodies.setdefault(self.path, []).append(body)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture
def otlp_receiver() -> Iterator[tuple[str, dict[str, list[bytes]]]]:
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Receiver)
    httpd.bodies = {}  # type: ignore[attr-defined]
    threading.Thread(target=httpd.serve_forever, args=(0.05,), daemon=True).start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}", httpd.bodies  # type: ignore[attr-defined]
    finally:
        httpd.shutdown()
        httpd.server_close()


def test_otlp_http_carries_the_span_tree_links_and_metrics(
    otlp_receiver: tuple[str, dict[str, list[bytes]]], tls_server: LoopbackServer, ca_bundle: str
) -> None:
    from opentelemetry.exporter.otlp.proto.http.metric_exporter import OTLPMetricExporter
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.proto.collector.metrics.v1.metrics_service_pb2 import (
        ExportMetricsServiceRequest,
    )
    from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import PeriodicExportingMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    endpoint, bodies = otlp_receiver
    tracer_provider = TracerProvider()
    tracer_provider.add_span_processor(
        BatchSpanProcessor(OTLPSpanExporter(endpoint=endpoint + "/v1/traces"))
    )
    reader = PeriodicExportingMetricReader(
        OTLPMetricExporter(endpoint=endpoint + "/v1/metrics"), export_interval_millis=3_600_000
    )
    meter_provider = MeterProvider(metric_readers=[reader])
    s = poolscope.instrument_session(
        requests.Session(), meter_provider=meter_provider, tracer_provider=tracer_provider
    )
    tracer = tracer_provider.get_tracer("app")
    url = f"https://localhost:{tls_server.port}/"
    for name in ("first", "second"):
        with tracer.start_as_current_span(name):
            s.get(url, verify=ca_bundle)
    assert tracer_provider.force_flush()
    assert meter_provider.force_flush()

    spans = {}
    for body in bodies["/v1/traces"]:
        for rs in ExportTraceServiceRequest.FromString(body).resource_spans:
            for ss in rs.scope_spans:
                for span in ss.spans:
                    spans[span.name] = span
    setup = spans[f"HTTP connection_setup localhost:{tls_server.port}"]
    assert setup.parent_span_id == b""
    children = sorted(
        (sp for sp in spans.values() if sp.parent_span_id == setup.span_id),
        key=lambda sp: sp.start_time_unix_nano,
    )
    assert [sp.name for sp in children] == [
        "DNS lookup localhost",
        f"socket connect 127.0.0.1:{tls_server.port}",
        "TLS client handshake localhost",
    ]
    # The request that opened the connection links to its setup span; the one that reused it
    # names it by the id its setup span carries, with its idle time, as attributes.
    (link,) = spans["first"].links
    assert link.span_id == setup.span_id and link.trace_id == setup.trace_id
    assert list(spans["second"].links) == [] and list(spans["second"].events) == []
    attrs = {a.key: a.value for a in spans["second"].attributes}
    setup_attrs = {a.key: a.value for a in setup.attributes}
    assert attrs["urllib3.pool.connection.id"] == setup_attrs["urllib3.pool.connection.id"]
    assert attrs["urllib3.pool.connection.idle_time"].double_value >= 0

    sums: dict[str, float] = {}
    for body in bodies["/v1/metrics"]:
        for rm in ExportMetricsServiceRequest.FromString(body).resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.HasField("sum"):
                        sums[metric.name] = sum(
                            p.as_int or p.as_double for p in metric.sum.data_points
                        )
    assert sums["urllib3.pool.connections.created"] == 1
    assert sums["urllib3.pool.connections.reused"] == 1
    tracer_provider.shutdown()
    meter_provider.shutdown()
