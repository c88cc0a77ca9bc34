"""The seed articles' scenarios, replayed on loopback hosts, with exact counts."""

from __future__ import annotations

import requests
from requests.adapters import HTTPAdapter
from urllib3 import PoolManager

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.threads import in_two_threads

CREATED = "urllib3.pool.connections.created"
REUSED = "urllib3.pool.connections.reused"
DISCARDED = "urllib3.pool.connections.discarded"
EVICTIONS = "urllib3.pool.evictions"


def session_with(metrics: Metrics, **adapter_kw: object) -> requests.Session:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(**adapter_kw))  # type: ignore[arg-type]
    return poolscope.instrument_session(s, meter_provider=metrics.provider)


def test_pool_connections_1_cycling_hosts_evicts(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    s = session_with(metrics, pool_connections=1)
    for url in (server.url, server_b.url, server.url):
        assert s.get(url).text == "ok"
    points = metrics.collect()
    assert metrics.value(points, CREATED) == 3
    assert metrics.value(points, REUSED) == 0
    assert metrics.value(points, EVICTIONS) == 2
    assert metrics.value(points, EVICTIONS, server__address="127.0.0.1") == 1
    assert metrics.value(points, EVICTIONS, server__address="127.0.0.2") == 1
    assert server.connections == 2 and server_b.connections == 1


def test_pool_connections_2_keeps_both_hosts(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    s = session_with(metrics, pool_connections=2)
    for url in (server.url, server_b.url, server.url):
        s.get(url)
    points = metrics.collect()
    assert metrics.value(points, CREATED) == 2
    assert metrics.value(points, REUSED) == 1
    assert metrics.value(points, REUSED, server__address="127.0.0.1") == 1
    assert metrics.value(points, EVICTIONS) == 0
    assert server.connections + server_b.connections == 2


def test_pool_maxsize_2_with_two_threads_twice(metrics: Metrics, server: LoopbackServer) -> None:
    s = session_with(metrics, pool_connections=1, pool_maxsize=2)
    in_two_threads(s, server.url + "/together")
    in_two_threads(s, server.url + "/together")
    points = metrics.collect()
    assert metrics.value(points, CREATED) == 2
    assert metrics.value(points, REUSED) == 2
    assert metrics.value(points, DISCARDED) == 0
    assert server.connections == 2


def test_pool_maxsize_1_with_two_threads_twice_discards(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = session_with(metrics, pool_connections=1, pool_maxsize=1)
    in_two_threads(s, server.url + "/together")
    in_two_threads(s, server.url + "/together")
    points = metrics.collect()
    assert metrics.value(points, CREATED) == 3
    assert metrics.value(points, REUSED) == 1
    assert metrics.value(points, DISCARDED) == 2
    assert server.connections == 3
    # One connection is left, idle in the pool; the discarded ones are closed.
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="idle") == 1
    )
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="active") == 0
    )
    closed = metrics.value(points, "http.client.connection.duration")
    assert closed == 2


def test_adapters_on_different_prefixes_are_independent(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_connections=1, pool_maxsize=2))
    s.mount(server_b.url, HTTPAdapter(pool_connections=1, pool_maxsize=1))
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    for _ in range(2):
        in_two_threads(s, server.url + "/together")
        in_two_threads(s, server_b.url + "/together")
    points = metrics.collect()
    # Host A through the maxsize=2 adapter: no discards; host B through maxsize=1: discards.
    assert metrics.value(points, DISCARDED, server__address="127.0.0.1") == 0
    assert metrics.value(points, DISCARDED, server__address="127.0.0.2") == 2
    assert metrics.value(points, CREATED, server__address="127.0.0.1") == 2
    assert metrics.value(points, CREATED, server__address="127.0.0.2") == 3
    # Each adapter caches one pool of its own: alternating hosts evicts nothing.
    assert metrics.value(points, EVICTIONS) == 0


class SourceAddressAdapter(HTTPAdapter):
    """The seed article's adapter: it builds its own PoolManager in init_poolmanager."""

    def __init__(self, source_address: tuple[str, int], **kwargs: object) -> None:
        self.source_address = source_address
        super().__init__(**kwargs)  # type: ignore[arg-type]

    def init_poolmanager(self, connections: int, maxsize: int, block: bool = False) -> None:  # type: ignore[override]
        self.poolmanager = PoolManager(
            num_pools=connections, maxsize=maxsize, block=block, source_address=self.source_address
        )


def test_custom_init_poolmanager_adapter_is_observed(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = requests.Session()
    adapter = SourceAddressAdapter(("127.0.0.1", 0), pool_connections=20, pool_maxsize=20)
    s.mount("http://", adapter)
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    for _ in range(3):
        s.get(server.url)
    points = metrics.collect()
    assert metrics.value(points, CREATED) == 1
    assert metrics.value(points, REUSED) == 2
    assert adapter.poolmanager.connection_pool_kw["source_address"] == ("127.0.0.1", 0)
