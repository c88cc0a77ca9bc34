"""httpx's connections traced as urllib3's are (#30): an ``HTTP connection_setup`` span per new
connection with its steps (socket connect, TLS handshake) read from httpcore's trace extension,
the TLS time in the metrics, the request span's link and reuse attributes, a failed connect and
a PoolTimeout as errors; and the program's own trace callback still called as without poolscope.
Real httpx, sync and async, against loopback servers; a real SDK."""

from __future__ import annotations

import asyncio
import itertools
import ssl
import threading
import time
from typing import Any

import pytest
from opentelemetry.trace import SpanKind, StatusCode

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.spans import Spans

httpx = pytest.importorskip("httpx")


def client(metrics: Metrics, spans: Spans, **kw: Any) -> Any:
    return poolscope.instrument_httpx_client(
        httpx.Client(**kw), meter_provider=metrics.provider, tracer_provider=spans.provider
    )


def trusting(ca_bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


def links_of(span: Any) -> list[tuple[int, int]]:
    return [(ln.context.span_id, ln.attributes["urllib3.pool.connection.id"]) for ln in span.links]


def check_https_setup(spans: Spans, port: int) -> Any:
    """The one setup span of a first https request to localhost:``port``, checked."""
    (setup,) = spans.named("HTTP connection_setup")
    assert setup.name == f"HTTP connection_setup localhost:{port}"
    assert setup.parent is None and setup.kind is SpanKind.INTERNAL
    assert setup.attributes["server.address"] == "localhost"
    assert setup.attributes["server.port"] == port
    assert setup.attributes["network.peer.address"] == "127.0.0.1"
    assert setup.attributes["tls.protocol.version"] in ("1.2", "1.3")
    steps = spans.children(setup)
    # httpcore resolves inside its TCP connect: no DNS span of its own.
    assert [s.name for s in steps] == [
        f"socket connect 127.0.0.1:{port}",
        "TLS client handshake localhost",
    ]
    for before, after in itertools.pairwise(steps):
        assert before.end_time <= after.start_time
    assert setup.start_time <= steps[0].start_time and steps[-1].end_time <= setup.end_time
    assert all(s.status.status_code is StatusCode.UNSET for s in [setup, *steps])
    return setup


def test_a_new_https_connection_has_a_setup_span_with_its_steps_and_its_tls_time(
    metrics: Metrics, spans: Spans, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    url = f"https://localhost:{tls_server.port}/"
    with client(metrics, spans, verify=trusting(ca_bundle)) as c:
        with spans.tracer.start_as_current_span("GET first"):
            assert c.get(url).text == "ok"
        with spans.tracer.start_as_current_span("GET again"):
            assert c.get(url).text == "ok"
    setup = check_https_setup(spans, tls_server.port)
    conn_id = setup.attributes["urllib3.pool.connection.id"]
    (first,) = spans.named("GET first")
    (again,) = spans.named("GET again")
    assert links_of(first) == [(setup.context.span_id, conn_id)]
    assert [e.name for e in first.events] == ["urllib3.pool.connection_created"]
    assert links_of(again) == [] and again.attributes["urllib3.pool.connection.id"] == conn_id
    assert again.attributes["urllib3.pool.connection.idle_time"] >= 0
    points = metrics.collect()
    (create,) = points["urllib3.pool.connection.create_time"]
    (tls,) = points["urllib3.pool.connection.tls_time"]
    assert create.count == 1 and tls.count == 1
    assert 0 < tls.sum < create.sum < 5
    assert tls_server.connections == 1


def test_an_async_client_gets_the_same_setup_span(
    metrics: Metrics, spans: Spans, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    async def main() -> None:
        c = httpx.AsyncClient(verify=trusting(ca_bundle))
        poolscope.instrument_httpx_client(
            c, meter_provider=metrics.provider, tracer_provider=spans.provider
        )
        async with c:
            for _ in range(2):
                assert (await c.get(f"https://localhost:{tls_server.port}/")).text == "ok"

    asyncio.run(main())
    check_https_setup(spans, tls_server.port)
    (tls,) = metrics.collect()["urllib3.pool.connection.tls_time"]
    assert tls.count == 1 and tls_server.connections == 1


def test_the_programs_own_trace_callback_sees_what_it_saw_without_poolscope(
    metrics: Metrics, spans: Spans, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    url = f"https://localhost:{tls_server.port}/"

    def traced(c: Any) -> tuple[list[str], dict[str, Any]]:
        seen: list[str] = []
        callback = lambda name, info: seen.append(name)  # noqa: E731
        response = c.get(url, extensions={"trace": callback})
        assert response.request.extensions["trace"] is callback  # the program's own, back
        return seen, response.request.extensions

    with httpx.Client(verify=trusting(ca_bundle)) as bare:
        without, bare_extensions = traced(bare)
    with client(metrics, spans, verify=trusting(ca_bundle)) as c:
        with_poolscope, extensions = traced(c)
    assert with_poolscope == without
    assert "connection.start_tls.complete" in without
    assert extensions.keys() == bare_extensions.keys()
    check_https_setup(spans, tls_server.port)


def test_a_trace_callback_of_the_wrong_kind_is_refused_as_without_poolscope(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    made: list[Any] = []

    async def nothing() -> None:
        pass

    def wrong(name: str, info: Any) -> Any:  # returns a coroutine, on a sync client
        made.append(nothing())
        return made[-1]

    refused = []
    for c in (httpx.Client(), client(metrics, spans)):
        with c, pytest.raises(TypeError) as raised:
            c.get(server.url, extensions={"trace": wrong})
        refused.append(str(raised.value))
    for coroutine in made:
        coroutine.close()  # never awaited, by httpcore's design
    assert len(made) == 2
    assert refused[0] == refused[1] and "should be a normal function" in refused[0]


def test_a_refused_connect_is_a_failed_setup_span(
    metrics: Metrics, spans: Spans, refused_port: int
) -> None:
    with client(metrics, spans) as c, pytest.raises(httpx.ConnectError):
        c.get(f"http://127.0.0.1:{refused_port}/")
    (setup,) = spans.named("HTTP connection_setup")
    assert setup.status.status_code is StatusCode.ERROR
    assert setup.attributes["error.type"] == "httpcore.ConnectError"
    (step,) = spans.children(setup)
    assert (
        step.name == "socket connect" and step.attributes["error.type"] == "httpcore.ConnectError"
    )


def test_a_pool_timeout_is_a_failed_wait_span_on_the_request(
    metrics: Metrics, spans: Spans
) -> None:
    timeouts: list[str] = []
    with LoopbackServer("127.0.0.1") as server:
        limits = httpx.Limits(max_connections=1)
        c = client(metrics, spans, limits=limits, timeout=httpx.Timeout(5, pool=0.05))

        def get(name: str) -> None:
            with spans.tracer.start_as_current_span(name):
                try:
                    c.get(server.url + "/hold")
                except httpx.PoolTimeout:
                    timeouts.append(name)

        holder = threading.Thread(target=get, args=("holder",))
        holder.start()
        while server.holding < 1:
            time.sleep(0.005)
        get("waiter")
        server.release()
        holder.join()
        c.close()
    assert timeouts == ["waiter"]
    (wait,) = spans.named("HTTP wait_for_connection")
    assert wait.status.status_code is StatusCode.ERROR
    assert wait.attributes["error.type"] == "httpcore.PoolTimeout"
    (waiter,) = spans.named("waiter")
    assert wait.parent.span_id == waiter.context.span_id
    assert 0.04 < (wait.end_time - wait.start_time) / 1e9 < 5


def test_with_the_opentelemetry_httpx_instrumentation(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    instrumentation = pytest.importorskip("opentelemetry.instrumentation.httpx")
    instrumentor = instrumentation.HTTPXClientInstrumentor()
    instrumentor.instrument(tracer_provider=spans.provider)
    try:
        with client(metrics, spans) as c:
            c.get(server.url)
            c.get(server.url)
    finally:
        instrumentor.uninstrument()
    ours = [s for s in spans.finished() if s.instrumentation_scope.name == "poolscope"]
    assert [s.name for s in ours] == [
        f"socket connect 127.0.0.1:{server.port}",
        f"HTTP connection_setup 127.0.0.1:{server.port}",
    ]
    requests_spans = [s for s in spans.finished() if s.kind is SpanKind.CLIENT]
    assert len(requests_spans) == 2
    (setup,) = spans.named("HTTP connection_setup")
    conn_id = setup.attributes["urllib3.pool.connection.id"]
    assert links_of(requests_spans[0]) == [(setup.context.span_id, conn_id)]
    assert links_of(requests_spans[1]) == []
    assert requests_spans[1].attributes["urllib3.pool.connection.id"] == conn_id


def test_a_tunnel_through_a_proxy_has_a_setup_span_its_tls_time_taking_in_the_connect(
    metrics: Metrics, spans: Spans, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    from .support.proxy import Proxy

    url = f"https://localhost:{tls_server.port}/"
    with Proxy() as proxy:
        proxied = f"http://127.0.0.1:{proxy.port}"
        with client(metrics, spans, verify=trusting(ca_bundle), proxy=proxied) as c:
            for _ in range(2):
                assert c.get(url).text == "ok"
        assert proxy.tunnels == 1
    (setup,) = spans.named("HTTP connection_setup")
    assert setup.name == f"HTTP connection_setup localhost:{tls_server.port}"
    assert setup.attributes["urllib3.pool.proxy"] == proxied
    steps = spans.children(setup)
    # The socket connect is the proxy's; the TLS step takes in the CONNECT, as urllib3's does.
    assert [s.name for s in steps] == [
        f"socket connect 127.0.0.1:{proxy.port}",
        "TLS client handshake localhost",
    ]
    (tls,) = metrics.collect()["urllib3.pool.connection.tls_time"]
    assert tls.count == 1 and tls.sum > 0
