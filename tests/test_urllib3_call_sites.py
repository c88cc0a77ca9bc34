"""The urllib3 and http.client call sites poolscope's close-reason and eviction rules read
(poolscope/instrumentation/callsites.py) are where those rules expect them, in the urllib3
installed: a supported urllib3 that moves one fails here, by name, before any count goes wrong."""

from __future__ import annotations

import importlib
import inspect
import logging
import textwrap
import time
from typing import Any

import pytest
import requests

import poolscope
from poolscope.instrumentation.call_sites_read import CALL_SITES
from poolscope.loopback import LoopbackServer


def _function(module: str, qualname: str) -> Any:
    obj: Any = importlib.import_module(module)
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            pytest.fail(f"{module}.{qualname} is gone: poolscope's callsites rules need updating")
    return obj


@pytest.mark.parametrize(
    ("module", "qualname", "needle", "meaning"),
    CALL_SITES,
    ids=[f"{m}.{q}" for m, q, _, _ in CALL_SITES],
)
def test_each_call_site_is_where_the_rules_expect_it(
    module: str, qualname: str, needle: str, meaning: str
) -> None:
    function = _function(module, qualname)
    source = textwrap.dedent(inspect.getsource(function))
    assert needle in source, f"{module}.{qualname} no longer calls {needle}: {meaning}"


def test_urlopen_keeps_its_retries_in_a_local_named_retries() -> None:
    urlopen = _function("urllib3.connectionpool", "HTTPConnectionPool.urlopen")
    assert "retries" in urlopen.__code__.co_varnames


def test_the_container_is_the_one_the_dispose_rule_reads() -> None:
    # The manager's pool cache: dispose_func, _container, lock and _maxsize are read directly.
    pm = poolscope.InstrumentedPoolManager(num_pools=3)
    container = pm.pools
    assert type(container).__module__ == "urllib3._collections"
    assert type(container).__name__ == "RecentlyUsedContainer"
    assert callable(container.dispose_func)
    assert container._maxsize == 3
    assert isinstance(container._container, dict) or hasattr(container._container, "values")
    with container.lock:
        pass


def test_every_rule_still_tells_its_case_apart(caplog: pytest.LogCaptureFixture) -> None:
    # Through the real call sites: a drop found at checkout, a server's Connection: close, an
    # eviction by a newer pool and a clear, each reported as what it is.
    caplog.set_level(logging.DEBUG, logger="poolscope.pool")
    with (
        LoopbackServer("127.0.0.1", keepalive=0.2) as a,
        LoopbackServer("127.0.0.2") as b,
    ):
        s = requests.Session()
        s.mount("http://", requests.adapters.HTTPAdapter(pool_connections=1))
        poolscope.instrument_session(s, mode="logging")
        s.get(a.url)
        time.sleep(0.5)  # the server closes the idle connection: found dropped at checkout
        s.get(a.url)
        s.get(b.url + "/close")  # Connection: close; b's pool evicts a's
        s.get(b.url)
        s.close()  # PoolManager.clear(): b's pool closes, not evicted
        ports = {a.port, b.port}
        seen = [
            (r.poolscope_event, getattr(r, "close_reason", None), r.server_port)
            for r in caplog.records
            if getattr(r, "server_port", None) in ports
            and r.poolscope_event in ("connection_closed", "pool_evicted")
        ]
    assert seen == [
        ("connection_closed", "dropped", a.port),
        ("pool_evicted", None, a.port),
        ("connection_closed", "garbage_collected", a.port),  # the evicted pool, collected
        ("connection_closed", "server_closed", b.port),
        ("connection_closed", "pool_closed", b.port),
    ], seen


@pytest.mark.parametrize(("timeout", "expected"), [((3.05, 7), 7.0), (None, None), (5, 5.0)])
def test_a_returned_connections_socket_keeps_the_read_timeout(
    timeout: Any, expected: float | None
) -> None:
    # What the timeout rule reads when a connection comes back to its pool (idle_queue.put):
    # urllib3 leaves the request's read timeout on the socket.
    with LoopbackServer("127.0.0.1") as server:
        s = requests.Session()
        s.get(server.url, timeout=timeout)
        (pool,) = s.get_adapter(server.url).poolmanager.pools._container.values()
        (conn,) = [c for c in pool.pool.queue if c is not None]
        assert conn.sock.gettimeout() == expected
