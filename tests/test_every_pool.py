"""Pools the user does not hold: raw urllib3, proxies, process-wide and zero-code."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from functools import partial
from typing import Any

import pytest
import requests
import urllib3
import urllib3.connection
import urllib3.connectionpool
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider
from urllib3.poolmanager import PoolManager

import poolscope
from poolscope.instrumentation.connections import InstrumentedConnectionMixin
from poolscope.instrumentation.idle_queue import InstrumentedQueueMixin
from poolscope.instrumentation.managers import detach_manager
from poolscope.instrumentation.pools import InstrumentedPoolMixin, start_counting
from poolscope.loopback import LoopbackServer

from .support.fake_apis import FakeAPI, json_app
from .support.metrics import Metrics
from .support.proxy import Proxy
from .support.threads import lines_of, switch_at, wait_for_waiters

POOLSCOPE_RUN = [sys.executable, "-m", "poolscope", "run"]
CREATED = "urllib3.pool.connections.created"
REUSED = "urllib3.pool.connections.reused"


@pytest.fixture
def proxy() -> Iterator[Proxy]:
    with Proxy() as p:
        yield p


@pytest.fixture
def process_wide(metrics: Metrics) -> Iterator[Metrics]:
    poolscope.instrument(meter_provider=metrics.provider)
    try:
        yield metrics
    finally:
        poolscope.uninstrument()


def test_requests_get_opens_a_connection_per_call(
    process_wide: Metrics, server: LoopbackServer
) -> None:
    for _ in range(20):
        assert requests.get(server.url).text == "ok"
    points = process_wide.collect()
    assert process_wide.value(points, CREATED) == 20
    assert process_wide.value(points, REUSED) == 0
    assert server.connections == 20


def test_one_session_reuses_under_process_wide(
    process_wide: Metrics, server: LoopbackServer
) -> None:
    s = requests.Session()  # made after instrument(): no instrument_session() needed
    for _ in range(20):
        s.get(server.url)
    points = process_wide.collect()
    assert process_wide.value(points, CREATED) == 1
    assert process_wide.value(points, REUSED) == 19


def test_uninstrument_puts_back_the_very_same_init(
    metrics: Metrics, server: LoopbackServer
) -> None:
    original = PoolManager.__dict__["__init__"]
    poolscope.instrument(meter_provider=metrics.provider)
    pm = urllib3.PoolManager()
    assert PoolManager.__dict__["__init__"] is not original
    pm.request("GET", server.url)
    poolscope.uninstrument()
    assert PoolManager.__dict__["__init__"] is original
    assert type(pm) is PoolManager and "_poolscope" not in vars(pm)
    assert type(urllib3.PoolManager()) is PoolManager
    poolscope.uninstrument()  # harmless when not instrumenting


def test_process_wide_with_other_options_is_refused(process_wide: Metrics) -> None:
    with pytest.raises(ValueError, match=r"poolscope\.uninstrument\(\) first"):
        poolscope.instrument(mode="logging")
    poolscope.instrument(meter_provider=process_wide.provider)  # same options: harmless


def test_raw_pool_manager_cycling_two_hosts_counts_evictions(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    pm = poolscope.instrument_pool_manager(
        PoolManager(num_pools=1), meter_provider=metrics.provider
    )
    for srv in (server, server_b, server, server_b, server):
        assert pm.request("GET", srv.url).data == b"ok"
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.evictions") == 4
    assert metrics.value(points, "urllib3.pool.evictions", server__address="127.0.0.1") == 2
    assert metrics.value(points, "urllib3.pool.evictions", server__address="127.0.0.2") == 2
    assert metrics.value(points, CREATED) == 5


def test_a_manager_making_many_pools_keeps_only_those_alive_and_gives_back_an_evicted_one(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    pm = poolscope.instrument_pool_manager(
        PoolManager(num_pools=1), meter_provider=metrics.provider
    )
    pm.request("GET", server.url)
    held = pm.connection_from_url(server.url)  # evicted by the next request, kept alive here
    for srv in [server_b, server] * 150:
        assert pm.request("GET", srv.url).data == b"ok"
    assert isinstance(held, InstrumentedPoolMixin)
    assert len(pm._poolscope.pools) <= 64  # the collected ones were pruned as it went
    poolscope.uninstrument_pool_manager(pm)
    assert type(held) is urllib3.connectionpool.HTTPConnectionPool
    assert metrics.value(metrics.collect(), "urllib3.pool.evictions") == 300


def test_a_used_pool_manager_keeps_its_pools_and_is_observed(
    metrics: Metrics, server: LoopbackServer
) -> None:
    pm = PoolManager()
    pm.request("GET", server.url)
    pool = pm.connection_from_url(server.url)
    poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
    assert pm.connection_from_url(server.url) is pool
    pm.request("GET", server.url)
    points = metrics.collect()
    assert metrics.value(points, CREATED) == 0
    assert metrics.value(points, REUSED) == 1
    assert server.connections == 1
    poolscope.uninstrument_pool_manager(pm)
    assert type(pm) is PoolManager and type(pool) is urllib3.HTTPConnectionPool


def test_a_connection_in_use_while_its_manager_is_instrumented_is_counted_once_back(
    metrics: Metrics, server: LoopbackServer
) -> None:
    pm = PoolManager()
    pm.request("GET", server.url)
    streaming = pm.request("GET", server.url, preload_content=False)  # holds the connection
    poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
    streaming.read()
    streaming.release_conn()  # comes back to the instrumented pool: adopted, idle
    points = metrics.collect()
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="idle") == 1
    )
    pm.request("GET", server.url)
    points = metrics.collect()
    assert (metrics.value(points, CREATED), metrics.value(points, REUSED)) == (0, 1)
    assert server.connections == 1
    poolscope.uninstrument_pool_manager(pm)


def test_instrumenting_and_uninstrumenting_a_busy_pool_manager_breaks_no_request(
    metrics: Metrics, server: LoopbackServer
) -> None:
    # A pool's queue changes class both ways while other threads check connections out and
    # return them; the attributes its get() and put() read must be there at every moment.
    pm = PoolManager(maxsize=4, block=True)
    pm.request("GET", server.url)
    stop = threading.Event()
    failures: list[BaseException] = []
    done = [0] * 4

    def hammer(i: int) -> None:
        while not stop.is_set():
            try:
                assert pm.request("GET", server.url).data == b"ok"
                done[i] += 1
            except BaseException as exc:  # any failure is the finding
                failures.append(exc)
                return

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(4)]
    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch between almost any two bytecodes
    for t in threads:
        t.start()
    try:
        for _ in range(200):
            poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
            poolscope.uninstrument_pool_manager(pm)
    finally:
        sys.setswitchinterval(interval)
        stop.set()
        for t in threads:
            t.join(10)
    assert failures == []
    assert min(done) > 0
    pool = pm.connection_from_url(server.url)
    assert type(pool) is urllib3.HTTPConnectionPool and type(pool.pool).__name__ == "LifoQueue"


# The moments the busy test above cannot hit at will, each made to happen. The queue's class
# changes under its lock, so an instrumented get() or put() of another thread is either not yet
# holding the lock or waiting on one of its conditions (which releases it): it then carries on
# with a queue whose class is stdlib's again (the next two tests). Pools and connections change
# class with no lock (the tests after them, the last ones at every line of the code involved).


def test_a_checkout_waiting_as_its_pool_manager_is_uninstrumented_gets_the_connection(
    metrics: Metrics, server: LoopbackServer
) -> None:
    pm = PoolManager(maxsize=1, block=True)
    poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
    pool = pm.connection_from_url(server.url)
    held = pool.request("GET", "/", preload_content=False)  # the pool's one connection
    seen: list[Any] = []

    def checkout() -> None:
        try:
            seen.append(pool.request("GET", "/").data)
        except Exception as exc:
            seen.append(exc)

    waiter = threading.Thread(target=checkout, daemon=True)
    waiter.start()
    wait_for_waiters(pool.pool.not_empty, 1)  # in the instrumented get(), waiting
    poolscope.uninstrument_pool_manager(pm)
    assert held.read() == b"ok"
    held.release_conn()
    waiter.join(10)
    assert seen == [b"ok"]
    assert server.connections == 1


class _Announced(urllib3.connection.HTTPConnection):
    """A connection that runs ``on_lookup`` (once) when its ``_poolscope`` is looked up and
    missing: as the instrumented put() asks a connection made before instrumenting."""

    on_lookup: Any = None

    def __getattr__(self, name: str) -> Any:
        if name == "_poolscope" and self.on_lookup is not None:
            run, self.on_lookup = self.on_lookup, None
            run()
        raise AttributeError(name)


def test_a_connection_returning_as_its_pool_manager_is_uninstrumented_goes_back(
    metrics: Metrics, server: LoopbackServer
) -> None:
    pm = PoolManager()
    pool = pm.connection_from_url(server.url)
    pool.ConnectionCls = _Announced
    held = pool.request("GET", "/", preload_content=False)  # made before instrumenting
    poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
    assert pool.pool._poolscope_counting  # its return is counted: the put() adopts it
    held.connection.on_lookup = lambda: poolscope.uninstrument_pool_manager(pm)
    assert held.read() == b"ok"
    held.release_conn()  # in the instrumented put(), before its lock: the class changes
    assert held.connection is None and pool.num_connections == 1
    assert pool.request("GET", "/").data == b"ok"
    assert server.connections == 1  # it went back, and was reused


def test_a_connection_closing_as_its_pool_manager_is_uninstrumented_closes(
    server: LoopbackServer,
) -> None:
    # The connection's close() reports first, then closes: a log handler that uninstruments
    # the manager as the close is reported gives the connection its own class in between.
    pm = PoolManager()
    poolscope.instrument_pool_manager(pm, mode="logging")
    assert pm.request("GET", server.url).data == b"ok"
    pool = pm.connection_from_url(server.url)
    (conn,) = [c for c in pool.pool.queue if c is not None]

    class Uninstrumenting(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            if getattr(record, "poolscope_event", None) == "connection_closed":
                poolscope.uninstrument_pool_manager(pm)

    handler = Uninstrumenting()
    log = logging.getLogger("poolscope.pool")
    level = log.level
    log.addHandler(handler)
    log.setLevel(logging.DEBUG)
    try:
        pool.close()
    finally:
        log.removeHandler(handler)
        log.setLevel(level)
    assert type(conn) is urllib3.connection.HTTPConnection and conn.sock is None


def test_a_method_begun_before_uninstrumenting_does_what_the_objects_own_class_does(
    metrics: Metrics, server: LoopbackServer
) -> None:
    # Another thread may give a pool or a connection its own class back between the lookup of
    # one of poolscope's methods and the method's first line, or later in the method: it then
    # runs on a plain object, which may still hold the state it read before.
    pool = urllib3.HTTPConnectionPool("127.0.0.1", server.port)
    conn = urllib3.connection.HTTPConnection("127.0.0.1", server.port)
    assert InstrumentedConnectionMixin.__str__(conn) == str(conn)
    assert InstrumentedConnectionMixin.__repr__(conn) == repr(conn)
    InstrumentedConnectionMixin._new_conn(conn).close()
    InstrumentedConnectionMixin.connect(conn)
    assert conn.sock is not None
    InstrumentedConnectionMixin.close(conn)
    assert conn.sock is None
    instrumented = poolscope.InstrumentedHTTPConnectionPool(
        "127.0.0.1", server.port, meter_provider=metrics.provider
    )
    reporting = instrumented._new_conn()
    reporting.__class__ = urllib3.connection.HTTPConnection  # its _poolscope kept
    InstrumentedConnectionMixin.connect(reporting)
    assert reporting.sock is not None
    InstrumentedConnectionMixin.close(reporting)
    assert reporting.sock is None
    assert InstrumentedPoolMixin.__str__(pool) == str(pool)
    assert type(InstrumentedPoolMixin._new_conn(pool)) is urllib3.connection.HTTPConnection
    InstrumentedPoolMixin.close(pool)
    assert pool.pool is None


def uninstrumented(pm: PoolManager) -> bool:
    """Whether the manager and every pool it holds have their own classes back."""
    plain = {"http": urllib3.HTTPConnectionPool, "https": urllib3.HTTPSConnectionPool}
    return (
        "_new_pool" not in vars(pm)
        and pm.pool_classes_by_scheme == plain
        and all(
            type(p) in plain.values() and not isinstance(p.pool, InstrumentedQueueMixin)
            for p in pm.pools._container.values()
        )
        and "_poolscope_with_hook" not in vars(urllib3.HTTPConnectionPool)
    )


def test_a_pool_that_starts_counting_as_it_is_uninstrumented_keeps_its_own_class(
    server: LoopbackServer,
) -> None:
    # A metrics reader's first collection starts the pools counting, on the reader's thread;
    # another thread may uninstrument the manager at any line of that start.
    for line in lines_of(start_counting.__code__):
        pm = PoolManager()
        poolscope.instrument_pool_manager(
            pm, meter_provider=NoOpMeterProvider(), tracer_provider=NoOpTracerProvider()
        )
        assert pm.request("GET", server.url).data == b"ok"
        pool = pm.connection_from_url(server.url)
        assert not pool._poolscope.counting  # no SDK: nothing acts on reuses yet
        uninstrument = partial(poolscope.uninstrument_pool_manager, pm)
        with switch_at(start_counting.__code__, line, uninstrument):
            start_counting(pool)
        assert uninstrumented(pm), line
    poolscope.instrument_pool_manager(pm, mode="logging")  # it is a pool like any other again
    assert pm.connection_from_url(server.url)._poolscope.counting


def _checkout(pm: PoolManager, url: str) -> None:
    assert pm.request("GET", url).data == b"ok"  # an idle connection, reused


def _return(pm: PoolManager, url: str) -> None:
    r = pm.request("GET", url, preload_content=False)
    assert r.read() == b"ok"
    r.release_conn()


def _connect(pm: PoolManager, url: str) -> None:
    assert pm.request("GET", url.replace("127.0.0.1", "localhost")).data == b"ok"  # a new pool


def _close(pm: PoolManager, url: str) -> None:
    pm.clear()


def test_a_pool_made_as_its_manager_is_uninstrumented_is_left_plain(
    server: LoopbackServer, server_b: LoopbackServer
) -> None:
    # A request to a new host makes its pool through the manager's hook while another thread
    # uninstruments the manager: at any line of the hook, and any line of the uninstrumenting.
    pm = PoolManager()
    poolscope.instrument_pool_manager(pm, mode="logging")
    hook = pm._new_pool.__code__
    poolscope.uninstrument_pool_manager(pm)
    for code, line in [(hook, n) for n in lines_of(hook)] + [
        (detach_manager.__code__, n) for n in lines_of(detach_manager.__code__)
    ]:
        pm = PoolManager()
        poolscope.instrument_pool_manager(pm, mode="logging")
        assert pm.request("GET", server.url).data == b"ok"
        if code is hook:
            with switch_at(code, line, partial(poolscope.uninstrument_pool_manager, pm)):
                assert pm.request("GET", server_b.url).data == b"ok"
        else:
            with switch_at(code, line, partial(_checkout, pm, server_b.url)):
                poolscope.uninstrument_pool_manager(pm)
        assert len(pm.pools) == 2 and uninstrumented(pm), (code.co_name, line)


@pytest.mark.parametrize(
    ("method", "action"),
    [
        (InstrumentedQueueMixin.get, _checkout),
        (InstrumentedQueueMixin.put, _return),
        (InstrumentedConnectionMixin.connect, _connect),
        (InstrumentedConnectionMixin.close, _close),
    ],
    ids=lambda x: getattr(x, "__qualname__", ""),
)
def test_a_request_inside_poolscope_as_its_manager_is_uninstrumented_goes_through(
    method: Any, action: Any, metrics: Metrics, server: LoopbackServer
) -> None:
    # Another thread uninstruments the manager at each line, in turn, of a method of poolscope's
    # that a request runs (with an SDK, so on the counting path): the request goes through.
    code = method.__code__
    for line in lines_of(code):
        pm = PoolManager()
        poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
        _checkout(pm, server.url)
        with switch_at(code, line, partial(poolscope.uninstrument_pool_manager, pm)):
            action(pm, server.url)
        assert uninstrumented(pm), line
        _checkout(pm, server.url)


def test_instrument_pool_manager_refuses_other_things() -> None:
    with pytest.raises(TypeError, match="takes a urllib3 PoolManager or ProxyManager, not Session"):
        poolscope.instrument_pool_manager(requests.Session())  # type: ignore[type-var]


def _no_credentials(points: dict[str, list[Any]]) -> None:
    for pts in points.values():
        for p in pts:
            for value in p.attributes.values():
                assert "alice" not in str(value) and "s3cret" not in str(value)


def test_requests_through_an_http_forwarding_proxy(
    metrics: Metrics, proxy: Proxy, server: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    proxy_url = f"http://alice:s3cret@127.0.0.1:{proxy.port}"
    for _ in range(3):
        assert s.get(server.url, proxies={"http": proxy_url}).text == "ok"
    assert proxy.connections == 1 and proxy.auth_seen  # the proxy saw the credentials
    points = metrics.collect()
    # Forwarding: the connections are the proxy's, whatever the target.
    via = {
        "server__address": "127.0.0.1",
        "server__port": proxy.port,
        "urllib3__pool__proxy": proxy.url,
    }
    assert metrics.value(points, CREATED, **via) == 1
    assert metrics.value(points, REUSED, **via) == 2
    assert metrics.value(points, CREATED) == 1
    _no_credentials(points)


def test_requests_through_a_connect_tunnel(
    metrics: Metrics, proxy: Proxy, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    proxy_url = f"http://alice:s3cret@127.0.0.1:{proxy.port}"
    for _ in range(3):
        r = s.get(tls_server.url, proxies={"https": proxy_url}, verify=ca_bundle)
        assert r.text == "ok"
    assert proxy.connections == 1 and proxy.tunnels == 1
    points = metrics.collect()
    # A tunnel: one connection per target, through the proxy.
    target = {
        "url__scheme": "https",
        "server__port": tls_server.port,
        "urllib3__pool__proxy": proxy.url,
    }
    assert metrics.value(points, CREATED, **target) == 1
    assert metrics.value(points, REUSED, **target) == 2
    (tls,) = points["urllib3.pool.connection.tls_time"]
    assert tls.count == 1
    _no_credentials(points)


def test_raw_proxy_manager_forwarding_and_tunnel(
    metrics: Metrics,
    proxy: Proxy,
    server: LoopbackServer,
    tls_server: LoopbackServer,
    ca_bundle: str,
) -> None:
    pm = poolscope.instrument_pool_manager(
        urllib3.ProxyManager(proxy.url, ca_certs=ca_bundle), meter_provider=metrics.provider
    )
    for _ in range(2):
        assert pm.request("GET", server.url).data == b"ok"
        assert pm.request("GET", tls_server.url).data == b"ok"
    points = metrics.collect()
    assert metrics.value(points, CREATED, server__port=proxy.port) == 1
    assert metrics.value(points, CREATED, server__port=tls_server.port) == 1
    assert metrics.value(points, REUSED) == 2
    assert proxy.connections == 2 and proxy.tunnels == 1


# Each program makes one client, three requests on it, and one request on a throwaway one.
ZERO_CODE_APPS = {
    "requests": (
        "import sys, requests\n"
        "s = requests.Session()\n"
        "for _ in range(3):\n"
        "    s.get(sys.argv[1])\n"
        "requests.get(sys.argv[1])\n"
    ),
    "httpx": (
        "import sys, httpx\n"
        "with httpx.Client() as client:\n"
        "    for _ in range(3):\n"
        "        client.get(sys.argv[1])\n"
        "httpx.get(sys.argv[1])\n"
    ),
}


@pytest.mark.skipif(
    shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable)) is None,
    reason="opentelemetry-instrument is installed with the test extra",
)
@pytest.mark.parametrize("client", sorted(ZERO_CODE_APPS))
def test_opentelemetry_instrument_turns_it_on_without_code(
    server: LoopbackServer, tmp_path: pathlib.Path, client: str
) -> None:
    pytest.importorskip(client)
    script = tmp_path / "app.py"
    script.write_text(ZERO_CODE_APPS[client])
    command, env = _opentelemetry_instrument()
    out = subprocess.run(
        [command, sys.executable, str(script), server.url],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    values = _console_metric_values(out.stdout)
    assert values[CREATED] == 2  # the client's one, and the throwaway one's
    assert values[REUSED] == 2
    assert server.connections == 2


def _opentelemetry_instrument() -> tuple[str, dict[str, str]]:
    """The opentelemetry-instrument command beside this Python, and an environment that makes
    it print metrics to stdout at exit and export nothing else."""
    command = shutil.which("opentelemetry-instrument", path=os.path.dirname(sys.executable))
    assert command is not None
    env = {
        **os.environ,
        "OTEL_METRICS_EXPORTER": "console",
        "OTEL_TRACES_EXPORTER": "none",
        "OTEL_LOGS_EXPORTER": "none",
        "OTEL_METRIC_EXPORT_INTERVAL": "600000",
    }
    return command, env


def _console_metric_values(text: str) -> dict[str, int]:
    """Sum of each metric's last exported data points, from the console exporter's JSON."""
    decoder = json.JSONDecoder()
    values: dict[str, int] = {}
    i = 0
    while (start := text.find("{", i)) != -1:
        try:
            doc, i = decoder.raw_decode(text, start)
        except json.JSONDecodeError:
            i = start + 1
            continue
        for rm in doc.get("resource_metrics", []):
            for sm in rm["scope_metrics"]:
                if sm["scope"]["name"] != "poolscope":
                    continue
                for metric in sm["metrics"]:
                    points = metric["data"]["data_points"]
                    values[metric["name"]] = sum(p.get("value", 0) for p in points)
    return values


class SDKPool(urllib3.HTTPConnectionPool):
    """Like botocore's AWSHTTPConnectionPool: an SDK's own pool class."""


def test_pool_classes_assigned_after_construction_still_report(
    process_wide: Metrics, server: LoopbackServer
) -> None:
    pm = urllib3.PoolManager()
    original = {"http": SDKPool, "https": urllib3.HTTPSConnectionPool}
    pm.pool_classes_by_scheme = original  # what botocore does right after making its manager
    pm.request("GET", server.url)
    pm.request("GET", server.url)
    pool = pm.connection_from_url(server.url)
    assert isinstance(pool, SDKPool)
    points = process_wide.collect()
    assert process_wide.value(points, CREATED) == 1
    assert process_wide.value(points, REUSED) == 1
    poolscope.uninstrument()
    assert pm.pool_classes_by_scheme is original
    assert type(pool) is SDKPool


class UnixHTTPConnection(urllib3.connection.HTTPConnection):
    """A connection over a unix socket, built as docker-py's is."""

    def __init__(self, socket_path: str) -> None:
        super().__init__("localhost")
        self.socket_path = socket_path

    def connect(self) -> None:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        sock.connect(self.socket_path)
        self.sock = sock


class UnixHTTPConnectionPool(urllib3.connectionpool.HTTPConnectionPool):
    """A pool over a unix socket, built as docker-py's is: no PoolManager, its own _new_conn."""

    def __init__(self, socket_path: str, maxsize: int = 1) -> None:
        super().__init__("localhost", maxsize=maxsize)
        self.socket_path = socket_path

    def _new_conn(self) -> Any:
        return UnixHTTPConnection(self.socket_path)


def test_pools_built_without_a_manager_are_seen_process_wide(
    process_wide: Metrics, server: LoopbackServer
) -> None:
    class SDKPool(urllib3.HTTPConnectionPool):  # as elastic-transport's node builds one
        pass

    for pool, name in (
        (urllib3.HTTPConnectionPool("127.0.0.1", server.port), "HTTPConnectionPool"),
        (SDKPool("127.0.0.1", server.port, maxsize=2), "SDKPool"),
        (urllib3.connection_from_url(server.url), "HTTPConnectionPool"),
    ):
        for _ in range(3):
            assert pool.request("GET", "/").data == b"ok"
        assert str(pool) == f"{name}(host='127.0.0.1', port={server.port})"  # as urllib3 says
    assert type(pool).__mro__[1:].count(urllib3.HTTPConnectionPool) == 1
    points = process_wide.collect()
    assert process_wide.value(points, CREATED) == server.connections == 3
    assert process_wide.value(points, REUSED) == 6
    poolscope.uninstrument()
    plain = urllib3.HTTPConnectionPool("127.0.0.1", server.port)  # after the undo: urllib3's
    assert type(plain) is urllib3.HTTPConnectionPool
    assert plain.request("GET", "/").data == b"ok"
    assert type(SDKPool("127.0.0.1", server.port)) is SDKPool


def test_a_pool_over_a_unix_socket_is_named_by_its_path(
    process_wide: Metrics, tmp_path: pathlib.Path
) -> None:
    path = str(tmp_path / "api.sock")
    app = json_app({"/_ping": "OK"})
    with FakeAPI(app, unix_path=path) as api:
        pool = UnixHTTPConnectionPool(path)
        for _ in range(3):
            assert pool.request("GET", "/_ping").data == b"OK"
        points = process_wide.collect()
    attrs = {"url.scheme": "http", "server.address": path, "network.transport": "unix"}
    (created,) = [p for p in points[CREATED] if dict(p.attributes) == attrs]
    assert created.value == api.connections == 1
    (reused,) = [p for p in points[REUSED] if dict(p.attributes) == attrs]
    assert reused.value == 2 and api.requests == 3


def test_a_raw_urllib3_program_gets_urllib3_words(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "raw.py"
    script.write_text(
        "import sys, threading, urllib3\n"
        "timeout = urllib3.Timeout(connect=3.05, read=10)\n"
        "pm = urllib3.PoolManager(maxsize=int(sys.argv[2]), timeout=timeout)\n"
        "ts = [threading.Thread(target=pm.request, args=('GET', sys.argv[1] + '/together'))\n"
        "      for _ in range(2)]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
    )
    with LoopbackServer("127.0.0.1", together=2) as server:
        bad = _run_report(script, server.url, "1")
        fixed = _run_report(script, server.url, "2")
    (advice,) = bad["advice"]
    assert (
        advice["change"] == "Raise maxsize to 2: urllib3.PoolManager(maxsize=2) (a pool on "
        "its own: HTTPConnectionPool(maxsize=2))."
    )
    assert "HTTPAdapter" not in json.dumps(bad)
    (pool,) = bad["pools"]
    assert pool["library"] == "urllib3" and pool["created"] == 2
    assert fixed["advice"] == []


def test_a_server_that_closes_every_connection_is_told_apart(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "close.py"
    script.write_text(
        "import sys, requests\n"
        "s = requests.Session()\n"
        "for _ in range(5):\n"
        "    s.get(sys.argv[1] + sys.argv[2], timeout=(3.05, 10))\n"
    )
    with LoopbackServer("127.0.0.1") as server:
        closing = _run_report(script, server.url, "/close")
        keeping = _run_report(script, server.url, "/")
    (advice,) = closing["advice"]
    assert advice["rule"] == "server_keepalive" and advice["waste"] == 5
    assert "closed 5 of the 5 connection(s) opened for 5 request(s)" in advice["evidence"]
    assert "No client setting" in advice["change"]
    assert keeping["advice"] == [] and keeping["pools"][0]["reused"] == 4


def test_a_run_that_saw_no_pool_says_so(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "nothing.py"
    script.write_text("print('no http here')\n")
    out = subprocess.run(
        [sys.executable, "-m", "poolscope", "run", "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "no http here\n"  # the program's own output, and only that
    assert "poolscope saw no urllib3 or httpx connection pool" in out.stderr
    assert "No problems found" not in out.stderr
    assert "child processes" in out.stderr


def _run_report(script: pathlib.Path, *args: str) -> dict[str, Any]:
    written = script.with_suffix(".json")
    run = [sys.executable, "-m", "poolscope", "run", "--format", "json", "-o", str(written)]
    out = subprocess.run(
        [*run, "--", sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(written.read_text())
    return report


def test_opentelemetry_instrument_under_poolscope_run_exports_and_reports(
    server: LoopbackServer, tmp_path: pathlib.Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(
        "import sys, requests\ns = requests.Session()\nfor _ in range(3):\n    s.get(sys.argv[1])\n"
    )
    command, env = _opentelemetry_instrument()
    written = tmp_path / "report.json"
    program = [command, sys.executable, str(script), server.url]
    out = subprocess.run(
        [*POOLSCOPE_RUN, "--format", "json", "-o", str(written), "--", *program],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert out.returncode == 0, out.stderr
    values = _console_metric_values(out.stdout)  # exported as without poolscope run
    assert (values[CREATED], values[REUSED]) == (1, 2)
    (pool,) = json.loads(written.read_text())["pools"]
    assert (pool["created"], pool["reused"]) == (1, 2) == (server.connections, 2)


def test_report_true_then_a_session_with_its_own_provider_combine(
    server: LoopbackServer, metrics: Metrics
) -> None:
    poolscope.instrument(report=True)
    try:
        s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
        for _ in range(3):
            s.get(server.url)
        assert metrics.value(metrics.collect(), REUSED) == 2  # its own provider
        mine = [p for p in poolscope.report().pools if p.port == server.port]
        assert [(p.created, p.reused) for p in mine] == [(1, 2)]  # and the report
    finally:
        poolscope.uninstrument()
