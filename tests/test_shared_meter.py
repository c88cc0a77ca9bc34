"""Recorders that report to one meter: every recorder's counts exported, summed by host, and
each counter monotonic through folding (poolscope/sinks/meter.py).

Two sessions given one meter provider and different tracer providers have two recorders; so do
the global provider reached without naming it and named. The SDK keeps one instrument per name
on a meter and drops a second one's callbacks, so all of them must be observed through one set.
"""

from __future__ import annotations

import sys
import threading
from typing import Any

import pytest
import requests
from opentelemetry.sdk.trace import TracerProvider

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.names import series, url
from .test_reuse_counting import run_without_otel_environment

CREATED = "urllib3.pool.connections.created"
REUSED = "urllib3.pool.connections.reused"


def test_recorders_that_differ_by_tracer_provider_are_both_exported_summed_by_host(
    metrics: Metrics,
    server: LoopbackServer,
    server_b: LoopbackServer,
) -> None:
    tracers = TracerProvider()
    first = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    second = poolscope.instrument_session(
        requests.Session(), meter_provider=metrics.provider, tracer_provider=tracers
    )
    for _ in range(3):
        assert first.get(server.url).text == "ok"
    for _ in range(2):
        assert second.get(server.url).text == "ok"
    assert second.get(server_b.url).text == "ok"
    points = metrics.collect()
    a, b = {"server.port": server.port}, {"server.port": server_b.port}
    # One series a host, whichever recorder counted: the first's and the second's summed.
    assert len([p for p in points[CREATED] if p.attributes["server.port"] == server.port]) == 1
    assert metrics.value(points, CREATED, **a) == server.connections == 2
    assert metrics.value(points, REUSED, **a) == 3  # 2 of the first's, 1 of the second's
    assert metrics.value(points, CREATED, **b) == server_b.connections == 1
    assert metrics.value(points, "http.client.open_connections", **a) == 2
    tracers.shutdown()


def test_a_host_two_recorders_share_stays_monotonic_while_one_folds_it(
    server: LoopbackServer, many_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSCOPE_MAX_HOSTS", "4")
    metrics, tracers = Metrics(), TracerProvider()
    keeper = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    sweeper = poolscope.instrument_session(
        requests.Session(), meter_provider=metrics.provider, tracer_provider=tracers
    )
    keeper.get(url(server, 0)).close()  # h0's pool stays in keeper's manager
    last: dict[tuple[Any, ...], int] = {}
    for n in range(40):  # the sweeper meets h0 first, then 39 others: it folds h0
        sweeper.get(url(server, n)).close()
        created = series(metrics.collect(), CREATED)
        for key, value in created.items():
            assert value >= last.get(key, 0), (n, key)  # no series ever goes down
        last.update(created)
        assert sum(created.values()) == server.connections == n + 2
    mine = {"server.address": "h0.hosts.test", "server.port": server.port}
    assert metrics.value(metrics.collect(), CREATED, **mine) == 2  # the keeper's and sweeper's
    tracers.shutdown()


def test_a_folded_host_met_again_goes_on_from_its_total(
    server: LoopbackServer, many_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("POOLSCOPE_MAX_HOSTS", "4")
    metrics = Metrics()
    session = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    mine = {"server.address": "h0.hosts.test", "server.port": server.port}
    for _ in range(3):
        session.get(url(server, 0)).close()  # one connection, reused twice
    for n in range(1, 20):  # h0's pool is evicted, then h0 is folded
        session.get(url(server, n)).close()
    points = metrics.collect()
    assert (metrics.value(points, CREATED, **mine), metrics.value(points, REUSED, **mine)) == (1, 2)
    # Only its counters go on, where not zero: no gauge of a host no longer met.
    for gauge_or_zero in ("http.client.open_connections", "urllib3.pool.connections.discarded"):
        assert not [
            p
            for p in points[gauge_or_zero]
            if p.attributes.get("server.address") == "h0.hosts.test"
        ]
    session.get(url(server, 0)).close()  # a new pool, a new connection
    points = metrics.collect()
    assert (metrics.value(points, CREATED, **mine), metrics.value(points, REUSED, **mine)) == (2, 2)
    assert metrics.value(points, CREATED) == server.connections == 21


def test_collections_while_two_recorders_fold_shared_hosts_see_every_count_once(
    server: LoopbackServer, many_names: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Four threads, two sessions on each of two recorders, meet the same 150 hosts while a
    # collector reads all along: a collection between a fold's steps must not miss a folded
    # host's counts (no series ever goes down) nor count them twice (the total is exact).
    monkeypatch.setenv("POOLSCOPE_MAX_HOSTS", "8")
    metrics, tracers = Metrics(), TracerProvider()
    sessions = [
        poolscope.instrument_session(
            requests.Session(), meter_provider=metrics.provider, tracer_provider=providers
        )
        for providers in (None, None, tracers, tracers)
    ]
    done = threading.Event()
    problems: list[str] = []

    def collect() -> None:
        last: dict[tuple[Any, ...], int] = {}
        while not done.is_set():
            created = series(metrics.collect(), CREATED)
            problems.extend(
                f"{key}: {last[key]} -> {v}" for key, v in created.items() if v < last.get(key, 0)
            )
            last.update(created)

    def sweep(session: requests.Session) -> None:
        for n in range(150):
            session.get(url(server, n)).close()

    switch = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)
    try:
        collector = threading.Thread(target=collect)
        collector.start()
        workers = [threading.Thread(target=sweep, args=(one,)) for one in sessions]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()
        done.set()
        collector.join()
    finally:
        sys.setswitchinterval(switch)
    assert problems == []
    assert sum(series(metrics.collect(), CREATED).values()) == server.connections == 600
    tracers.shutdown()


GLOBAL_NAMED_AND_NOT = """
import requests
from opentelemetry import metrics
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
import poolscope
from poolscope.loopback import LoopbackServer

early = poolscope.instrument_session(requests.Session())  # the API's proxy: none set yet
reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
metrics.set_meter_provider(provider)
named = poolscope.instrument_session(requests.Session(), meter_provider=provider)
with LoopbackServer("127.0.0.1") as server:
    for session in (early, named):
        session.get(server.url).close()
    total = 0
    for rm in reader.get_metrics_data().resource_metrics:
        for sm in rm.scope_metrics:
            for m in sm.metrics:
                if m.name == "urllib3.pool.connections.created":
                    total += sum(p.value for p in m.data.data_points)
    print("created", total, "accepted", server.connections)
"""


def test_the_global_provider_named_or_not_is_one_meter() -> None:
    assert run_without_otel_environment(GLOBAL_NAMED_AND_NOT) == [
        "created 2 accepted 2",
    ]
