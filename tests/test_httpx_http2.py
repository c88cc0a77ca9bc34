"""httpx's pools over HTTP/2 (#30): one connection carries several requests at once, a stream
each. Real httpx with ``http2=True`` against a real HTTP/2 server on loopback (TLS with ALPN, and
cleartext with prior knowledge), sync and async: requests and connections counted as the
server counts them, the most requests on one connection at once, and requests that waited for
a stream when the server allows fewer at once, with advice that, applied, leaves none."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import poolscope
from poolscope.loopback import LoopbackServer

from .support.h2server import H2Server
from .support.metrics import Metrics

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")


def row(server: Any) -> Any:
    (pool,) = [p for p in poolscope.report().pools if p.origin == server.url]
    return pool


def advice(server: Any) -> dict[str, Any]:
    return {a.rule: a for a in poolscope.report().advice if a.origin == server.url}


def client_for(server: H2Server, **options: Any) -> Any:
    if server.url.startswith("https:"):
        return httpx.Client(http2=True, verify=server.client_ssl_context(), **options)
    return httpx.Client(http1=False, http2=True, **options)


def async_client_for(server: H2Server, **options: Any) -> Any:
    if server.url.startswith("https:"):
        return httpx.AsyncClient(http2=True, verify=server.client_ssl_context(), **options)
    return httpx.AsyncClient(http1=False, http2=True, **options)


async def at_once(client: Any, url: str, n: int) -> None:
    await asyncio.gather(*[client.get(url) for _ in range(n)])


# A sync client is used from one thread here: httpcore 1.0.9's HTTP/2 is not safe to share
# between threads (two threads can send their HEADERS out of stream order; the server then
# ends the connection). Requests at once are an AsyncClient's.


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_a_sync_client_over_http2_is_counted_as_the_server_counts(
    instrumented: Metrics, tls: bool
) -> None:
    with H2Server("127.0.0.1", tls=tls) as server:
        with client_for(server) as client:
            assert client.get(server.url + "/x").http_version == "HTTP/2"
            for _ in range(4):
                client.get(server.url + "/x")
            client.post(server.url + "/x", json={"a": 1})
        counted = server.requests, server.connections
        assert server.errors == []
    pool = row(server)
    assert (pool.requests, pool.created) == counted == (6, 1)
    assert pool.reused == 5 and pool.peak_in_use == 1 and pool.streams_peak == 1
    assert pool.stream_limit == 100 and pool.stream_waits == 0 and advice(server) == {}
    assert (pool.in_use, pool.idle) == (0, 0)  # the client closed its connection


@pytest.mark.parametrize("tls", [True, False], ids=["tls", "h2c"])
def test_an_async_client_over_http2_is_counted_as_the_server_counts(
    instrumented: Metrics, tls: bool
) -> None:
    async def run(server: H2Server) -> None:
        async with async_client_for(server) as client:
            await client.get(server.url + "/x")
            await at_once(client, server.url + "/slow", 8)
            await client.get(server.url + "/x")

    with H2Server("127.0.0.1", tls=tls) as server:
        asyncio.run(run(server))
        counted = server.requests, server.connections, server.peak_streams
        assert server.errors == []
    pool = row(server)
    assert (pool.requests, pool.created) == counted[:2] == (10, 1)
    assert pool.reused == 9 and counted[2] <= pool.streams_peak <= 8 and pool.peak_in_use == 1
    assert pool.stream_waits == 0 and advice(server) == {}
    assert (pool.in_use, pool.idle) == (0, 0)


def test_each_requests_time_on_its_stream_is_its_response_time(instrumented: Metrics) -> None:
    # One request to /slow (0.1 s) and, while it runs, three quick ones on the same connection:
    # four response times, one of 0.1 s, not one for the 0.1 s the connection was busy.
    async def run(server: H2Server) -> None:
        async with async_client_for(server) as client:
            await client.get(server.url + "/x")

            async def later(n: int, path: str) -> None:
                await asyncio.sleep(0.05 + 0.01 * n if n else 0)
                await client.get(server.url + path)

            await asyncio.gather(later(0, "/slow"), *[later(n, "/x") for n in (1, 2, 3)])

    with H2Server("127.0.0.1", tls=False) as server:
        asyncio.run(run(server))
        assert (server.requests, server.connections) == (5, 1) and server.errors == []
    pool = row(server)
    assert pool.streams_peak >= 2
    times = pool.response_time_s
    # The quick ones' own times (p50), not the 0.1 s their connection was busy; the upper
    # bound on max leaves room for a loaded machine.
    assert 0.1 <= times["max"] < 1 and times["p50"] < 0.05, times


def test_requests_beyond_the_servers_streams_wait_and_are_advised_a_number_that_holds(
    instrumented: Metrics,
) -> None:
    # The server allows 2 streams at once; 6 requests at once on the one connection httpx
    # keeps: 4 wait for a stream inside it. Each change offered, applied, ends the waits.
    async def run(server: H2Server, bound: int = 0) -> None:
        async with async_client_for(server) as client:
            await client.get(server.url + "/x")  # the connection, and the server's settings
            if not bound:
                await at_once(client, server.url + "/slow", 6)
                return
            semaphore = asyncio.Semaphore(bound)

            async def one() -> None:
                async with semaphore:
                    await client.get(server.url + "/slow")

            await asyncio.gather(*[one() for _ in range(6)])

    with H2Server("127.0.0.1", max_concurrent_streams=2) as server:
        asyncio.run(run(server))
        assert server.errors == []
    pool, said = row(server), advice(server)["http2_streams"]
    assert (pool.requests, pool.created) == (server.requests, server.connections) == (7, 1)
    assert (pool.stream_limit, pool.streams_peak, pool.stream_waits) == (2, 6, 4)
    assert server.peak_streams == 2 and pool.waits == 0
    points = instrumented.collect()
    port = int(server.url.rpartition(":")[2])
    assert Metrics.value(points, "urllib3.pool.http2.stream_waits", server__port=port) == 4
    assert said.evidence.startswith(
        f"4 request(s) to {server.url} waited for a free HTTP/2 stream: its server allows 2 "
        "at once on a connection, up to 6 requests wanted one at once"
    )
    report = poolscope.report()
    said_http2 = "HTTP/2: up to 6 requests at once on a connection (the server allows 2), 4 waited"
    assert said_http2 in report.render_text()
    assert f"<p class=http2>{said_http2} for a stream</p>" in report.render_html()
    assert said.change.startswith("Run at most 2 request(s) to it at once")
    assert said.change.endswith(
        "or turn HTTP/2 off for it (http2=False) with as many connections: httpx.Client("
        "limits=httpx.Limits(max_connections=6, max_keepalive_connections=6))."
    )
    # Applied: at most 2 at once, or HTTP/1.1 with 6 connections (an HTTP/1.1 server).
    with H2Server("127.0.0.1", max_concurrent_streams=2) as bounded:
        asyncio.run(run(bounded, bound=2))
    assert row(bounded).stream_waits == 0 and advice(bounded) == {}

    async def over_http1(url: str) -> None:
        limits = httpx.Limits(max_connections=6, max_keepalive_connections=6)
        async with httpx.AsyncClient(http2=False, limits=limits) as client:
            await client.get(url)
            await at_once(client, url + "/slow", 6)

    with LoopbackServer("127.0.0.1") as http1:
        asyncio.run(over_http1(http1.url))
    assert row(http1).waits == 0 and advice(http1) == {}


def test_requests_that_came_as_the_connection_opened_count_their_streams_once(
    instrumented: Metrics,
) -> None:
    # Five at once on a new client share the connection being opened; the quick one's response
    # closes before the slow ones have theirs, and the streams open at once afterwards are
    # the server's (the quick one's close left the connection idle a moment).
    async def run(server: H2Server) -> None:
        async with async_client_for(server) as client:
            slow = [client.get(server.url + "/slow") for _ in range(4)]
            await asyncio.gather(client.get(server.url + "/x"), *slow)
            await at_once(client, server.url + "/slow", 5)

    with H2Server("127.0.0.1") as server:
        asyncio.run(run(server))
        counted = server.requests, server.connections, server.peak_streams
    pool = row(server)
    assert (pool.requests, pool.created, pool.streams_peak) == counted == (10, 1, 5)
    assert pool.reused == 9 and (pool.in_use, pool.idle) == (0, 0)
