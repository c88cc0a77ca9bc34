"""httpx through an HTTP proxy (httpcore's ``HTTPProxy``): requests forwarded to the proxy
(plain http targets) and tunnelled through it (``CONNECT``, then TLS to the target), sync and
async, counted as the proxy and the servers count them: connections created, reused and closed
and requests, each once, under the target's pool key with the proxy's ``scheme://host:port``
as ``urllib3.pool.proxy``, and the proxy's credentials nowhere. Real httpx, a real loopback
proxy (tests/support/proxy.py) and loopback servers."""

from __future__ import annotations

import asyncio
import json
import ssl
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

import poolscope
from poolscope.loopback import LoopbackServer
from poolscope.reporting.report import json_ready

from .support.h2server import H2Server
from .support.metrics import Metrics
from .support.proxy import Proxy

httpx = pytest.importorskip("httpx")

SECRET = "s3cret-7f1e"  # the proxy's password: in no attribute, in no report
CREATED = "urllib3.pool.connections.created"
REUSED = "urllib3.pool.connections.reused"
CLOSED = "http.client.connection.duration"  # one point per connection closed


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy() as p:
        yield p


def via(proxy: Proxy) -> str:
    return f"http://alice:{SECRET}@127.0.0.1:{proxy.port}"


def row(url: str) -> Any:
    (pool,) = [p for p in poolscope.report().pools if p.origin == url]
    return pool


def eventually(condition: Callable[[], bool]) -> bool:
    """The proxy's threads see a client's close a moment after it happens."""
    deadline = time.monotonic() + 5
    while not condition() and time.monotonic() < deadline:
        time.sleep(0.01)
    return condition()


def together(client: Any, url: str, n: int) -> None:
    workers = [threading.Thread(target=lambda: client.get(url).close()) for _ in range(n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def client_context(ca_bundle: str) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=ca_bundle)


def assert_counted_as_the_proxy(
    pool: Any, metrics: Metrics, proxy: Proxy, requests: int, connections: int
) -> None:
    """The report and the metrics say what the proxy saw, once, under the proxy's address."""
    assert pool.proxy == proxy.url
    assert (pool.requests, pool.created) == (requests, connections) == (requests, proxy.connections)
    assert pool.reused == requests - connections > 0
    assert eventually(lambda: proxy.closed == proxy.connections)
    assert [c.close_reason for c in pool.connections] == ["pool_closed"] * connections
    points = metrics.collect()
    at = {"server__port": pool.port, "urllib3__pool__proxy": proxy.url}
    assert metrics.value(points, CREATED, **at) == connections
    assert metrics.value(points, REUSED, **at) == requests - connections
    assert metrics.value(points, CLOSED, **at) == connections


def test_a_sync_client_forwarding_through_a_proxy_is_counted_as_the_proxy_counts(
    instrumented: Metrics, proxy: Proxy
) -> None:
    with LoopbackServer("127.0.0.1", together=3) as server:
        with httpx.Client(proxy=via(proxy)) as client:
            for _ in range(5):
                assert client.get(server.url + "/x").text == "ok"
            together(client, server.url + "/together", 3)
        counted = server.requests, server.connections
    assert counted == (proxy.forwarded, proxy.connections) == (8, 3) and proxy.tunnels == 0
    pool = row(server.url)  # the target's pool: httpcore keeps a proxy's connections per target
    assert_counted_as_the_proxy(pool, instrumented, proxy, 8, 3)
    assert pool.peak_in_use == 3 and pool.discarded == 0 and pool.failed == {}


def test_an_async_client_forwarding_through_a_proxy_is_counted_as_the_proxy_counts(
    instrumented: Metrics, proxy: Proxy
) -> None:
    async def run(url: str) -> None:
        async with httpx.AsyncClient(proxy=via(proxy)) as client:
            for _ in range(4):
                await client.get(url + "/x")
            await asyncio.gather(*[client.get(url + "/slow") for _ in range(3)])

    with LoopbackServer("127.0.0.1") as server:
        asyncio.run(run(server.url))
        counted = server.requests, server.connections
    assert counted == (proxy.forwarded, proxy.connections) == (7, 3)
    pool = row(server.url)
    assert_counted_as_the_proxy(pool, instrumented, proxy, 7, 3)
    assert pool.peak_in_use == 3


def test_a_sync_client_tunnelling_through_a_proxy_is_counted_as_the_proxy_counts(
    instrumented: Metrics, proxy: Proxy, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    with httpx.Client(proxy=via(proxy), verify=client_context(ca_bundle)) as client:
        for _ in range(4):
            assert client.get(tls_server.url + "/x").text == "ok"
        together(client, tls_server.url + "/together", 2)
    assert (tls_server.requests, tls_server.connections) == (6, 2)
    assert (proxy.tunnels, proxy.connections, proxy.forwarded) == (2, 2, 0)
    pool = row(tls_server.url)
    assert pool.scheme == "https"
    assert_counted_as_the_proxy(pool, instrumented, proxy, 6, 2)
    assert pool.peak_in_use == 2 and pool.connect_time_s["max"] > 0


def test_an_async_client_tunnelling_through_a_proxy_is_counted_as_the_proxy_counts(
    instrumented: Metrics, proxy: Proxy, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    async def run() -> None:
        ctx = client_context(ca_bundle)
        async with httpx.AsyncClient(proxy=via(proxy), verify=ctx) as client:
            for _ in range(3):
                await client.get(tls_server.url + "/x")
            await asyncio.gather(*[client.get(tls_server.url + "/slow") for _ in range(3)])

    asyncio.run(run())
    assert (tls_server.requests, tls_server.connections) == (6, 3)
    assert (proxy.tunnels, proxy.connections) == (3, 3)
    assert_counted_as_the_proxy(row(tls_server.url), instrumented, proxy, 6, 3)


def test_http2_tunnels_carry_the_requests_as_streams_as_the_server_counts(
    instrumented: Metrics, proxy: Proxy
) -> None:
    # Five at once on a new client: a tunnel not yet open is not available to another request
    # (httpcore asks its connection to the proxy, an HTTP/1.1 one), so each opens one; the next
    # five are streams on the open ones.
    async def run(server: H2Server) -> None:
        ctx = server.client_ssl_context()
        async with httpx.AsyncClient(proxy=via(proxy), verify=ctx, http2=True) as client:
            for _ in range(2):
                responses = await asyncio.gather(
                    *[client.get(server.url + "/slow") for _ in range(5)]
                )
                assert {r.http_version for r in responses} == {"HTTP/2"}

    with H2Server("127.0.0.1") as server:
        asyncio.run(run(server))
        counted = server.requests, server.connections, server.peak_streams
    assert counted[:2] == (10, 5) and (proxy.tunnels, proxy.connections) == (5, 5)
    pool = row(server.url)
    assert (pool.requests, pool.created, pool.streams_peak) == counted
    assert pool.reused == 5 and pool.proxy == proxy.url


def test_the_proxys_credentials_are_in_no_attribute_and_no_report(
    instrumented: Metrics,
    proxy: Proxy,
    server: LoopbackServer,
    tls_server: LoopbackServer,
    ca_bundle: str,
) -> None:
    with httpx.Client(proxy=via(proxy), verify=client_context(ca_bundle)) as client:
        client.get(server.url)
        client.get(tls_server.url)
    assert len(proxy.auth_seen) == 2  # the proxy was asked with them, once a connection
    attributes = [dict(p.attributes) for points in instrumented.collect().values() for p in points]
    proxied = [a for a in attributes if a.get("urllib3.pool.proxy") == proxy.url]
    assert {a["server.port"] for a in proxied} == {server.port, tls_server.port}
    text = json.dumps(attributes) + json.dumps(json_ready(poolscope.report()), default=str)
    assert SECRET not in text and "alice" not in text


def test_one_client_with_a_proxy_in_its_mounts_instrumented_on_its_own(
    metrics: Metrics, proxy: Proxy, server: LoopbackServer
) -> None:
    mounts = {"http://": httpx.HTTPTransport(proxy=via(proxy))}
    with httpx.Client(mounts=mounts) as client:
        poolscope.instrument_httpx_client(client, meter_provider=metrics.provider)
        for _ in range(3):
            client.get(server.url)
    points = metrics.collect()
    at = {"server__port": server.port, "urllib3__pool__proxy": proxy.url}
    counted = [metrics.value(points, name, **at) for name in (CREATED, REUSED, CLOSED)]
    assert counted == [1, 2, 1] and (proxy.connections, proxy.forwarded) == (1, 3)


def test_a_forwarded_connection_idle_past_keepalive_expiry_closes_as_idle_expired(
    instrumented: Metrics, proxy: Proxy, server: LoopbackServer
) -> None:
    limits = httpx.Limits(keepalive_expiry=0.05)
    with httpx.Client(proxy=via(proxy), limits=limits) as client:
        client.get(server.url)
        time.sleep(0.2)
        client.get(server.url)
    pool = row(server.url)
    assert (pool.created, pool.reused, proxy.connections) == (2, 0, 2)
    assert [c.close_reason for c in pool.connections] == ["idle_expired", "pool_closed"]


def test_a_tunnel_the_proxy_refuses_is_a_failed_connect(
    instrumented: Metrics, proxy: Proxy, refused_port: int
) -> None:
    with httpx.Client(proxy=via(proxy)) as client, pytest.raises(httpx.ProxyError, match="502"):
        client.get(f"https://127.0.0.1:{refused_port}/")
    pool = row(f"https://127.0.0.1:{refused_port}")
    assert (pool.created, pool.requests, proxy.tunnels, proxy.connections) == (0, 0, 0, 1)
    assert pool.failed == {"httpcore.ProxyError": 1}


def test_the_programs_own_trace_callback_still_sees_every_step(
    instrumented: Metrics, proxy: Proxy, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    seen: list[str] = []

    def theirs(name: str, info: dict[str, Any]) -> None:
        seen.append(name)

    with httpx.Client(proxy=via(proxy), verify=client_context(ca_bundle)) as client:
        request = client.build_request("GET", tls_server.url, extensions={"trace": theirs})
        client.send(request)
    assert request.extensions["trace"] is theirs  # poolscope's callback was never in it
    steps = [name for name in seen if name.endswith(".started")]
    assert steps[:4] == [
        "connection.connect_tcp.started",
        "http11.send_request_headers.started",  # the CONNECT
        "http11.send_request_body.started",
        "http11.receive_response_headers.started",
    ]
    assert "proxy.start_tls.started" in steps and "http11.response_closed.started" in steps
    assert row(tls_server.url).created == 1
