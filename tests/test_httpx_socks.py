"""httpx through a SOCKS5 proxy (httpcore's ``SOCKSProxy``, with ``socksio``): connections to
plain http and to https targets, sync and async, HTTP/2 with requests that come while their
connection is being opened, counted as the proxy and the servers count them, under the target's
pool key with ``socks5://host:port`` as ``urllib3.pool.proxy`` and the credentials nowhere.
Real httpx, a real loopback SOCKS5 proxy (tests/support/socks.py) and loopback servers."""

from __future__ import annotations

import asyncio
import gc
import json
import ssl
import warnings
from collections.abc import Iterator
from typing import Any

import pytest

import poolscope
from poolscope.loopback import LoopbackServer
from poolscope.reporting.report import json_ready

from .support.h2server import H2Server
from .support.metrics import Metrics
from .support.socks import SocksProxy

httpx = pytest.importorskip("httpx")
pytest.importorskip("socksio")

SECRET = "s0cks-9c2d"
CREATED = "urllib3.pool.connections.created"


@pytest.fixture
def socks() -> Iterator[SocksProxy]:
    with SocksProxy() as p:
        yield p


def via(socks: SocksProxy) -> str:
    return f"socks5://bob:{SECRET}@127.0.0.1:{socks.port}"


def row(url: str) -> Any:
    (pool,) = [p for p in poolscope.report().pools if p.origin == url]
    return pool


def test_a_sync_client_through_socks5_is_counted_as_the_proxy_counts(
    instrumented: Metrics,
    socks: SocksProxy,
    server: LoopbackServer,
    tls_server: LoopbackServer,
    ca_bundle: str,
) -> None:
    verify = ssl.create_default_context(cafile=ca_bundle)
    with httpx.Client(proxy=via(socks), verify=verify) as client:
        for url in (server.url, tls_server.url):
            for _ in range(3):
                assert client.get(url + "/x").text == "ok"
    assert (server.connections, tls_server.connections, socks.tunnels) == (1, 1, 2)
    for target in (server, tls_server):
        pool = row(target.url)
        assert (pool.requests, pool.created, pool.reused) == (target.requests, 1, 2)
        assert pool.proxy == socks.url and pool.failed == {}
        assert [c.close_reason for c in pool.connections] == ["pool_closed"]
    points = instrumented.collect()
    assert instrumented.value(points, CREATED, urllib3__pool__proxy=socks.url) == 2
    attributes = [dict(p.attributes) for ps in points.values() for p in ps]
    text = json.dumps(attributes) + json.dumps(json_ready(poolscope.report()), default=str)
    assert socks.users == ["bob", "bob"] and SECRET not in text and "bob" not in text


def test_an_async_client_over_http2_through_socks5_counts_streams_as_the_server(
    instrumented: Metrics, socks: SocksProxy
) -> None:
    # A SOCKS connection being opened is available to the other requests (HTTP/2 is asked
    # for): the five share it, one opening it, the others reuses that waited for its connect.
    async def run(server: H2Server) -> None:
        ctx = server.client_ssl_context()
        async with httpx.AsyncClient(proxy=via(socks), verify=ctx, http2=True) as client:
            for _ in range(2):
                await asyncio.gather(*[client.get(server.url + "/slow") for _ in range(5)])

    with H2Server("127.0.0.1") as server:
        asyncio.run(run(server))
        counted = server.requests, server.connections, server.peak_streams
    assert counted == (10, 1, 5) and (socks.connections, socks.tunnels) == (1, 1)
    pool = row(server.url)
    assert (pool.requests, pool.created, pool.streams_peak) == counted
    assert pool.reused == 9 and pool.proxy == socks.url


def test_a_target_the_socks_proxy_cannot_reach_is_a_failed_connect(
    instrumented: Metrics, socks: SocksProxy, refused_port: int
) -> None:
    async def run() -> None:
        async with httpx.AsyncClient(proxy=via(socks)) as client:
            with pytest.raises(httpx.ProxyError):
                await client.get(f"http://127.0.0.1:{refused_port}/")

    asyncio.run(run())
    # httpcore 1.0.9 leaves the socket of a SOCKS handshake that failed unclosed: collected here.
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        gc.collect()
    pool = row(f"http://127.0.0.1:{refused_port}")
    assert (pool.created, pool.requests, socks.connections, socks.tunnels) == (0, 0, 1, 0)
    assert pool.failed == {"httpcore.ProxyError": 1}
