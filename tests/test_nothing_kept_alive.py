"""Closing ends the telemetry; poolscope keeps nothing alive."""

from __future__ import annotations

import gc
import weakref

import requests

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics


def test_nothing_keeps_sessions_pools_or_connections_alive(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    s.get(server.url)
    s.get(server_b.url)
    pm = s.get_adapter(server.url).poolmanager
    pools = [pm.pools[key] for key in pm.pools.keys()]
    conns = [c for p in pools for c in p.pool.queue if c is not None]
    assert len(conns) == 2
    refs = [weakref.ref(o) for o in (s, pm, *pools, *conns)]
    points = metrics.collect()
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="idle") == 2
    )
    s.close()
    del s, pm, pools, conns
    gc.collect()
    assert [r() for r in refs] == [None] * len(refs)
    points = metrics.collect()
    assert metrics.value(points, "http.client.open_connections") == 0
    assert metrics.value(points, "http.client.connection.duration") == 2  # both closed once
    assert metrics.value(points, "urllib3.pool.connections.created") == 2
