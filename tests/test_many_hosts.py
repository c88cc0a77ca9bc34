"""Many hosts (#26): memory flat, the report short and exact, and hosts folded past the limit.

The long sweeps run benchmarks/sweep.py, a program that asks thousands of distinct host names
(each resolved to 127.0.0.1 in that program) once each, against benchmarks/hosts_server.py,
which counts the connections and requests it accepts. The folding tests run in this process
with a small ``POOLSCOPE_MAX_HOSTS`` and the same name resolution.
"""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
import requests

import poolscope
from poolscope.core.folding import OTHER_HOSTS
from poolscope.loopback import LoopbackServer

from .support.binaries import CHROMIUM_FLAGS, require
from .support.metrics import Metrics
from .support.names import series, url

ROOT = pathlib.Path(__file__).resolve().parent.parent
BENCHMARKS = ROOT / "benchmarks"


@pytest.fixture(scope="module")
def hosts_server() -> Iterator[int]:
    """benchmarks/hosts_server.py, in a process of its own; yields its port."""
    proc = subprocess.Popen(
        [sys.executable, str(BENCHMARKS / "hosts_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None and proc.stdin is not None
    try:
        yield int(proc.stdout.readline())
    finally:
        proc.stdin.close()
        proc.wait(10)
        proc.stdout.close()


def served(port: int) -> tuple[int, int]:
    """The connections and requests hosts_server.py accepted so far."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/_count", timeout=10) as answer:
        connections, requests_ = answer.read().split()
    return int(connections), int(requests_)


def sweep(port: int, mode: str, hosts: int, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, str(BENCHMARKS / "sweep.py"), "--port", str(port)),
            *("--mode", mode, "--hosts", str(hosts), *args),
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr
    result: dict[str, Any] = json.loads(out.stdout)
    return result


@pytest.mark.parametrize("mode", ["metrics", "report"])
def test_memory_stays_flat_over_20000_hosts(hosts_server: int, mode: str) -> None:
    # Python's traced memory after 5,000 hosts and after 20,000, each after a full collection:
    # what poolscope keeps per host ever seen (before folding: 5-10 KB) would be 75-150 MB.
    out = sweep(hosts_server, mode, 20_000, "--checkpoint", "5000", "--tracemalloc")
    growth = out["traced_at_end"] - out["traced_at_checkpoint"]
    assert growth < 200_000, out  # under 14 bytes a host
    assert out["totals"]["requests"] == 20_000


def test_report_over_20000_hosts_is_quick_short_and_exact(
    hosts_server: int, tmp_path: pathlib.Path
) -> None:
    page = tmp_path / "report.html"
    before = served(hosts_server)
    out = sweep(hosts_server, "report", 20_000, "--crowded", "1000", "--html", str(page))
    after = served(hosts_server)
    connections, requests_ = (a - b for a, b in zip(after, before, strict=True))
    assert out["report_s"] < 0.5, out  # built and rendered as text
    assert out["report_lines"] < 200, out
    assert out["folded_hosts"] > 19_000, out
    assert out["totals"]["requests"] == requests_ == 20_000 + 3 * 20
    assert out["totals"]["created"] == connections
    assert out["totals"]["discarded"] == out["warned_full"] > 0
    # The page opens in a real browser as it is: 40 hosts drawn, one line for the others.
    assert page.stat().st_size < 1_000_000
    chromium = require("chromium", "chromium")
    dom = subprocess.run(
        [
            *(chromium, *CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"),
            *("--dump-dom", page.as_uri()),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert dom.stdout.count('<section class="pool">') == 40
    (rest,) = re.findall(r'<p class="rest">(\d+) other host\(s\) \((\d+) of them', dom.stdout)
    assert int(rest[0]) == 20_000 - 40 and int(rest[1]) == out["folded_hosts"]


# -- folding, in this process ---------------------------------------------------------------


def test_folding_keeps_every_counter_monotonic_with_one_other_hosts_series(
    server: LoopbackServer, many_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSCOPE_MAX_HOSTS", "8")
    metrics = Metrics()
    session = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    last: dict[tuple[Any, ...], int] = {}
    other_seen = []
    for n in range(1, 41):
        session.get(url(server, n)).close()
        points = metrics.collect()
        created = series(points, "urllib3.pool.connections.created")
        for one, value in created.items():
            assert value >= last.get(one, 0), (n, one)  # never goes down
        last.update(created)
        # Every connection the server accepted is in exactly one series.
        assert sum(created.values()) == server.connections == n
        other = [s for s in created if ("poolscope.other_hosts", True) in s]
        other_seen.append(len(other))
        assert len(created) <= 8 + 1  # its own series for at most max_hosts hosts, then one
    assert other_seen[:8] == [0] * 8 and set(other_seen[9:]) == {1}
    (other,) = [s for s in last if ("poolscope.other_hosts", True) in s]
    assert other == (("poolscope.other_hosts", True),)  # no server.address of its own
    points = metrics.collect()
    durations = points["http.client.connection.duration"]  # histograms: the same series
    assert {tuple(sorted(p.attributes.items())) for p in durations} <= set(last)


def test_a_host_with_a_live_pool_is_never_folded(
    server: LoopbackServer, many_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSCOPE_MAX_HOSTS", "8")
    metrics = Metrics()
    kept = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    sweeper = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    kept.get(url(server, 0)).close()  # its pool stays in kept's manager, its connection idle
    for n in range(1, 60):
        sweeper.get(url(server, n)).close()
    kept.get(url(server, 0)).close()
    points = metrics.collect()
    mine = {"server.address": "h0.hosts.test", "server.port": server.port}
    assert metrics.value(points, "urllib3.pool.connections.created", **mine) == 1
    assert metrics.value(points, "urllib3.pool.connections.reused", **mine) == 1
    total = metrics.value(points, "urllib3.pool.connections.created")
    assert total == server.connections == 60


REPORT_SCRIPT = """
import socket, sys, threading, requests
from requests.adapters import HTTPAdapter
real = socket.getaddrinfo
def resolve(host, *a, **k):
    return real("127.0.0.1" if str(host).endswith(".hosts.test") else host, *a, **k)
socket.getaddrinfo = resolve
port = sys.argv[1]
small = requests.Session(); small.mount("http://", HTTPAdapter(pool_maxsize=1))
def crowd():
    barrier = threading.Barrier(3)
    def one():
        barrier.wait(); small.get(f"http://crowded.hosts.test:{port}/together").content
    workers = [threading.Thread(target=one) for _ in range(3)]
    [w.start() for w in workers]; [w.join() for w in workers]
for _ in range(3):
    crowd()
s = requests.Session()
for n in range(300):
    s.get(f"http://h{n}.hosts.test:{port}/").content
"""


def test_advice_for_the_hosts_that_keep_their_rows_is_unchanged_by_folding(
    tmp_path: pathlib.Path,
) -> None:
    script = tmp_path / "app.py"
    script.write_text(REPORT_SCRIPT)
    reports = {}
    with LoopbackServer("127.0.0.1", together=3) as server:
        for limit in ("1000", "32"):
            written = tmp_path / f"{limit}.json"
            subprocess.run(
                [
                    *(sys.executable, "-m", "poolscope", "run", "--format", "json"),
                    *("-o", str(written), "--", sys.executable, str(script), str(server.port)),
                ],
                env={**os.environ, "POOLSCOPE_MAX_HOSTS": limit},
                check=True,
                timeout=120,
            )
            reports[limit] = json.loads(written.read_text())
        requests_, connections = server.requests // 2, server.connections // 2
    unfolded, folded = reports["1000"], reports["32"]
    assert unfolded["other_hosts"] is None and len(unfolded["pools"]) == 301
    assert folded["other_hosts"]["hosts"] > 260 and len(folded["pools"]) <= 32
    # The same advice for the crowded host, word for word (the timeout advice's figures are
    # response times, which differ between two runs: its rule only).
    crowded = [a for a in unfolded["advice"] if "crowded" in a["origin"]]
    again = [a for a in folded["advice"] if "crowded" in a["origin"]]
    assert [a["rule"] for a in crowded] == [a["rule"] for a in again]
    (sized,) = [a for a in crowded if a["rule"] == "pool_maxsize"]
    assert sized in again and "pool_maxsize=3" in sized["change"]
    for report in (unfolded, folded):
        other = report["other_hosts"] or {"requests": 0, "created": 0}
        assert sum(p["requests"] for p in report["pools"]) + other["requests"] == requests_
        assert sum(p["created"] for p in report["pools"]) + other["created"] == connections
    assert OTHER_HOSTS.host not in {p["host"] for p in folded["pools"]}


def test_threads_meeting_new_hosts_while_others_fold_lose_no_count(
    server: LoopbackServer, many_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Eight threads, each with its own session, meet 100 new hosts each while folds run: a
    # pool made during a fold must never have its counts folded away from under it.
    monkeypatch.setenv("POOLSCOPE_MAX_HOSTS", "8")
    metrics = Metrics()
    sessions = [
        poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
        for _ in range(8)
    ]

    def sweep_hosts(t: int) -> None:
        for n in range(100):
            sessions[t].get(url(server, t * 1000 + n)).close()

    workers = [threading.Thread(target=sweep_hosts, args=(t,)) for t in range(8)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    points = metrics.collect()
    created = metrics.value(points, "urllib3.pool.connections.created")
    evicted = metrics.value(points, "urllib3.pool.evictions")
    assert created == server.connections == server.requests == 800
    assert evicted == 8 * (100 - 10)  # each session keeps its last 10 pools
