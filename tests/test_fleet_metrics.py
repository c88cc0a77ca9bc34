"""The numbers a fleet's advice needs, in the metrics (#28): each pool's size, and the most
connections in use at once since the previous collection (a high-water mark, so that a peak
between two scrapes is still exported). Real SDK objects, real sockets on loopback."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from typing import Any

import requests
import urllib3
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.prometheus import prom_query, wait_for


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


def test_diagnose_gives_from_prometheus_the_rule_and_number_the_report_gives(
    prometheus: tuple[str, int],
) -> None:
    # One process exporting to a real Prometheus (scraped every second): a requests Session
    # whose pool of 2 serves 6 requests at once, a urllib3 PoolManager whose pool of 1 serves
    # 3, and a healthy Session. `poolscope diagnose` finds the same rules and numbers as this
    # process's own report.
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    url, port = prometheus
    provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
    exposition = start_http_server(port, addr="127.0.0.1")
    try:
        with (
            LoopbackServer("127.0.0.1", together=6) as six,
            LoopbackServer("127.0.0.2", together=3) as three,
            LoopbackServer("127.0.0.3") as healthy,
        ):
            small = requests.Session()
            small.mount("http://", HTTPAdapter(pool_maxsize=2))
            poolscope.instrument_session(small, meter_provider=provider, report=True)
            tiny = poolscope.InstrumentedPoolManager(
                maxsize=1, timeout=urllib3.Timeout(connect=3.05, read=10), meter_provider=provider
            )
            fine = poolscope.instrument_session(requests.Session(), meter_provider=provider)
            # Every series exists, and is scraped, before the load: increase() counts only
            # what comes after a series' first sample.
            small.get(six.url, timeout=(3.05, 10)).close()
            tiny.request("GET", three.url)
            fine.get(healthy.url, timeout=(3.05, 10)).close()
            created = "urllib3_pool_connections_created_total"
            wait_for(lambda: len(prom_query(url, created)) >= 3, 30, "the first scrape")
            for _ in range(3):
                _at_once(6, lambda: small.get(six.url + "/together", timeout=(3.05, 10)).close())
                _at_once(3, lambda: tiny.request("GET", three.url + "/together"))
            fine.get(healthy.url, timeout=(3.05, 10)).close()
            peak = "urllib3_pool_connections_peak"
            wait_for(
                lambda: sorted(prom_query(url, f"max_over_time({peak}[5m])").values()) == [1, 3, 6],
                30,
                "the peaks scraped",
            )
            own = poolscope.report()
        out = subprocess.run(
            [
                *(sys.executable, "-m", "poolscope", "diagnose", "--prometheus", url),
                *("--range", "5m", "--format", "json"),
            ],
            capture_output=True,
            text=True,
            timeout=60,
        )
    finally:
        exposition[0].shutdown()
        exposition[0].server_close()
        provider.shutdown()
    assert out.returncode == 0, out.stderr
    fleet = json.loads(out.stdout)
    sized = {a["origin"]: a for a in fleet["advice"] if a["rule"] == "pool_maxsize"}
    assert set(sized) == {six.url, three.url}  # not the healthy host
    assert "Raise maxsize to 6: urllib3.PoolManager(maxsize=6)" in sized[six.url]["change"]
    assert "Raise maxsize to 3: urllib3.PoolManager(maxsize=3)" in sized[three.url]["change"]
    assert not [a for a in fleet["advice"] if healthy.url in a["origin"]]
    # This process's own report: the same rule, the same number (in requests' words for the
    # Session: the metrics do not say which library built a pool, and the report says so).
    (mine,) = [a for a in own.advice if a.rule == "pool_maxsize" and a.origin == six.url]
    assert "Raise pool_maxsize to 6" in mine.change
    assert any(
        "which library built each pool is not in the metrics" in i for i in fleet["incomplete"]
    )


def _at_once(n: int, call: Any) -> None:
    workers = [threading.Thread(target=call) for _ in range(n)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def test_diagnose_says_in_a_sentence_when_prometheus_cannot_be_reached(refused_port: int) -> None:
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "poolscope",
            "diagnose",
            "--prometheus",
            f"http://127.0.0.1:{refused_port}",
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 1 and out.stdout == ""
    assert out.stderr == (
        f"poolscope diagnose: Prometheus at http://127.0.0.1:{refused_port} could not be asked "
        "(no connection could be made). Check the URL (for example http://prometheus:9090) and "
        "that this machine can reach it.\n"
    )
