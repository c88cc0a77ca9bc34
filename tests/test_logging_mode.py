"""mode="logging": one readable, structured record per event, and no OpenTelemetry at all."""

from __future__ import annotations

import logging
import subprocess
import sys
import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.core.events import EventKind, PoolEvent, PoolKey, log_fields
from poolscope.loopback import LoopbackServer
from poolscope.sinks.logs import message

from .support.threads import in_two_threads


def events(caplog: pytest.LogCaptureFixture, server: LoopbackServer) -> list[str]:
    return [r.poolscope_event for r in ours(caplog, server)]


def ours(caplog: pytest.LogCaptureFixture, *servers: LoopbackServer) -> list[logging.LogRecord]:
    """This test's event records: earlier tests' connections may close (collected) any time."""
    ports = {s.port for s in servers}
    return [r for r in caplog.records if getattr(r, "server_port", None) in ports]


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.DEBUG, logger="poolscope")
    return caplog


def test_reuses_are_logged_from_the_moment_debug_is_on(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    # No reuse event is built while the logger is not enabled for DEBUG; it is asked on every
    # reuse, so turning DEBUG on takes effect with the next request, pools already counting.
    caplog.set_level(logging.INFO, logger="poolscope")
    s = poolscope.instrument_session(requests.Session(), mode="logging")
    s.get(server.url)
    s.get(server.url)
    assert events(caplog, server) == ["connection_created"]
    caplog.set_level(logging.DEBUG, logger="poolscope")
    s.get(server.url)
    assert events(caplog, server) == ["connection_created", "connection_reused"]
    (reused,) = [r for r in ours(caplog, server) if r.poolscope_event == "connection_reused"]
    assert "it had served 2 request(s)" in reused.getMessage()


def test_event_sequence_and_fields(
    debug_logs: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), mode="logging")
    s.get(server.url)
    s.get(server.url)
    s.get(server.url + "/close")
    s.get(server.url)
    assert events(debug_logs, server) == [
        "connection_created",
        "connection_reused",
        "connection_reused",
        "connection_closed",
        "connection_created",
    ]
    created = next(
        r for r in debug_logs.records if getattr(r, "poolscope_event", "") == "connection_created"
    )
    assert created.levelno == logging.INFO
    assert created.name == "poolscope.pool"
    assert (created.url_scheme, created.server_address, created.server_port) == (
        "http",
        "127.0.0.1",
        server.port,
    )
    assert created.connect_time_s > 0
    assert created.getMessage().startswith(
        f"Opened connection #{created.connection_id} to {server.url} in "
    )
    closed = next(
        r for r in debug_logs.records if getattr(r, "poolscope_event", "") == "connection_closed"
    )
    assert closed.close_reason == "server_closed" and closed.requests_served == 3
    reused = [
        r for r in debug_logs.records if getattr(r, "poolscope_event", "") == "connection_reused"
    ]
    assert [r.requests_served for r in reused] == [1, 2]
    assert all(r.connection_id == created.connection_id for r in reused)


def test_discard_is_a_warning_that_says_what_to_change(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    caplog.set_level(logging.WARNING, logger="poolscope")
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=1))
    poolscope.instrument_session(s, mode="logging")
    in_two_threads(s, server.url + "/together")
    (record,) = ours(caplog, server)
    assert record.levelno == logging.WARNING
    assert record.poolscope_event == "connection_discarded"
    assert record.pool_maxsize == 1
    assert "raise pool_maxsize (now 1) to 2" in record.getMessage()
    assert "HTTPAdapter(pool_maxsize=2)" in record.getMessage()


def test_eviction_is_a_warning_that_says_what_to_change(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    caplog.set_level(logging.WARNING, logger="poolscope")
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_connections=1))
    poolscope.instrument_session(s, mode="logging")
    for url in (server.url, server_b.url, server.url):
        s.get(url)
    records = ours(caplog, server, server_b)
    assert [(r.poolscope_event, r.server_address) for r in records] == [
        ("pool_evicted", "127.0.0.1"),
        ("pool_evicted", "127.0.0.2"),
    ]
    assert all(r.levelno == logging.WARNING and r.pool_connections == 1 for r in records)
    assert "Raise pool_connections (now 1)" in records[0].getMessage()


def test_an_httpx_clients_waits_are_told_in_httpx_words(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    # Two connections at most (one kept idle); three requests: the third waits, and gives up.
    httpx = pytest.importorskip("httpx")
    caplog.set_level(logging.INFO, logger="poolscope")
    limits = httpx.Limits(max_connections=2, max_keepalive_connections=1)
    client = httpx.Client(limits=limits, timeout=httpx.Timeout(5, pool=0.15))
    poolscope.instrument_httpx_client(client, mode="logging")
    holders = [threading.Thread(target=client.get, args=(server.url + "/hold",)) for _ in "ab"]
    for holder in holders:
        holder.start()
    while server.holding < 2:
        threading.Event().wait(0.005)
    with pytest.raises(httpx.PoolTimeout):
        client.get(server.url)
    server.release()
    for holder in holders:
        holder.join(10)
    client.close()
    said = {r.poolscope_event: r.getMessage() for r in ours(caplog, server)}
    assert said["wait_started"] == (
        f"All 2 connection(s) to {server.url} are in use (max_connections=2): waiting for up "
        "to 0.15 s."
    )
    assert said["wait_timed_out"].endswith(
        "(httpx.PoolTimeout); raise max_connections (now 2) or run fewer requests at once."
    )


def test_an_httpx_client_given_back_says_nothing_of_its_connections_after(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    import gc

    httpx = pytest.importorskip("httpx")
    caplog.set_level(logging.DEBUG, logger="poolscope")
    client = poolscope.instrument_httpx_client(httpx.Client(), mode="logging")
    client.get(server.url)
    poolscope.uninstrument_httpx_client(client)
    client.close()
    del client
    gc.collect()
    assert events(caplog, server) == ["connection_created"]


def test_unbounded_wait_is_announced(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    caplog.set_level(logging.INFO, logger="poolscope")
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=1, pool_block=True))
    poolscope.instrument_session(s, mode="logging")
    holder = threading.Thread(target=s.get, args=(server.url + "/hold",))
    holder.start()
    while server.connections < 1:
        threading.Event().wait(0.005)
    waiter = threading.Thread(target=s.get, args=(server.url,))
    waiter.start()
    while not any(getattr(r, "poolscope_event", "") == "wait_started" for r in caplog.records):
        threading.Event().wait(0.005)
    server.release()
    holder.join(10)
    waiter.join(10)
    started = next(r for r in caplog.records if getattr(r, "poolscope_event", "") == "wait_started")
    assert started.pool_timeout_s is None
    assert "with no timeout (requests passes no pool_timeout)" in started.getMessage()
    assert "wait_ended" in events(caplog, server)


def test_no_credentials_path_or_query_in_records(
    debug_logs: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), mode="logging")
    url = f"http://alice:s3cret@127.0.0.1:{server.port}/private/path?token=xyz#frag"
    s.get(url, headers={"Authorization": "Bearer hunter2"})
    s.get(url)
    records = ours(debug_logs, server)
    assert len(records) == 2
    for r in records:
        text = r.getMessage() + repr(sorted(vars(r).items(), key=lambda kv: kv[0]))
        for secret in ("alice", "s3cret", "private", "token", "xyz", "frag", "hunter2"):
            assert secret not in text


def test_logging_mode_imports_no_opentelemetry(server: LoopbackServer) -> None:
    script = f"""
import sys, logging, requests, poolscope
logging.basicConfig(level=logging.DEBUG)
s = poolscope.instrument_session(requests.Session(), mode="logging")
s.get("{server.url}"); s.get("{server.url}")
leaked = sorted(m for m in sys.modules if m.startswith("opentelemetry"))
print("OTEL:", leaked)
"""
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert "OTEL: []" in out.stdout
    assert "Reused connection" in out.stderr


@pytest.mark.parametrize(
    ("library", "words"),
    [
        ("requests", "HTTPAdapter(pool_maxsize=3)"),
        ("urllib3", "urllib3.PoolManager(maxsize=3)"),
        ("botocore", "botocore.config.Config(max_pool_connections=3)"),
        ("kubernetes", "configuration.connection_pool_maxsize = 3"),
        ("elasticsearch", "Elasticsearch(..., connections_per_node=3)"),
        ("opensearch-py", "OpenSearch(..., pool_maxsize=3)"),
        ("docker", "docker.DockerClient(..., max_pool_size=3)"),
    ],
)
def test_warnings_say_the_change_in_the_words_of_the_library_that_built_the_pool(
    library: str, words: str
) -> None:
    key = PoolKey("http", "127.0.0.1", 9200)
    event = PoolEvent(EventKind.DISCARDED, key, 1, 0.5, pool_maxsize=2, in_use=3)
    event.library = library
    said = message(event)
    assert words in said, said
    assert ("HTTPAdapter" in said) == (library == "requests")
    assert log_fields(event)["client_library"] == library
