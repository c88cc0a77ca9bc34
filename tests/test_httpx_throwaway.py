"""httpx's twin of ``requests.get()``: ``httpx.get()`` (or a client made and closed per call)
builds a client, a pool and a new connection, a new TLS handshake on https, every call. The
report tells those clients apart (each httpcore pool is a manager, numbered with urllib3's) and
says, in httpx's words, to keep one client; applied, one connection serves every call. Real
httpx against loopback servers, each test with a recorder of its own."""

from __future__ import annotations

import asyncio
import ssl
from collections.abc import Iterator
from typing import Any

import pytest
import trustme

import poolscope
from poolscope.loopback import LoopbackServer

from .support.fake_openai import FakeOpenAI
from .support.metrics import Metrics

httpx = pytest.importorskip("httpx")

CALLS = 20


def row(server: LoopbackServer) -> Any:
    (pool,) = [p for p in poolscope.report().pools if p.origin == server.url]
    return pool


def advice(server: LoopbackServer) -> dict[str, Any]:
    return {a.rule: a for a in poolscope.report().advice if a.origin == server.url}


@pytest.fixture
def tls(ca: trustme.CA) -> Iterator[tuple[ssl.SSLContext, ssl.SSLContext]]:
    """The server's TLS context and the client's, which trusts it."""
    server = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1", "localhost").configure_cert(server)
    client = ssl.create_default_context()
    ca.configure_trust(client)
    yield server, client


def test_httpx_get_per_call_is_advised_one_client_and_one_client_opens_one_connection(
    instrumented: Metrics, tls: tuple[ssl.SSLContext, ssl.SSLContext]
) -> None:
    server_tls, client_tls = tls
    with LoopbackServer("127.0.0.1", ssl_context=server_tls) as per_call:
        for _ in range(CALLS):
            assert httpx.get(per_call.url, verify=client_tls).status_code == 200
        counted = per_call.requests, per_call.connections
    pool = row(per_call)
    assert (pool.requests, pool.created) == counted == (CALLS, CALLS)
    assert pool.reused == 0 and pool.library == "httpx"
    assert pool.manager is None and pool.manager_shares == ()  # 20 clients, all alike
    said = advice(per_call)
    assert list(said) == ["one_session"]
    assert said["one_session"].evidence == (
        f"{CALLS} separate httpx clients each opened their own connection to {per_call.url} and "
        f"closed it after one or two requests: {CALLS} connection(s) and as many TLS handshakes "
        "where one could have served them all (httpx.get() and httpx.post() make a new Client "
        "on every call, as does a new httpx.Client() or AsyncClient() per call)."
    )
    assert said["one_session"].change.startswith(
        f"Use one httpx.Client (or AsyncClient) for every call to {per_call.url} instead of "
        "httpx.get() per call"
    )
    assert said["one_session"].waste == CALLS - 1
    assert not poolscope.report().managers  # httpx clients keep no pools by host to list

    # The change applied: one client for the same calls.
    with LoopbackServer("127.0.0.1", ssl_context=server_tls) as reused:
        with httpx.Client(verify=client_tls) as client:
            for _ in range(CALLS):
                assert client.get(reused.url).status_code == 200
        counted = reused.requests, reused.connections
    pool = row(reused)
    assert (pool.requests, pool.created, pool.reused) == (CALLS, 1, CALLS - 1)
    assert counted == (CALLS, 1)
    assert advice(reused) == {}


def test_a_client_made_per_call_in_a_with_block_is_the_same(instrumented: Metrics) -> None:
    with LoopbackServer("127.0.0.1") as server:
        for _ in range(CALLS):
            with httpx.Client() as client:
                client.get(server.url)
        counted = server.requests, server.connections
    assert (row(server).requests, row(server).created) == counted == (CALLS, CALLS)
    evidence = advice(server)["one_session"].evidence
    assert evidence.startswith(f"{CALLS} separate httpx clients each opened their own connection")
    assert f": {CALLS} connection(s) where one could" in evidence  # http: no TLS handshakes


def test_an_async_client_per_call_is_advised_one_client_and_the_change_holds(
    instrumented: Metrics,
) -> None:
    async def per_call(url: str) -> None:
        for _ in range(CALLS):
            async with httpx.AsyncClient() as client:
                await client.get(url)

    async def one_client(url: str) -> None:
        async with httpx.AsyncClient() as client:
            for _ in range(CALLS):
                await client.get(url)

    with LoopbackServer("127.0.0.1") as server:
        asyncio.run(per_call(server.url))
        counted = server.requests, server.connections
    assert (row(server).requests, row(server).created) == counted == (CALLS, CALLS)
    said = advice(server)
    assert list(said) == ["one_session"] and said["one_session"].waste == CALLS - 1
    assert said["one_session"].evidence.startswith(f"{CALLS} separate httpx clients")
    assert said["one_session"].change.startswith("Use one httpx.Client (or AsyncClient)")

    with LoopbackServer("127.0.0.1") as server:
        asyncio.run(one_client(server.url))
        counted = server.requests, server.connections
    assert (row(server).requests, row(server).created) == counted == (CALLS, 1)
    assert advice(server) == {}


def test_a_few_clients_are_not_advised(instrumented: Metrics) -> None:
    # Fewer than five clients to one host: not worth a word (as for requests.get()).
    with LoopbackServer("127.0.0.1") as server:
        for _ in range(4):
            httpx.get(server.url)
    assert row(server).created == server.connections == 4
    assert advice(server) == {}


def test_an_openai_client_per_call_is_advised_in_openais_words(instrumented: Metrics) -> None:
    openai = pytest.importorskip("openai")
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with FakeOpenAI() as api:
        for _ in range(6):
            with openai.OpenAI(api_key="x", base_url=api.url, max_retries=0) as client:
                client.chat.completions.create(model="m", messages=messages)
        counted = api.requests, api.connections
    (pool,) = [p for p in poolscope.report().pools if api.url.startswith(p.origin)]
    assert (pool.requests, pool.created) == counted == (6, 6) and pool.library == "openai"
    (said,) = [a for a in poolscope.report().advice if api.url.startswith(a.origin)]
    assert said.rule == "one_session" and said.waste == 5
    assert said.evidence.startswith("6 separate openai clients each opened their own connection")
    assert "each new openai.OpenAI() or openai.AsyncOpenAI() makes an httpx client" in said.evidence
    assert said.change == (
        "Make one openai.OpenAI() (or openai.AsyncOpenAI()) when the program starts and reuse it "
        f"for every call to {pool.origin}, so its connections are reused."
    )


def test_httpx_and_requests_clients_per_call_to_one_host_are_each_told_in_their_words(
    instrumented: Metrics,
) -> None:
    import requests

    with LoopbackServer("127.0.0.1") as server:
        for _ in range(6):
            httpx.get(server.url)
            requests.get(server.url)
        assert server.connections == 12
    said = [a for a in poolscope.report().advice if a.rule == "one_session"]
    assert sorted(a.evidence.split(" each")[0] for a in said) == [
        "6 separate httpx clients",
        "6 separate sessions or PoolManagers",
    ]
    assert sorted(a.change.split(" ")[2] for a in said) == ["httpx.Client", "requests.Session()"]
