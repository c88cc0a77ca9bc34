"""Every way a connection ends is reported once, with its reason, lifetime and requests."""

from __future__ import annotations

import gc
import logging
import time
import warnings
from collections.abc import Iterator

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer

from .support.threads import in_two_threads


class Records:
    """poolscope's records during the test itself, for this test's servers only.

    Connections of earlier tests' sessions may close (garbage-collected) at any time: they
    are told apart by their server port.
    """

    def __init__(self, caplog: pytest.LogCaptureFixture) -> None:
        self.caplog = caplog
        self.ports: set[int] = set()

    def watch(self, *servers: LoopbackServer) -> None:
        self.ports.update(s.port for s in servers)

    def __iter__(self) -> Iterator[logging.LogRecord]:
        return iter(
            r
            for r in self.caplog.records
            if hasattr(r, "poolscope_event") and r.server_port in self.ports
        )


@pytest.fixture
def closes(caplog: pytest.LogCaptureFixture) -> Records:
    gc.collect()
    caplog.set_level(logging.DEBUG, logger="poolscope")
    return Records(caplog)


def closed(records: Records) -> list[tuple[str, int]]:
    return [
        (r.close_reason, r.requests_served)
        for r in records
        if r.poolscope_event == "connection_closed"
    ]


def session(**adapter_kw: object) -> requests.Session:
    s = requests.Session()
    if adapter_kw:
        s.mount("http://", HTTPAdapter(**adapter_kw))  # type: ignore[arg-type]
    return poolscope.instrument_session(s, mode="logging")


def test_server_asked(closes: Records, server: LoopbackServer) -> None:
    closes.watch(server)
    s = session()
    s.get(server.url)
    s.get(server.url + "/close")
    assert closed(closes) == [("server_closed", 2)]


def test_found_dropped(closes: Records) -> None:
    with LoopbackServer("127.0.0.1", keepalive=0.1) as server:
        closes.watch(server)
        s = session()
        s.get(server.url)
        time.sleep(0.4)
        s.get(server.url)
        assert closed(closes) == [("dropped", 1)]
        dropped = [r for r in closes if r.poolscope_event == "connection_dropped"]
        assert len(dropped) == 1 and dropped[0].idle_time_s >= 0.3


def test_pool_full(closes: Records, server: LoopbackServer) -> None:
    closes.watch(server)
    s = session(pool_maxsize=1)
    in_two_threads(s, server.url + "/together")
    assert closed(closes) == [("pool_full", 1)]


def test_error_read_timeout(closes: Records, server: LoopbackServer) -> None:
    closes.watch(server)
    s = session()
    s.get(server.url)
    with pytest.raises(requests.ReadTimeout):
        s.get(server.url + "/hold", timeout=0.2)
    records = [r for r in closes if r.poolscope_event == "connection_closed"]
    assert [(r.close_reason, r.requests_served) for r in records] == [("error", 2)]
    assert records[0].error_type == "TimeoutError"
    server.release()


def test_pool_closed_by_session_close(closes: Records, server: LoopbackServer) -> None:
    closes.watch(server)
    s = session()
    s.get(server.url)
    s.get(server.url)
    s.close()
    gc.collect()
    assert closed(closes) == [("pool_closed", 2)]


def test_evicted_pool_collected(
    closes: Records, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    closes.watch(server, server_b)
    s = session(pool_connections=1)
    s.get(server.url)
    s.get(server_b.url)  # evicts A's pool; urllib3 closes its connection once it is collected
    gc.collect()
    assert closed(closes) == [("garbage_collected", 1)]


def test_a_connection_collected_with_its_pool_in_one_cycle(
    closes: Records, server: LoopbackServer
) -> None:
    # The weak reference that reports a connection collected is its recorder's too: a
    # reference held only by the pool's state would be collected with them, calling nothing,
    # and the connection would stay counted open for good.
    closes.watch(server)
    s = session()
    r = s.get(server.url, stream=True)  # its connection checked out, the response unread
    conn = r.raw.connection
    conn.cycle = (conn, r)  # only the collector can free it now
    del r
    s.close()  # the pool goes (its connection is not in its queue to close)
    del s
    stats = conn._poolscope.stats
    del conn
    assert stats.open == 1
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)  # its socket, collected unclosed
        gc.collect()
    assert closed(closes) == [("garbage_collected", 1)]
    assert stats.open == 0 and stats.unreturned == 1


def test_client_closed_unread_stream(closes: Records, server: LoopbackServer) -> None:
    closes.watch(server)
    s = session()
    r = s.get(server.url, stream=True)
    r.close()
    assert closed(closes) == [("client_closed", 1)]


def test_every_connection_is_closed_once(closes: Records, server: LoopbackServer) -> None:
    closes.watch(server)
    s = session(pool_maxsize=1)
    for _ in range(3):
        in_two_threads(s, server.url + "/together")
    s.get(server.url + "/close")
    s.close()
    gc.collect()
    events = [r.poolscope_event for r in closes]
    ids_opened = [r.connection_id for r in closes if r.poolscope_event == "connection_created"]
    ids_closed = [r.connection_id for r in closes if r.poolscope_event == "connection_closed"]
    assert sorted(ids_opened) == sorted(ids_closed)
    assert len(set(ids_closed)) == len(ids_closed) == server.connections
    assert events.count("connection_discarded") == 3


class ComparedConnection(urllib3.connection.HTTPConnection):
    """A connection class that compares its objects by address, so has no hash."""

    def __eq__(self, other: object) -> bool:
        return isinstance(other, ComparedConnection) and other.host == self.host


def test_connections_that_compare_equal_are_each_tracked(
    closes: Records, server: LoopbackServer
) -> None:
    # Each connection is tracked by its own state, not by its weak reference (which hashes and
    # compares as the connection does): two equal connections stay two, and none is refused.
    closes.watch(server)

    class ComparedPool(poolscope.InstrumentedHTTPConnectionPool):
        ConnectionCls = ComparedConnection

    pool = ComparedPool("127.0.0.1", server.port, maxsize=2, mode="logging")
    held = [pool.urlopen("GET", "/", preload_content=False) for _ in range(2)]
    assert held[0].connection == held[1].connection
    for r in held:
        r.read()
        r.release_conn()
    pool.close()
    assert closed(closes) == [("pool_closed", 1), ("pool_closed", 1)]
