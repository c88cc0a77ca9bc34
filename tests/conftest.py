"""Fixtures only: loopback servers, TLS, a refused port, and SDK metrics and spans (the
helpers they are built from live in tests/support/)."""

from __future__ import annotations

import pathlib
import socket
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import poolscope
from poolscope.config import stop_report
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.names import resolving
from .support.prometheus import run_prometheus
from .support.scripted import new_origin_socket
from .support.spans import Spans


@pytest.fixture(autouse=True)
def no_report_after_each_test() -> Iterator[None]:
    # Asking for the report once makes every recorder made since feed it, process-wide; a test
    # that asked must not make the next test's recorders count for it.
    yield
    stop_report()


@pytest.fixture
def instrumented() -> Iterator[Metrics]:
    """Process-wide instrumentation (urllib3's and httpx's pools) reporting to the report and
    to a meter provider of this test's own: a recorder outlives a test, a loopback port may
    come back, and a recorder of its own keeps one test's counts out of the next one's."""
    metrics = Metrics()
    poolscope.instrument(report=True, meter_provider=metrics.provider)
    try:
        yield metrics
    finally:
        poolscope.uninstrument()


@pytest.fixture
def many_names(monkeypatch: pytest.MonkeyPatch) -> None:
    """Host names ending in .hosts.test resolve to 127.0.0.1 in this process."""
    monkeypatch.setattr(socket, "getaddrinfo", resolving(socket.getaddrinfo))


@pytest.fixture
def prometheus(tmp_path: pathlib.Path) -> Iterator[tuple[str, int]]:
    """A real Prometheus server (Debian's package) on loopback; yields (its URL, scrape port)."""
    yield from run_prometheus(tmp_path)


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
    sock = new_origin_socket()
    try:
        yield sock.getsockname()[1]
    finally:
        sock.close()


@pytest.fixture
def metrics() -> Iterator[Metrics]:
    m = Metrics()
    yield m
    m.provider.shutdown()


@pytest.fixture
def spans() -> Iterator[Spans]:
    s = Spans()
    yield s
    s.provider.shutdown()
