"""The numbers a fleet's advice needs, in the metrics (#28): each pool's size, and the most
connections in use at once since the previous collection (a high-water mark, so that a peak
between two scrapes is still exported). Real SDK objects, real sockets on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import re
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.prometheus import prom_query, run_prometheus_fleet, wait_for


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


SERVICE = """
import json, sys, threading, time
import requests, urllib3
from requests.adapters import HTTPAdapter
from opentelemetry.exporter.prometheus import PrometheusMetricReader
from opentelemetry.sdk.metrics import MeterProvider
from prometheus_client import start_http_server
import poolscope

port, kind, url, size, at_once = sys.argv[1], sys.argv[2], sys.argv[3], *map(int, sys.argv[4:])
provider = MeterProvider(metric_readers=[PrometheusMetricReader()])
start_http_server(int(port), addr="127.0.0.1")
if kind in ("requests", "keepalive"):
    session = requests.Session()
    session.mount("http://", HTTPAdapter(pool_maxsize=size))
    poolscope.instrument_session(session, meter_provider=provider, report=True)
    call = lambda path="": session.get(url + path, timeout=(3.05, 10)).close()
else:
    manager = urllib3.PoolManager(maxsize=size, timeout=urllib3.Timeout(connect=3.05))  # no read
    poolscope.instrument_pool_manager(manager, meter_provider=provider, report=True)
    call = lambda path="": manager.request("GET", url + path)
call()  # the series exist before the load: increase() counts what comes after
print("ready", flush=True)
sys.stdin.readline()
for _ in range(3):
    if kind == "keepalive":  # two quick reuses, then idle past the server's keep-alive
        call(), call(), time.sleep(0.6)
        continue
    workers = [threading.Thread(target=call, args=("/together",) if at_once > 1 else ())
               for _ in range(at_once)]
    [w.start() for w in workers]
    [w.join() for w in workers]
print(json.dumps({a.rule: a.change for a in poolscope.report().advice}), flush=True)
sys.stdin.readline()  # exporting until the test has asked Prometheus
"""


def test_diagnose_gives_for_a_fleet_the_rules_and_numbers_each_process_report_gives(
    tmp_path: pathlib.Path,
) -> None:
    # Three processes scraped by a real Prometheus (every second): a requests Session whose
    # pool of 2 serves 6 requests at once, a urllib3 PoolManager whose pool of 1 serves 3, and
    # a healthy one. `poolscope diagnose` gives the rules and numbers each process's own report
    # gives, and nothing for the healthy host.
    script = tmp_path / "service.py"
    script.write_text(SERVICE)
    # The healthy process is also a fleet of its own; the fourth process's server closes
    # connections idle for 0.3 s, and it leaves its connection idle for 0.6 s.
    jobs = ["app", "app", "healthy-app", "app"]
    fleet_of_three = contextlib.contextmanager(run_prometheus_fleet)(tmp_path, jobs)
    with fleet_of_three as (url, ports):
        with (
            LoopbackServer("127.0.0.1", together=6) as six,
            LoopbackServer("127.0.0.2", together=3) as three,
            LoopbackServer("127.0.0.3") as healthy,
            LoopbackServer("127.0.0.4", keepalive=0.3) as closing,
            contextlib.ExitStack() as stack,
        ):
            services = [
                stack.enter_context(
                    subprocess.Popen(
                        [sys.executable, str(script), str(port), kind, server.url, *sizes],
                        env={**os.environ, "POOLSCOPE_METRICS_USE_TIME": "1"},
                        stdin=subprocess.PIPE,
                        stdout=subprocess.PIPE,
                        text=True,
                    )
                )
                for port, kind, server, sizes in (
                    (ports[0], "requests", six, ("2", "6")),
                    (ports[1], "urllib3", three, ("1", "3")),
                    (ports[2], "requests", healthy, ("10", "1")),
                    (ports[3], "keepalive", closing, ("10", "1")),
                )
            ]
            for service in services:
                assert service.stdout is not None and service.stdout.readline() == "ready\n"
            created = "urllib3_pool_connections_created_total"
            wait_for(lambda: len(prom_query(url, created)) == 4, 30, "the first scrapes")
            own = []
            for service in services:
                assert service.stdin is not None and service.stdout is not None
                service.stdin.write("go\n")
                service.stdin.flush()
            for service in services:
                assert service.stdout is not None
                own.append(json.loads(service.stdout.readline()))
            peak = "max_over_time(urllib3_pool_connections_peak[5m])"
            wait_for(lambda: sorted(prom_query(url, peak).values()) == [1, 1, 3, 6], 30, "peaks")
            drops = "urllib3_pool_connection_dropped_idle_time_seconds_count"
            wait_for(lambda: sum(prom_query(url, drops).values()) == 3, 30, "the drops")
            out, healthy_out = (
                subprocess.run(
                    [
                        *(sys.executable, "-m", "poolscope", "diagnose", "--prometheus", url),
                        *("--job", job, "--range", "5m", "--format", "json"),
                    ],
                    capture_output=True,
                    text=True,
                    timeout=60,
                )
                for job in (".*", "healthy-app")
            )
            for service in services:
                assert service.stdin is not None
                service.stdin.close()
    assert out.returncode == 0, out.stderr
    fleet = json.loads(out.stdout)
    sized = {a["origin"]: a["change"] for a in fleet["advice"] if a["rule"] == "pool_maxsize"}
    assert set(sized) == {six.url, three.url}  # not the healthy host's, nor the idle one's
    assert not [a for a in fleet["advice"] if healthy.url in a["origin"]]
    # The same change, number and words as each process's own report: requests' for the
    # Session, urllib3's for the PoolManager (urllib3.pool.library names them); the timeout
    # for the manager sent with no read timeout, from the fleet's response times.
    six_change = "Raise pool_maxsize to 6: HTTPAdapter(pool_maxsize=6) (urllib3: PoolManager("
    assert sized[six.url] == own[0]["pool_maxsize"] == six_change + "maxsize=6))."
    assert sized[three.url] == own[1]["pool_maxsize"]
    assert own[1]["pool_maxsize"].startswith("Raise maxsize to 3: urllib3.PoolManager(maxsize=3)")
    (timeout,) = [a for a in fleet["advice"] if a["rule"] == "timeout"]
    assert timeout["origin"] == three.url
    assert timeout["change"] == own[1]["timeout"]
    assert "(4 times the p99, above the slowest)" in timeout["change"]
    assert set(own[0]) == {"pool_maxsize"} and own[2] == {}
    # The server's keep-alive limit, found from the idle times of reused and dropped
    # connections: the same rule and change, the times to the histograms' bucket bounds.
    (kept,) = [a for a in fleet["advice"] if a["rule"] == "keepalive"]
    assert kept["origin"] == closing.url and set(own[3]) == {"keepalive"}
    # 3 dropped: Prometheus' increase() extrapolates to the range's edges, by up to one.
    found = re.match(
        f"[34] pooled connection\\(s\\) to {closing.url} were found closed by the server: it "
        r"closes idle connections after between (\d+\.\d+) s and (\d+\.\d+) s of idling",
        kept["evidence"],
    )
    assert found, kept["evidence"]
    # Bucket bounds around its 0.3 s: reuses idled about a millisecond (more on a busy
    # machine), drops 0.6 s.
    low, high = map(float, found.groups())
    assert low < 0.3 <= high <= 1, kept["evidence"]
    assert kept["change"].split(", or keep")[0] == own[3]["keepalive"].split(", or keep")[0]
    # A fleet that is all healthy: its host, and no advice at all.
    assert healthy_out.returncode == 0, healthy_out.stderr
    healthy_fleet = json.loads(healthy_out.stdout)
    assert [p["origin"] for p in healthy_fleet["pools"]] == [healthy.url]
    assert healthy_fleet["advice"] == [] and healthy_fleet["healthy"]
    (said,) = [i for i in fleet["incomplete"] if i.startswith("from Prometheus")]
    assert "need poolscope run on one process" in said
    timed = "response times come from urllib3.pool.connection.use_time"
    assert any(i.startswith(timed) for i in fleet["incomplete"])


def test_response_times_are_exported_when_asked_and_left_to_the_report(
    server: LoopbackServer, monkeypatch: Any
) -> None:
    # Timing each request costs the reused-connection path: exported only when asked.
    def slow_requests(n: int) -> tuple[dict[str, list[Any]], requests.Session]:
        metrics = Metrics()
        session = requests.Session()
        poolscope.instrument_session(session, meter_provider=metrics.provider, report=True)
        for _ in range(n):
            session.get(server.url + "/slow").close()
        return metrics.collect(), session

    points, _ = slow_requests(2)
    assert "urllib3.pool.connection.use_time" not in points
    monkeypatch.setenv("POOLSCOPE_METRICS_USE_TIME", "1")
    points, _alive = slow_requests(5)
    (use,) = points["urllib3.pool.connection.use_time"]
    assert use.count == 5 and 0.5 <= use.sum < 5  # the server takes 0.1 s a request
    assert dict(use.attributes)["server.port"] == server.port
    # The collection took the metrics' samples, not the report's (its own window).
    (pool,) = [p for p in poolscope.report().pools if p.port == server.port]
    assert pool.requests == 7 and pool.response_time_s["p50"] >= 0.1


def test_the_library_that_built_each_hosts_pools_is_exported_once_per_host(
    server: LoopbackServer,
) -> None:
    # An info-style series: 1, with the library in poolscope.library, one per host.
    metrics = Metrics()
    session = requests.Session()
    poolscope.instrument_session(session, meter_provider=metrics.provider)
    session.get(server.url).close()
    manager = poolscope.InstrumentedPoolManager(meter_provider=metrics.provider)
    with LoopbackServer("127.0.0.2") as other:
        manager.request("GET", other.url)
    points = metrics.collect()["urllib3.pool.library"]
    libraries = {p.attributes["server.address"]: p.attributes["poolscope.library"] for p in points}
    assert libraries == {"127.0.0.1": "requests", "127.0.0.2": "urllib3"}
    assert [p.value for p in points] == [1, 1]


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


def test_diagnose_stopped_by_ctrl_c_while_prometheus_does_not_answer_says_so() -> None:
    # A loopback socket that listens and never accepts: the query waits for an answer.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen(1)
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "poolscope",
                "diagnose",
                "--prometheus",
                f"http://127.0.0.1:{silent.getsockname()[1]}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        # Readable once its connection is pending (never accepted): diagnose waits for the
        # answer, its Ctrl-C handler long in place.
        assert select.select([silent], [], [], 30)[0], "diagnose never connected"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130 and out == ""
    assert err == "poolscope diagnose: interrupted; no report.\n"


@pytest.mark.parametrize(
    ("buckets", "samples"),
    [
        ([], []),
        ([(float("inf"), 5.0)], []),  # no finite bound: no time to give
        ([(0.1, 2.0), (1.0, 3.0), (float("inf"), 4.0)], [0.1, 0.1, 1.0, 1.0]),  # beyond: 1.0
        ([(0.1, 100.0), (1.0, 90.0), (float("inf"), 100.0)], [0.1] * 100),  # extrapolated dips
        ([(0.1, 0.4), (1.0, 0.8), (5.0, 1.2), (float("inf"), 1.6)], [1.0, 5.0]),
        ([(1.0, 8192.0), (float("inf"), 8192.0)], [1.0] * 4096),  # at most 4,096, in proportion
    ],
    ids=["empty", "only +Inf", "beyond the last bound", "a dip", "fractions", "many"],
)
def test_histogram_buckets_become_time_samples_at_their_bounds(
    buckets: list[tuple[float, float]], samples: list[float]
) -> None:
    from poolscope.cli.diagnose import _samples

    assert _samples(buckets) == samples
