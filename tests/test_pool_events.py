"""Each pool event, on real loopback servers, counted exactly and with the right attributes."""

from __future__ import annotations

import dataclasses
import threading
import time

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.config import get_recorder
from poolscope.core.events import PoolEvent
from poolscope.core.sink import Sink
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics


def instrumented(metrics: Metrics, **adapter_kw: object) -> requests.Session:
    s = requests.Session()
    if adapter_kw:
        s.mount("http://", HTTPAdapter(**adapter_kw))  # type: ignore[arg-type]
    return poolscope.instrument_session(s, meter_provider=metrics.provider)


def wait_until(condition: object, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():  # type: ignore[operator]
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached in time")
        time.sleep(0.005)


def test_https_records_connect_and_tls_time(
    metrics: Metrics, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    s = instrumented(metrics)
    for _ in range(3):
        assert s.get(tls_server.url, verify=ca_bundle).text == "ok"
    points = metrics.collect()
    attrs = {
        "url__scheme": "https",
        "server__address": "127.0.0.1",
        "server__port": tls_server.port,
    }
    assert metrics.value(points, "urllib3.pool.connections.created", **attrs) == 1
    assert metrics.value(points, "urllib3.pool.connections.reused", **attrs) == 2
    (create,) = points["urllib3.pool.connection.create_time"]
    (tls,) = points["urllib3.pool.connection.tls_time"]
    assert create.count == 1 and tls.count == 1
    assert 0 < tls.sum < create.sum < 5
    (idle,) = points["urllib3.pool.connection.idle_time"]
    assert idle.count == 2 and idle.sum >= 0
    assert tls_server.connections == 1


def test_plain_http_has_no_tls_time(metrics: Metrics, server: LoopbackServer) -> None:
    s = instrumented(metrics)
    s.get(server.url)
    points = metrics.collect()
    assert "urllib3.pool.connection.tls_time" not in points
    assert metrics.value(points, "urllib3.pool.connection.create_time") == 1


def test_stale_keepalive_connection_is_dropped_and_reconnected(metrics: Metrics) -> None:
    with LoopbackServer("127.0.0.1", keepalive=0.1) as server:
        s = instrumented(metrics)
        s.get(server.url)
        wait_until(lambda: server.connections == 1)
        time.sleep(0.4)  # the server closes the idle connection after 0.1 s
        assert s.get(server.url).text == "ok"
        points = metrics.collect()
        assert metrics.value(points, "urllib3.pool.connections.dropped") == 1
        assert metrics.value(points, "urllib3.pool.connections.created") == 2
        assert metrics.value(points, "urllib3.pool.connections.reused") == 0
        assert server.connections == 2


def test_connection_close_response_is_not_a_drop(metrics: Metrics, server: LoopbackServer) -> None:
    s = instrumented(metrics)
    s.get(server.url + "/close")
    s.get(server.url)  # urllib3 logs "Resetting dropped connection" here; it is not one
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connections.dropped") == 0
    assert metrics.value(points, "urllib3.pool.connections.created") == 2
    assert metrics.value(points, "http.client.connection.duration") == 1


def test_connect_failure_counts_error_type(metrics: Metrics, refused_port: int) -> None:
    s = instrumented(metrics)
    with pytest.raises(requests.ConnectionError):
        s.get(f"http://127.0.0.1:{refused_port}/")
    points = metrics.collect()
    etype = "urllib3.exceptions.NewConnectionError"
    assert metrics.value(points, "urllib3.pool.connections.failed", error__type=etype) == 1
    assert metrics.value(points, "urllib3.pool.connections.failed") == 1
    assert metrics.value(points, "urllib3.pool.connections.created") == 0
    assert metrics.value(points, "http.client.open_connections") == 0


def test_open_connections_active_and_idle(metrics: Metrics, server: LoopbackServer) -> None:
    s = instrumented(metrics)
    s.get(server.url)
    points = metrics.collect()
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="idle") == 1
    )
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="active") == 0
    )
    r = s.get(server.url, stream=True)  # not read: the connection stays checked out
    points = metrics.collect()
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="active") == 1
    )
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="idle") == 0
    )
    r.close()  # closing an unread response closes its connection
    s.close()
    points = metrics.collect()
    assert metrics.value(points, "http.client.open_connections") == 0
    assert metrics.value(points, "http.client.connection.duration") == 1


def test_pool_block_wait_is_visible_while_it_lasts(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = instrumented(metrics, pool_maxsize=1, pool_block=True)
    s.get(server.url)  # one open connection, now idle
    results: list[int] = []
    holder = threading.Thread(
        target=lambda: results.append(s.get(server.url + "/hold").status_code)
    )
    holder.start()
    wait_until(lambda: server.requests == 1 and _waiting(metrics) == 0 and _active(metrics) == 1)
    waiter = threading.Thread(target=lambda: results.append(s.get(server.url).status_code))
    waiter.start()
    # requests passes no pool_timeout: the waiter waits as long as the holder holds.
    wait_until(lambda: _waiting(metrics) == 1)
    time.sleep(0.2)
    assert waiter.is_alive()
    server.release()
    holder.join(10)
    waiter.join(10)
    assert results == [200, 200]
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.wait.pending") == 0
    (wait,) = points["urllib3.pool.connection.wait_time"]
    assert wait.count == 1 and wait.sum >= 0.2
    assert metrics.value(points, "urllib3.pool.connections.created") == 1
    assert metrics.value(points, "urllib3.pool.connections.reused") == 2
    assert metrics.value(points, "urllib3.pool.wait.timeouts") == 0
    assert server.connections == 1


def _waiting(metrics: Metrics) -> int:
    return int(metrics.value(metrics.collect(), "urllib3.pool.wait.pending"))


def _active(metrics: Metrics) -> int:
    points = metrics.collect()
    return int(
        metrics.value(points, "http.client.open_connections", http__connection__state="active")
    )


def test_wait_timeout_raises_empty_pool_error_and_counts(
    metrics: Metrics, server: LoopbackServer
) -> None:
    pool = poolscope.InstrumentedHTTPConnectionPool(
        "127.0.0.1", server.port, maxsize=1, block=True, meter_provider=metrics.provider
    )
    held = pool.urlopen("GET", "/", preload_content=False, release_conn=False)
    with pytest.raises(urllib3.exceptions.EmptyPoolError) as info:
        pool.urlopen("GET", "/", pool_timeout=0.05)
    assert str(info.value).startswith("HTTPConnectionPool(host='127.0.0.1', port=")
    held.release_conn()
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.wait.timeouts") == 1
    (wait,) = points["urllib3.pool.connection.wait_time"]
    assert wait.count == 1 and wait.sum >= 0.05
    pool.close()


def test_a_new_hosts_events_carry_every_field_in_its_place(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    # The recorder builds these three events with every field given by position (a call with
    # keywords costs twice as much): a field out of its place would show here.
    assert [f.name for f in dataclasses.fields(PoolEvent)] == [
        *("kind", "key", "connection_id", "duration", "tls_duration", "requests", "reason"),
        *("error_type", "pool_maxsize", "num_pools", "in_use", "timeout", "timing"),
        *("tls_version", "checked_out", "pool_id", "manager_id", "library"),
    ]
    seen: list[dict[str, object]] = []

    class Captured(Sink):
        kinds = frozenset(
            {poolscope.EventKind.CREATED, poolscope.EventKind.CLOSED, poolscope.EventKind.EVICTED}
        )

        def handle(self, event: PoolEvent) -> None:
            seen.append(dataclasses.asdict(event))

    get_recorder("otel", metrics.provider).add_sink(Captured())
    s = instrumented(metrics, pool_connections=1, pool_maxsize=3)
    s.get(server.url).close()
    s.get(server_b.url).close()  # evicts the first host's pool, which closes its connection
    first, second = (poolscope.PoolKey("http", srv.host, srv.port) for srv in (server, server_b))
    created, evicted, closed, created_b = seen
    pool_id, manager_id = created["pool_id"], created["manager_id"]
    assert isinstance(pool_id, int) and pool_id and isinstance(manager_id, int) and manager_id
    alike = {"pool_maxsize": 3, "num_pools": 1, "pool_id": pool_id, "manager_id": manager_id}
    alike |= {"in_use": None, "timeout": None, "library": "requests", "error_type": None}
    connection = created["connection_id"]
    assert isinstance(connection, int) and connection
    assert isinstance(created["duration"], float) and isinstance(closed["duration"], float)
    assert created == {
        **alike,
        **{"kind": poolscope.EventKind.CREATED, "key": first, "connection_id": connection},
        **{"duration": created["duration"], "tls_duration": None, "requests": 0},
        **{"reason": None, "timing": None, "tls_version": None, "checked_out": None},
    }
    assert evicted == {
        **alike,
        **{"kind": poolscope.EventKind.EVICTED, "key": first, "connection_id": None},
        **{"duration": None, "tls_duration": None, "requests": None, "reason": None},
        **{"timing": None, "tls_version": None, "checked_out": None},
    }
    assert closed == {
        **alike,
        **{"kind": poolscope.EventKind.CLOSED, "key": first, "connection_id": connection},
        **{"duration": closed["duration"], "tls_duration": None, "requests": 1},
        **{"reason": closed["reason"], "timing": None, "tls_version": None},
        **{"checked_out": False},
    }
    # Closed with its pool, as the pool went (closed, or collected first).
    gone = (poolscope.CloseReason.POOL_CLOSED, poolscope.CloseReason.GARBAGE_COLLECTED)
    assert closed["reason"] in gone
    assert created_b["key"] == second and created_b["pool_id"] != pool_id
