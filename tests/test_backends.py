"""End to end into real backends: a Prometheus server scraping the OpenTelemetry Prometheus
exporter, and an OTLP/HTTP receiver decoding with the official opentelemetry-proto messages."""

from __future__ import annotations

import http.server
import json
import os
import pathlib
import shutil
import socket
import subprocess
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import poolscope
from poolscope.loopback import LoopbackServer


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


@pytest.fixture
def prometheus(tmp_path: pathlib.Path) -> Iterator[tuple[str, int]]:
    """A real Prometheus server (Debian's package) on loopback; yields (its URL, scrape port)."""
    binary = shutil.which("prometheus")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's prometheus package (.ci/run does).")
        pytest.skip("Debian's prometheus package is not installed (.ci/run installs it).")
    target, listen = free_port(), free_port()
    config = tmp_path / "prometheus.yml"
    config.write_text(
        "global:\n  scrape_interval: 1s\n"
        "scrape_configs:\n  - job_name: poolscope\n"
        f"    static_configs:\n      - targets: ['127.0.0.1:{target}']\n"
    )
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{listen}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{listen}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(url + "/-/ready").status == 200, 30, "Prometheus start"
        )
        yield url, target
    finally:
        proc.terminate()
        proc.wait(10)


def prom_query(url: str, query: str) -> dict[tuple[str, ...], float]:
    body = urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(query)}").read()
    result = json.loads(body)["data"]["result"]
    return {
        tuple(
            f"{k}={v}"
            for k, v in sorted(r["metric"].items())
            if k not in ("__name__", "job", "instance") and not k.startswith("otel_")
        ): float(r["value"][1])
        for r in result
    }


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
    for name in ("first", "second"):
        (link,) = spans[name].links
        assert link.span_id == setup.span_id and link.trace_id == setup.trace_id
    assert [e.name for e in spans["second"].events] == ["urllib3.pool.connection_reused"]

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
