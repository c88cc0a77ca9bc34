"""httpx's pools (#30, first part): every ``httpx.Client`` and ``AsyncClient`` seen by
process-wide instrumentation, its connections created, reused and closed and its requests
counted as the server counts them, waits and PoolTimeouts as the program saw them, and advice
in httpx's words with a number that, applied, leaves nothing to advise. Real httpx, HTTP/1.1,
against loopback servers. Each test reports to a recorder of its own (a meter provider of its
own): a recorder outlives a test, and a loopback port may come back."""

from __future__ import annotations

import asyncio
import json
import os
import pathlib
import re
import subprocess
import sys
import threading
import time
from typing import Any

import pytest

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics

httpx = pytest.importorskip("httpx")


PIP_INSTALL = (sys.executable, "-m", "pip", "install", "-q")
RUN_JSON = (sys.executable, "-m", "poolscope", "run", "--format", "json", "-o")


def row(server: LoopbackServer) -> Any:
    (pool,) = [p for p in poolscope.report().pools if p.origin == server.url]
    return pool


def advice(server: LoopbackServer) -> dict[str, Any]:
    return {a.rule: a for a in poolscope.report().advice if a.origin == server.url}


def threads_together(client: Any, url: str, n: int, rounds: int) -> None:
    for _ in range(rounds):
        workers = [threading.Thread(target=lambda: client.get(url).close()) for _ in range(n)]
        for worker in workers:
            worker.start()
        for worker in workers:
            worker.join()


def test_a_sync_client_is_counted_as_the_server_counts(instrumented: Metrics) -> None:
    with LoopbackServer("127.0.0.1", together=4) as server:
        with httpx.Client(limits=httpx.Limits(max_keepalive_connections=10)) as client:
            for _ in range(5):
                client.get(server.url + "/x")
            threads_together(client, server.url + "/together", 4, 3)
        counted = server.requests, server.connections
    pool = row(server)
    assert (pool.requests, pool.created) == counted
    assert pool.reused == pool.requests - pool.created > 0
    assert pool.library == "httpx" and pool.peak_in_use == 4
    assert pool.discarded == 0 and advice(server) == {}


def test_a_reuse_is_idle_until_its_request_goes_out_and_in_use_until_its_response_is_read(
    instrumented: Metrics,
) -> None:
    # /slow answers after 0.1 s, and the client waits 0.3 s between requests: each reuse sat
    # idle as long as the program's gap (not 0.1 s more: the response's wait is use), and
    # held its connection 0.1 s or more (not only the body's read).
    gaps: list[float] = []
    with LoopbackServer("127.0.0.1") as server:
        with httpx.Client() as client:
            client.get(server.url + "/slow")
            for _ in range(3):
                done = time.monotonic()
                time.sleep(0.3)
                gaps.append(time.monotonic() - done)
                client.get(server.url + "/slow")
        assert server.connections == 1
    pool = row(server)
    assert pool.reused == 3
    assert min(gaps) <= pool.idle_time_s["max"] < max(gaps) + 0.08, (pool.idle_time_s, gaps)
    assert pool.response_time_s["p50"] >= 0.1, pool.response_time_s


def test_more_busy_than_kept_idle_is_advised_in_httpx_words_and_the_number_holds(
    instrumented: Metrics,
) -> None:
    # Four threads at once through a pool that keeps two idle: httpcore closes the others as
    # they come back, and opens new ones for the next round.
    def run(keep: int) -> LoopbackServer:
        with LoopbackServer("127.0.0.1", together=4) as server:
            limits = httpx.Limits(max_connections=10, max_keepalive_connections=keep)
            with httpx.Client(limits=limits) as client:
                threads_together(client, server.url + "/together", 4, 3)
            assert (row(server).requests, row(server).created) == (
                server.requests,
                server.connections,
            )
        return server

    small = run(2)
    pool, said = row(small), advice(small)
    assert pool.discarded == pool.created - 2 > 0
    assert said["pool_maxsize"].change.startswith(
        "Raise max_keepalive_connections to 4: "
        "httpx.Client(limits=httpx.Limits(max_keepalive_connections=4))"
    )
    enough = run(4)
    assert row(enough).discarded == 0 and advice(enough) == {}
    assert row(enough).created == 4


def test_an_async_client_that_waits_is_advised_max_connections_and_the_number_holds(
    instrumented: Metrics,
) -> None:
    def run(most: int) -> LoopbackServer:
        async def six_at_once(url: str) -> None:
            limits = httpx.Limits(max_connections=most)
            async with httpx.AsyncClient(limits=limits) as client:
                await asyncio.gather(*[client.get(url) for _ in range(6)])

        with LoopbackServer("127.0.0.1") as server:
            asyncio.run(six_at_once(server.url + "/slow"))
            assert (row(server).requests, row(server).created) == (
                server.requests,
                server.connections,
            )
        return server

    small = run(2)
    pool, said = row(small), advice(small)
    assert pool.created == 2 and pool.waits >= 4 and pool.wait_timeouts == 0
    assert said["pool_block"].change.startswith(
        "Raise max_connections to 6: httpx.Client(limits=httpx.Limits(max_connections=6, "
        "max_keepalive_connections=6))"
    )
    enough = run(6)
    assert row(enough).waits == 0 and advice(enough) == {}


def getting(client: Any, url: str, timeouts: list[int]) -> threading.Thread:
    """A thread that gets ``url``, and notes a PoolTimeout in ``timeouts``."""

    def one() -> None:
        try:
            client.get(url)
        except httpx.PoolTimeout:
            timeouts.append(1)

    return threading.Thread(target=one)


def test_pool_timeouts_are_counted_as_the_program_saw_them(instrumented: Metrics) -> None:
    timeouts: list[int] = []
    with LoopbackServer("127.0.0.1") as server:
        limits = httpx.Limits(max_connections=1)
        with httpx.Client(limits=limits, timeout=httpx.Timeout(5, pool=0.05)) as client:
            workers = [getting(client, server.url + "/hold", timeouts) for _ in range(3)]
            for worker in workers:
                worker.start()
            deadline = time.monotonic() + 10
            while len(timeouts) < 2 and time.monotonic() < deadline:
                time.sleep(0.01)
            server.release()
            for worker in workers:
                worker.join()
    pool = row(server)
    assert len(timeouts) == 2
    assert pool.wait_timeouts == 2 and pool.waits == 2
    evidence = advice(server)["pool_block"].evidence
    assert "2 of them gave up after the pool timeout of 50 ms (httpx.PoolTimeout)" in evidence


def test_pool_timeouts_are_explained_and_each_fix_offered_holds(instrumented: Metrics) -> None:
    # Three threads through one connection, a pool timeout of 50 ms and responses of 100 ms:
    # two give up. The report says how many were in flight and how long they waited, and
    # offers more connections or a longer pool timeout with numbers that, applied, end the
    # timeouts (and, for the connections, the waits).
    def run(most: int, pool: float) -> tuple[LoopbackServer, int]:
        timeouts: list[int] = []
        with LoopbackServer("127.0.0.1") as server:
            limits, timeout = httpx.Limits(max_connections=most), httpx.Timeout(5, pool=pool)
            with httpx.Client(limits=limits, timeout=timeout) as client:
                workers = [getting(client, server.url + "/slow", timeouts) for _ in range(3)]
                for worker in workers:
                    worker.start()
                for worker in workers:
                    worker.join()
        return server, len(timeouts)

    server, timeouts = run(1, 0.05)
    said = advice(server)["pool_block"]
    assert timeouts == row(server).wait_timeouts == 2
    assert "up to 3 were in flight at once, 1 on connections and 2 waiting" in said.evidence
    assert "2 of them gave up after the pool timeout of 50 ms (httpx.PoolTimeout)" in said.evidence
    assert said.change.startswith("Raise max_connections to 3: ")
    longer = re.search(r"let requests wait longer: .*pool=([0-9.]+)\)\)", said.change)
    assert longer is not None, said.change
    server, timeouts = run(1, float(longer[1]))
    assert timeouts == row(server).wait_timeouts == 0 and row(server).waits >= 2
    server, timeouts = run(3, 0.05)
    assert timeouts == row(server).waits == 0 and advice(server) == {}


def test_more_tasks_at_once_than_a_pool_should_serve_are_told_to_be_bounded(
    instrumented: Metrics,
) -> None:
    async def crowd(url: str) -> None:
        async with httpx.AsyncClient(limits=httpx.Limits(max_connections=2)) as client:
            await asyncio.gather(*[client.get(url) for _ in range(200)])

    with LoopbackServer("127.0.0.1") as server:
        asyncio.run(crowd(server.url + "/x"))
    said = advice(server)["pool_block"]
    assert row(server).created == 2 and row(server).requests == server.requests == 200
    assert said.change.startswith(
        "200 requests at once is more than one pool should open connections for: Run at most "
        "2 request(s) at once (fewer worker threads, or an asyncio.Semaphore(2) around the tasks)"
    )


def test_closes_say_why(instrumented: Metrics) -> None:
    # Idle past httpx's keepalive_expiry, and idle past the server's keep-alive limit.
    with LoopbackServer("127.0.0.1") as ours, LoopbackServer("127.0.0.2", keepalive=0.2) as theirs:
        with httpx.Client(limits=httpx.Limits(keepalive_expiry=0.2)) as client:
            client.get(ours.url)
            time.sleep(0.4)
            client.get(ours.url)
        with httpx.Client() as client:
            client.get(theirs.url)
            time.sleep(0.4)
            client.get(theirs.url)
        counted = [(s.requests, s.connections) for s in (ours, theirs)]
    assert [(row(s).requests, row(s).created) for s in (ours, theirs)] == counted == [(2, 2)] * 2
    assert row(ours).dropped == 0 and row(theirs).dropped == 1
    kept = advice(theirs)["keepalive"]
    assert kept.evidence.startswith(f"1 pooled connection(s) to {theirs.url} were found closed")


def test_a_server_closing_idle_connections_is_advised_keepalive_expiry_and_the_number_holds(
    instrumented: Metrics,
) -> None:
    # The server closes connections idle 0.3 s; the client reuses one after 0.1 s, then
    # finds it closed after 0.5 s. Advised: close them past 0.1 s idle; applied, none is found
    # closed (httpx closes them first) and nothing is advised.
    def run(**limits: Any) -> LoopbackServer:
        with LoopbackServer("127.0.0.1", keepalive=0.3) as server:
            with httpx.Client(limits=httpx.Limits(**limits)) as client:
                for pause in (0.1, 0.5, 0.1, 0.5, 0):
                    client.get(server.url)
                    time.sleep(pause)
        return server

    idling = run()
    assert row(idling).dropped == 2 and row(idling).created == idling.connections == 3
    kept = advice(idling)["keepalive"]
    # The longest idle a connection survived: 0.1 s, or a little more on a busy machine.
    said = re.fullmatch(
        r"Close connections idle longer than ([\d.]+) s before the server does: "
        r"httpx\.Client\(limits=httpx\.Limits\(keepalive_expiry=([\d.]+)\)\)\.",
        kept.change,
    )
    assert said and said[1] == said[2] and 0.1 <= float(said[1]) < 0.3, kept.change
    expiring = run(keepalive_expiry=float(said[1]))
    pool = row(expiring)
    assert pool.dropped == 0 and advice(expiring) == {}
    # Closed by httpx instead, past that idle (the server's limit, 0.3 s, is not known).
    reasons = [c.close_reason for c in pool.connections]
    assert set(reasons[:-1]) == {"idle_expired"} and reasons[-1] == "pool_closed"


def test_a_second_client_to_the_host_does_not_change_the_first_ones_numbers(
    instrumented: Metrics,
) -> None:
    # A client that keeps 1 idle connection and opens 2 at most, for 4 threads at once (it
    # discards and waits); then a default client (20 kept idle) makes one request to the
    # same host. The advice is the first client's, as if it were alone.
    with LoopbackServer("127.0.0.1") as server:
        limits = httpx.Limits(max_connections=2, max_keepalive_connections=1)
        with httpx.Client(limits=limits) as small:
            workers = [
                threading.Thread(target=lambda: small.get(server.url + "/hold")) for _ in range(4)
            ]
            for worker in workers:
                worker.start()
            deadline = time.monotonic() + 10  # two held at the server, two waiting for them
            while (server.holding < 2 or row(server).waiting < 2) and time.monotonic() < deadline:
                time.sleep(0.01)
            server.release()
            for worker in workers:
                worker.join()
        with httpx.Client() as default:
            default.get(server.url)
    said = advice(server)
    assert said["pool_maxsize"].change.startswith("Raise max_keepalive_connections to 2:")
    assert "(max_keepalive_connections=1); up to 2 were in use" in said["pool_maxsize"].evidence
    assert "(the pool blocks, max_connections=2): up to 4 were in flight" in (
        said["pool_block"].evidence
    )


def test_a_pool_with_no_limit_says_so_rather_than_a_huge_size(instrumented: Metrics) -> None:
    # httpx's None is httpcore's sys.maxsize: no size in the row, the text or the metrics.
    with LoopbackServer("127.0.0.1") as server:
        limits = httpx.Limits(max_connections=None, max_keepalive_connections=None)
        with httpx.Client(limits=limits) as client:
            client.get(server.url)
    pool = row(server)
    assert pool.pool_maxsize == 0 and pool.peak_in_use == 1
    (line,) = [x for x in poolscope.report().render_text().splitlines() if server.url in x]
    assert line.rstrip().endswith("1/-")
    points = instrumented.collect()
    sizes = points.get("urllib3.pool.connections.max", [])
    assert not [p for p in sizes if p.attributes.get("server.port") == server.port]


def test_read_timeouts_that_reach_the_program_are_counted_and_the_advised_one_holds(
    instrumented: Metrics,
) -> None:
    # /slow answers after 0.1 s; a read timeout of 0.05 s fires on each of three requests
    # (httpx.ReadTimeout reaches the program), then one with no timeout times the response.
    def run(read: float | None, calls: int) -> tuple[LoopbackServer, int]:
        fired = 0
        with LoopbackServer("127.0.0.1") as server:
            with httpx.Client(timeout=httpx.Timeout(read, connect=5)) as client:
                for _ in range(calls):
                    try:
                        client.get(server.url + "/slow")
                    except httpx.ReadTimeout:
                        fired += 1
                client.get(server.url + "/slow", timeout=httpx.Timeout(10))
        return server, fired

    short, fired = run(0.05, 3)
    pool = row(short)
    assert fired == 3 and pool.read_timeouts == 3
    assert pool.errors == {"httpcore.ReadTimeout": 3}
    said = advice(short)["timeouts_firing"]
    assert said.evidence.startswith(f"3 read timeout(s) fired on requests to {short.url}")
    match = re.search(r"httpx\.Timeout\((\d+(?:\.\d+)?), connect=", said.change)
    assert said.change.startswith("Raise the read timeout: httpx.Client(") and match
    applied, fired = run(float(match.group(1)), 3)
    assert fired == 0 and row(applied).read_timeouts == 0
    assert "timeouts_firing" not in advice(applied)


def test_an_httpcore_too_old_to_instrument_is_named_under_incomplete(
    tmp_path: pathlib.Path,
) -> None:
    # The real httpcore 1.0.2 (from the package index), under poolscope run: nothing counted,
    # and the report says why rather than only that it saw no pool.
    old = tmp_path / "old"
    got = subprocess.run(
        [*PIP_INSTALL, "--no-deps", "--target", str(old), "httpcore==1.0.2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if got.returncode != 0:
        pytest.skip(f"httpcore 1.0.2 could not be installed: {got.stderr[-300:]}")
    app = tmp_path / "app.py"
    app.write_text("import sys, httpx\nwith httpx.Client() as c:\n    c.get(sys.argv[1])\n")
    report = tmp_path / "report.json"
    with LoopbackServer("127.0.0.1") as server:
        out = subprocess.run(
            [*RUN_JSON, str(report), "--", sys.executable, str(app), server.url],
            capture_output=True,
            text=True,
            timeout=120,
            env={**os.environ, "PYTHONPATH": str(old)},
        )
        assert server.requests == 1
    assert out.returncode == 0, out.stderr
    said = json.loads(report.read_text())
    assert said["pools"] == []
    assert said["incomplete"] == [
        "httpcore 1.0.2 was imported: poolscope instruments httpcore 1.0.3 and later, so "
        "requests made through httpx (and the SDKs on it) are not counted here; upgrade it: "
        "pip install 'httpcore>=1.0.3'."
    ]


def test_one_client_at_a_time_and_given_back() -> None:
    # No process-wide instrumentation: only the client named reports, until given back.
    with LoopbackServer("127.0.0.1") as server:
        mine, other = httpx.Client(), httpx.Client()
        provider = Metrics().provider
        assert poolscope.instrument_httpx_client(mine, meter_provider=provider, report=True) is mine
        for client in (mine, other, mine):
            client.get(server.url)
        assert (row(server).requests, row(server).created) == (2, 1)
        poolscope.uninstrument_httpx_client(mine)
        mine.get(server.url)
        assert row(server).requests == 2  # given back: not counted
        import httpcore

        assert not hasattr(httpcore.ConnectionPool.create_connection, "__wrapped__")
        mine.close(), other.close()
    # Again with the same options: harmless; with others: refused until given back.
    client = poolscope.instrument_httpx_client(httpx.Client(), mode="logging")
    assert poolscope.instrument_httpx_client(client, mode="logging") is client
    with pytest.raises(ValueError, match=r"already instrumented with other options .* first"):
        poolscope.instrument_httpx_client(client, report=True)
    poolscope.uninstrument_httpx_client(client)
    assert poolscope.instrument_httpx_client(client, report=True) is client
    poolscope.uninstrument_httpx_client(client)
    client.close()
    with pytest.raises(TypeError, match=r"for a requests\.Session use instrument_session"):
        poolscope.instrument_httpx_client(object())
