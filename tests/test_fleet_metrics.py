"""The numbers a fleet's advice needs, in the metrics (#28): each pool's size, and the most
connections in use at once since the previous collection (a high-water mark, so that a peak
between two scrapes is still exported). Real SDK objects, real sockets on loopback."""

from __future__ import annotations

import threading
import time

import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics


def test_a_peak_between_two_collections_is_still_exported(server: LoopbackServer) -> None:
    metrics = Metrics()
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=10))
    poolscope.instrument_session(session, meter_provider=metrics.provider)
    session.get(server.url).close()
    mine = {"server.port": server.port}
    first = metrics.collect()
    assert metrics.value(first, "urllib3.pool.connections.peak", **mine) == 1
    assert metrics.value(first, "urllib3.pool.connections.max", **mine) == 10

    # Six requests in flight at once, all answered and returned before the next collection.
    workers = [
        threading.Thread(target=lambda: session.get(server.url + "/hold").close()) for _ in range(6)
    ]
    for worker in workers:
        worker.start()
    deadline = time.monotonic() + 10
    while server.holding < 6 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert server.holding == 6
    server.release()
    for worker in workers:
        worker.join()

    second = metrics.collect()
    active = metrics.value(
        second, "http.client.open_connections", http__connection__state="active", **mine
    )
    assert active == 0  # what a scrape of the gauge sees now...
    assert metrics.value(second, "urllib3.pool.connections.peak", **mine) == 6  # ...and the peak
    third = metrics.collect()
    assert metrics.value(third, "urllib3.pool.connections.peak", **mine) == 0  # none in use since
