from __future__ import annotations

import socket
import ssl
import threading
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import trustme
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader

from poolscope._loopback import LoopbackServer


@pytest.fixture
def server() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.1") as srv:
        yield srv


@pytest.fixture
def server_b() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.2") as srv:
        yield srv


@pytest.fixture
def server_c() -> Iterator[LoopbackServer]:
    with LoopbackServer("127.0.0.3") as srv:
        yield srv


@pytest.fixture(scope="session")
def ca() -> trustme.CA:
    return trustme.CA()


@pytest.fixture
def tls_server(ca: trustme.CA) -> Iterator[LoopbackServer]:
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(ctx)
    with LoopbackServer("127.0.0.1", ssl_context=ctx) as srv:
        yield srv


@pytest.fixture
def ca_bundle(ca: trustme.CA, tmp_path: Any) -> str:
    path = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(path))
    return str(path)


@pytest.fixture
def refused_port() -> Iterator[int]:
    """A loopback port with a bound socket that does not listen: connecting is refused."""
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


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


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics()
    yield m
    m.provider.shutdown()


def in_two_threads(session: requests.Session, url: str) -> None:
    """Two requests that are in flight at the same time (the server answers both together)."""
    errors: list[BaseException] = []

    def get() -> None:
        try:
            session.get(url).raise_for_status()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors


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


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    yield s
    s.provider.shutdown()
