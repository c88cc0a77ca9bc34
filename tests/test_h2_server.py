"""The HTTP/2 test server (tests/support/h2server.py) against plain httpx with ``http2=True``,
no poolscope: what it counts is what httpx did, over TLS (ALPN "h2") and cleartext h2c, so
tests of poolscope's HTTP/2 counts can take its numbers as the truth."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from typing import Any

import pytest

httpx = pytest.importorskip("httpx")
pytest.importorskip("h2")

from .support.h2server import H2Server  # noqa: E402  (needs h2, skipped above without it)


def client_for(server: H2Server, **kwargs: Any) -> Any:
    if server.scheme == "https":
        return httpx.Client(http2=True, verify=server.client_ssl_context(), **kwargs)
    return httpx.Client(http1=False, http2=True, **kwargs)


def async_client_for(server: H2Server) -> Any:
    if server.scheme == "https":
        return httpx.AsyncClient(http2=True, verify=server.client_ssl_context())
    return httpx.AsyncClient(http1=False, http2=True)


def at_once(server: H2Server, path: str, n: int) -> list[Any]:
    """``n`` GETs at once (asyncio.gather on one AsyncClient): each one's status code, or the
    exception it raised. Not threads on a sync Client: httpcore 1.0's sync HTTP/2 connection
    lets threads touch its h2 state unlocked (stream ids can go out of order on the wire)."""

    async def one(client: Any) -> Any:
        try:
            return (await client.get(server.url + path)).status_code
        except httpx.HTTPError as exc:
            return exc

    async def all_of_them() -> list[Any]:
        async with async_client_for(server) as client:
            return list(await asyncio.gather(*[one(client) for _ in range(n)]))

    return asyncio.run(all_of_them())


@pytest.fixture(params=[True, False], ids=["tls", "h2c"])
def tls(request: pytest.FixtureRequest) -> bool:
    return bool(request.param)


def test_sequential_requests_share_one_connection(tls: bool) -> None:
    with H2Server(tls=tls) as server, client_for(server) as client:
        responses = [client.get(f"{server.url}/{i}") for i in range(5)]
        posted = client.post(server.url + "/items", json={"a": 1})
    assert {(r.status_code, r.http_version, r.text) for r in responses} == {(200, "HTTP/2", "ok")}
    assert posted.json() == {} and posted.headers["content-type"] == "application/json"
    assert (server.connections, server.requests, server.per_connection) == (1, 6, [6])
    assert server.peak_streams == 1 and server.errors == []


def test_concurrent_streams_on_one_connection(tls: bool) -> None:
    with H2Server(tls=tls) as server:
        outcomes = at_once(server, "/slow", 6)
    assert (server.errors, server.protocol_errors, outcomes) == ([], [], [200] * 6)
    assert (server.connections, server.requests) == (1, 6)
    assert server.peak_streams >= 2  # 6 here, in practice


def test_the_server_caps_streams_and_httpx_queues_within_the_connection(tls: bool) -> None:
    with H2Server(tls=tls, max_concurrent_streams=2) as server:
        started = time.monotonic()
        outcomes = at_once(server, "/slow", 6)
        took = time.monotonic() - started
    assert (server.errors, server.protocol_errors, outcomes) == ([], [], [200] * 6)
    assert server.peak_streams == 2 and server.requests == 6
    assert server.per_connection == [6]  # queued inside the one connection, not a second one
    assert took >= 0.3  # three rounds of two


def test_hold_waits_for_release_without_holding_up_other_streams() -> None:
    # An AsyncClient: httpx's sync HTTP/2 lets the thread reading for /hold keep the connection's
    # read lock while it waits, so a second thread's answer can sit unread until /hold's comes.
    async def hold_then_another(server: H2Server) -> float:
        async with async_client_for(server) as client:
            held = asyncio.create_task(client.get(server.url + "/hold"))
            deadline = time.monotonic() + 5
            while server.holding == 0 and time.monotonic() < deadline:
                await asyncio.sleep(0.01)
            started = time.monotonic()
            assert (await client.get(server.url)).status_code == 200
            took = time.monotonic() - started
            assert server.holding == 1
            server.release()
            assert (await held).status_code == 200
            return took

    with H2Server() as server:
        took = asyncio.run(hold_then_another(server))
    assert took < 0.5  # not the 1 s of /hold
    assert (server.connections, server.requests, server.peak_streams) == (1, 2, 2)


def test_an_http1_only_client_is_turned_away_and_not_counted() -> None:
    with H2Server() as server, httpx.Client(verify=server.client_ssl_context()) as http1:
        with pytest.raises(httpx.HTTPError):  # its ALPN offers no "h2": closed after TLS
            http1.get(server.url)
        with client_for(server) as client:
            assert client.get(server.url).http_version == "HTTP/2"
    assert (server.connections, server.requests, server.errors) == (1, 1, [])


def test_a_client_that_gives_up_on_a_stream_and_closes_is_no_trouble() -> None:
    with H2Server() as server:
        with client_for(server, timeout=httpx.Timeout(5, read=0.02)) as client:
            with pytest.raises(httpx.ReadTimeout):
                client.get(server.url + "/slow")
        time.sleep(0.2)  # /slow answers into a connection the client has closed
        with client_for(server) as client:
            assert client.get(server.url).status_code == 200
    assert (server.connections, server.requests, server.errors) == (2, 1, [])


def test_closing_with_a_stream_waiting_in_hold_is_quick() -> None:
    outcomes: list[BaseException | int] = []

    def held(client: Any, url: str) -> None:
        try:
            outcomes.append(client.get(url).status_code)
        except httpx.HTTPError as exc:
            outcomes.append(exc)

    with H2Server() as server, client_for(server) as client:
        waiting = threading.Thread(target=held, args=(client, server.url + "/hold"))
        waiting.start()
        deadline = time.monotonic() + 5
        while server.holding == 0 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert server.holding == 1
        started = time.monotonic()
        server.close()
        closed_in = time.monotonic() - started
        waiting.join(2)
    assert closed_in < 0.5 and not waiting.is_alive()
    assert len(outcomes) == 1 and isinstance(outcomes[0], httpx.HTTPError)  # GOAWAY, then EOF
    assert (server.connections, server.requests, server.errors) == (1, 0, [])


def raw_h2c(server: H2Server, send: Any) -> list[Any]:
    """A raw h2 client on cleartext: ``send(state)`` queues its frames, all sent at once; what
    the server sent until it closed the connection (within 2 s), as h2 events."""
    import h2.config
    import h2.connection
    import h2.exceptions

    state = h2.connection.H2Connection(h2.config.H2Configuration(client_side=True))
    state.initiate_connection()
    send(state)
    received = b""
    with socket.create_connection((server.host, server.port), timeout=2) as sock:
        sock.sendall(state.data_to_send())
        while data := sock.recv(65536):
            received += data
    try:
        return list(state.receive_data(received))
    except h2.exceptions.ProtocolError:  # this client said GOAWAY itself: nothing to read
        return []


def test_a_client_over_the_stream_limit_or_saying_goaway_is_closed_cleanly() -> None:
    import h2.errors
    import h2.events

    def three_streams(state: Any) -> None:  # before the server's SETTINGS could be read
        for stream_id in (1, 3, 5):
            state.send_headers(
                stream_id,
                [(":method", "GET"), (":scheme", "http"), (":authority", "x"), (":path", "/hold")],
                end_stream=True,
            )

    with H2Server(tls=False, max_concurrent_streams=2) as server:
        over = raw_h2c(server, three_streams)
        goaway = raw_h2c(server, lambda state: state.close_connection())
    (terminated,) = [e for e in over if isinstance(e, h2.events.ConnectionTerminated)]
    assert terminated.error_code == h2.errors.ErrorCodes.PROTOCOL_ERROR
    assert [type(e).__name__ for e in server.protocol_errors] == ["TooManyStreamsError"]
    assert not any(isinstance(e, h2.events.ResponseReceived) for e in over + goaway)
    assert (server.connections, server.requests, server.errors) == (2, 0, [])
