"""The report and its advice, through `poolscope run` on unmodified scripts.

For each advice rule a misconfigured script gets the advice with the right number, and the same
script changed as advised gets no advice and its waste counter drops to zero.
"""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
import subprocess
import sys
import textwrap
import threading
from typing import Any

import pytest

from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics

PRELUDE = """
import functools, sys, threading, time, requests
from requests.adapters import HTTPAdapter
A, B, C = sys.argv[1:4]
# Every request of these scripts has a timeout, as a healthy program's should: each script has
# one problem, its rule's (tests/test_timeouts_and_retries.py covers the timeout rules).
requests.Session.request = functools.partialmethod(requests.Session.request, timeout=(3.05, 10))

def together(session, url, n=2):
    ts = [threading.Thread(target=session.get, args=(url,)) for _ in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
"""

SCRIPTS: dict[str, tuple[str, str]] = {
    "pool_maxsize": (
        """
s = requests.Session(); s.mount("http://", HTTPAdapter(pool_maxsize={size}))
for _ in range(3):
    together(s, A + "/together")
""",
        "size",
    ),
    "pool_connections": (
        """
s = requests.Session(); s.mount("http://", HTTPAdapter(pool_connections={size}))
for _ in range(2):
    for url in (A, B, C):
        s.get(url)
""",
        "size",
    ),
    "pool_block": (
        """
s = requests.Session(); s.mount("http://", HTTPAdapter(pool_maxsize={size}, pool_block=True))
together(s, A + "/slow", 3)
""",
        "size",
    ),
}


def run(
    script: pathlib.Path, *servers: LoopbackServer, fmt: str = "json", extra: tuple[str, ...] = ()
) -> tuple[int, str]:
    written = script.with_suffix(".report")
    written.unlink(missing_ok=True)
    out = subprocess.run(
        [
            sys.executable,
            "-m",
            "poolscope",
            "run",
            "--format",
            fmt,
            *extra,
            "-o",
            str(written),
            "--",
            sys.executable,
            str(script),
            *(s.url for s in servers),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    return out.returncode, written.read_text() if written.exists() else out.stderr


def report_of(tmp_path: pathlib.Path, body: str, *servers: LoopbackServer) -> dict[str, Any]:
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + textwrap.dedent(body))
    code, stdout = run(script, *servers)
    assert code == 0, stdout
    return json.loads(stdout)  # type: ignore[no-any-return]


@pytest.fixture
def hosts() -> Any:
    with (
        LoopbackServer("127.0.0.1", together=2) as a,
        LoopbackServer("127.0.0.2") as b,
        LoopbackServer("127.0.0.3") as c,
    ):
        yield a, b, c


def waste(report: dict[str, Any]) -> int:
    return sum(a["waste"] for a in report["advice"])


@pytest.mark.parametrize(
    ("rule", "bad", "good", "change"),
    [
        ("pool_maxsize", 1, 2, "HTTPAdapter(pool_maxsize=2)"),
        ("pool_connections", 1, 3, "HTTPAdapter(pool_connections=3)"),
    ],
)
def test_sizing_advice_names_the_number_and_the_fix_silences_it(
    tmp_path: pathlib.Path, hosts: Any, rule: str, bad: int, good: int, change: str
) -> None:
    body = SCRIPTS[rule][0]
    report = report_of(tmp_path, body.format(size=bad), *hosts)
    (advice,) = report["advice"]
    assert advice["rule"] == rule
    if rule == "pool_connections":
        (manager,) = report["managers"]
        assert manager["pool_connections"] == 1 and len(manager["hosts"]) == 3
        assert (manager["pools_made"], manager["pools_evicted"], manager["pools_kept"]) == (6, 5, 1)
    assert change in advice["change"]
    assert advice["waste"] > 0
    fixed = report_of(tmp_path, body.format(size=good), *hosts)
    assert fixed["advice"] == [] and fixed["healthy"] and waste(fixed) == 0


def test_pool_block_waits_advise_the_pool_size(tmp_path: pathlib.Path) -> None:
    with LoopbackServer("127.0.0.1") as a:
        body = SCRIPTS["pool_block"][0]
        report = report_of(tmp_path, body.format(size=1), a, a, a)
        (advice,) = report["advice"]
        assert advice["rule"] == "pool_block" and advice["waste"] == 2
        assert "HTTPAdapter(pool_maxsize=3, pool_block=True)" in advice["change"]
        fixed = report_of(tmp_path, body.format(size=3), a, a, a)
        assert fixed["advice"] == [] and waste(fixed) == 0
        assert [p["waits"] for p in fixed["pools"]] == [0]


def test_throwaway_sessions_advise_one_session(tmp_path: pathlib.Path, hosts: Any) -> None:
    report = report_of(tmp_path, "for _ in range(6):\n    requests.get(A)\n", *hosts)
    (advice,) = report["advice"]
    assert advice["rule"] == "one_session" and advice["waste"] == 5
    assert "6 separate sessions" in advice["evidence"]
    fixed = report_of(
        tmp_path, "s = requests.Session()\nfor _ in range(6):\n    s.get(A)\n", *hosts
    )
    assert fixed["advice"] == [] and waste(fixed) == 0
    (pool,) = fixed["pools"]
    assert (pool["created"], pool["reused"]) == (1, 5)


def test_a_host_served_by_unlike_managers_is_broken_down_by_kind(
    tmp_path: pathlib.Path, hosts: Any
) -> None:
    body = """
for _ in range(3):
    requests.get(A)  # three throwaway sessions, alike
s = requests.Session(); s.mount("http://", HTTPAdapter(pool_maxsize=4))
for _ in range(5):
    s.get(A)
"""
    report = report_of(tmp_path, body, *hosts)
    (pool,) = report["pools"]
    assert pool["manager"] is None and pool["requests"] == 8
    assert [
        (k["managers"], k["pool_maxsize"], k["requests"], k["created"], k["reused"])
        for k in pool["manager_shares"]
    ] == [(1, 4, 5, 1, 4), (3, 10, 1, 1, 0)]
    code, text = run(tmp_path / "app.py", *hosts, fmt="text")
    assert code == 0
    session_id = pool["manager_shares"][0]["manager_ids"][0]
    rows = [ln.split() for ln in text.splitlines() if ln.startswith("    ")]
    # Under the host's row: each kind's requests, new, reused (each) and pool size.
    assert rows == [
        ["mgr", str(session_id), "5", "1", "4", "4"],
        ["3", "mgrs,", "each", "1", "1", "0", "10"],
    ]
    # Managers all alike (one Session, or only throwaway ones) are not broken down.
    alike = report_of(tmp_path, "for _ in range(3):\n    requests.get(A)\n", *hosts)
    assert alike["pools"][0]["manager_shares"] == []


def test_idle_gaps_longer_than_keepalive_advise_retries(tmp_path: pathlib.Path) -> None:
    with LoopbackServer("127.0.0.1", keepalive=0.2) as a:
        body = "s = requests.Session()\nfor _ in range(3):\n    s.get(A)\n    time.sleep({gap})\n"
        report = report_of(tmp_path, body.format(gap=0.5), a, a, a)
        (advice,) = report["advice"]
        assert advice["rule"] == "keepalive" and advice["waste"] == 2
        assert "after at most 0.5" in advice["evidence"]  # no reuse survived an idle gap
        fixed = report_of(tmp_path, body.format(gap=0.02), a, a, a)
        assert fixed["advice"] == [] and waste(fixed) == 0


def test_keepalive_advice_bounds_the_servers_idle_limit_from_both_sides(
    tmp_path: pathlib.Path,
) -> None:
    # The server closes connections idle for 0.3 s; the program idles 0.2 s (its connection is
    # reused) and 0.5 s (found closed). The advice must name a bound holding 0.3 s, and the
    # idle gap it advises must keep connections alive.
    body = (
        "s = requests.Session()\ns.get(A); time.sleep(0.2); s.get(A); time.sleep({gap}); s.get(A)\n"
    )
    with LoopbackServer("127.0.0.1", keepalive=0.3) as a:
        report = report_of(tmp_path, body.format(gap=0.5), a, a, a)
        (advice,) = report["advice"]
        assert advice["rule"] == "keepalive" and advice["waste"] == 1
        found = re.search(r"after between ([\d.]+) s and ([\d.]+) s", advice["evidence"])
        assert found, advice["evidence"]
        low, high = float(found.group(1)), float(found.group(2))
        assert 0.2 <= low <= 0.3 <= high <= 0.6
        gap = float(re.search(r"busier than every ([\d.]+) s", advice["change"]).group(1))
        fixed = report_of(tmp_path, body.format(gap=gap * 0.9), a, a, a)
        assert fixed["advice"] == [] and waste(fixed) == 0


def test_hosts_visited_once_each_are_not_told_to_raise_pool_connections(
    tmp_path: pathlib.Path,
) -> None:
    # Twelve hosts one after the other, never revisited: each eviction cost nothing.
    servers = [LoopbackServer(f"127.0.0.{n % 4 + 1}") for n in range(12)]
    for server in servers:
        server.start()
    try:
        urls = ", ".join(repr(s.url) for s in servers)
        body = (
            f"s = requests.Session()\nfor url in [{urls}]:\n"
            "    for _ in range(5):\n        s.get(url)\n"
        )
        report = report_of(tmp_path, body, servers[0], servers[0], servers[0])
    finally:
        for server in servers:
            server.stop()
    assert report["advice"] == [], report["advice"]
    assert sum(p["evictions"] for p in report["pools"]) == 2  # 12 hosts, 10 pools kept
    assert sum(s.connections for s in servers) == 12


def test_unread_streamed_responses_advise_reading_them(tmp_path: pathlib.Path, hosts: Any) -> None:
    bad = "s = requests.Session()\nkept = [s.get(A, stream=True) for _ in range(4)]\n"
    report = report_of(tmp_path, bad, *hosts)
    (advice,) = report["advice"]
    assert advice["rule"] == "read_responses" and advice["waste"] == 4
    good = (
        "s = requests.Session()\n"
        "for _ in range(4):\n"
        "    with s.get(A, stream=True) as r:\n"
        "        r.content\n"
    )
    fixed = report_of(tmp_path, good, *hosts)
    assert fixed["advice"] == [] and waste(fixed) == 0
    assert fixed["pools"][0]["reused"] == 3


@pytest.mark.parametrize(
    ("ending", "code"), [("sys.exit(3)", 3), ("raise RuntimeError('boom')", 1), ("pass", 0)]
)
def test_run_prints_the_report_however_the_program_ends(
    tmp_path: pathlib.Path, hosts: Any, ending: str, code: int
) -> None:
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + "s = requests.Session()\ns.get(A)\ns.get(A)\n" + ending + "\n")
    status, text = run(script, *hosts, fmt="text")
    assert status == code
    assert text.startswith("poolscope report: 1 pool(s)")
    assert "No problems found: 2 request(s), 50% on reused connections." in text


def test_run_needs_a_command() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "poolscope", "run"], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 2
    assert "poolscope run needs a command after '--'" in out.stderr


def test_report_in_process(hosts: Any) -> None:
    import requests
    from opentelemetry.sdk.metrics import MeterProvider

    import poolscope

    a = hosts[0]
    provider = MeterProvider()
    s = poolscope.instrument_session(requests.Session(), meter_provider=provider, report=True)
    for _ in range(4):
        s.get(a.url)
    mine = [p for p in poolscope.report().pools if p.port == a.port]
    assert [(p.created, p.reused, p.requests) for p in mine] == [(1, 3, 4)]
    assert mine[0].reuse_ratio == 0.75
    assert mine[0].connect_time_s["p50"] > 0
    assert len(mine[0].connections) == 1 and mine[0].connections[0].requests == 4
    provider.shutdown()


def test_pool_block_advice_is_per_pool_when_several_sessions_wait_at_once(
    tmp_path: pathlib.Path,
) -> None:
    # Three sessions, each pool_maxsize=1 with two threads, all at once: each pool needed 2,
    # however many requests waited across the three pools together.
    body = (
        "sessions = [requests.Session() for _ in range(3)]\n"
        "for s in sessions:\n"
        "    s.mount('http://', HTTPAdapter(pool_maxsize=1, pool_block=True))\n"
        "ts = [threading.Thread(target=together, args=(s, A + '/slow')) for s in sessions]\n"
        "for t in ts: t.start()\n"
        "for t in ts: t.join()\n"
    )
    with LoopbackServer("127.0.0.1") as a:
        report = report_of(tmp_path, body, a, a, a)
    (advice,) = report["advice"]
    assert advice["rule"] == "pool_block" and advice["waste"] == 3
    assert "HTTPAdapter(pool_maxsize=2, pool_block=True)" in advice["change"]
    (pool,) = report["pools"]  # one row for the host, made by three managers
    assert pool["manager"] is None and pool["waits"] == 3 and pool["created"] == 3


def test_a_second_session_to_the_host_does_not_change_the_first_ones_number(
    tmp_path: pathlib.Path,
) -> None:
    # pool_maxsize=1 for two threads at once (it discards), then a default Session (10) makes
    # one request to the same host: the advice is the small pool's, 2, not 10 + 1.
    body = (
        "small = requests.Session(); small.mount('http://', HTTPAdapter(pool_maxsize=1))\n"
        "for _ in range(3):\n"
        "    together(small, A + '/together')\n"
        "requests.Session().get(A)\n"
    )
    with LoopbackServer("127.0.0.1", together=2) as a:
        report = report_of(tmp_path, body, a, a, a)
    (advice,) = report["advice"]
    assert advice["change"].startswith("Raise pool_maxsize to 2: HTTPAdapter(pool_maxsize=2)")
    assert "(pool_maxsize=1); up to 2 were in use" in advice["evidence"]


def test_a_session_instrumented_after_it_connected_reports_its_reuses(hosts: Any) -> None:
    import requests

    import poolscope

    a = hosts[0]
    s = requests.Session()
    s.get(a.url)
    poolscope.instrument_session(s, mode="logging", report=True)
    for _ in range(3):
        s.get(a.url)
    mine = [p for p in poolscope.report().pools if p.port == a.port]
    assert [(p.created, p.reused, p.requests) for p in mine] == [(0, 3, 3)]
    assert a.connections == 1
    poolscope.uninstrument_session(s)


def test_a_pool_that_worked_before_the_report_began_lends_it_nothing(hosts: Any) -> None:
    # A pool of pool_maxsize=10 works, then the report begins and another pool to the same
    # host, pool_maxsize=2 and blocking, makes three threads wait: the row is the second
    # pool's alone, its maxsize too, and the advice's number is what it needed (2 + 3), not
    # the first pool's 10 plus the waiters.
    import requests
    from requests.adapters import HTTPAdapter

    import poolscope

    a = hosts[0]
    before = requests.Session()
    before.mount("http://", HTTPAdapter(pool_maxsize=10))
    poolscope.instrument_session(before, meter_provider=Metrics().provider)
    before.get(a.url)
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=2, pool_block=True))
    poolscope.instrument_session(s, meter_provider=Metrics().provider, report=True)
    workers = [threading.Thread(target=s.get, args=(a.url + "/slow",)) for _ in range(5)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()
    (mine,) = [p for p in poolscope.report().pools if p.port == a.port]
    assert (mine.requests, mine.created, mine.pool_maxsize) == (5, 2, 2)
    said = {x.rule: x for x in poolscope.report().advice if x.origin == a.url}
    assert mine.waits == 3
    change = said["pool_block"].change
    assert change.startswith("Raise pool_maxsize to 5: HTTPAdapter(pool_maxsize=5, ")
    poolscope.uninstrument_session(before)
    poolscope.uninstrument_session(s)


def test_each_sample_reservoir_counts_only_its_own_samples(monkeypatch: pytest.MonkeyPatch) -> None:
    # With room for one sample, the second connect time must replace the first half the time,
    # however many reuses came between (a shared count made it 1 in 1,002).
    from poolscope.core.events import EventKind, PoolEvent, PoolKey
    from poolscope.core.recorder import Recorder
    from poolscope.reporting import records as _report

    monkeypatch.setattr(_report, "SAMPLES", 1)
    random = __import__("random").Random(7)
    monkeypatch.setattr(_report.random, "randrange", random.randrange)
    key = PoolKey("http", "127.0.0.1", 80)
    replaced = 0
    for _ in range(200):
        recorder = Recorder()
        recorder.claim(key)  # as a pool does when it is made, before its events
        sink = _report.ReportSink(recorder)
        sink.handle(PoolEvent(EventKind.CREATED, key, 1, duration=1.0, pool_id=1))
        for _ in range(1000):
            sink.handle(PoolEvent(EventKind.REUSED, key, 1, duration=None, pool_id=1))
            sink.handle(PoolEvent(EventKind.REUSED, key, 1, duration=0.5, pool_id=1))
        sink.handle(PoolEvent(EventKind.CREATED, key, 2, duration=2.0, pool_id=1))
        (samples,) = sink.samples.values()
        replaced += samples.connect_times == [2.0]
    assert 60 < replaced < 140, replaced


def test_eleven_thousand_throwaway_sessions_give_one_row_and_say_what_was_left_out(
    tmp_path: pathlib.Path,
) -> None:
    with LoopbackServer("127.0.0.1") as a:
        report = report_of(tmp_path, "for _ in range(11_000):\n    requests.get(A)\n", a, a, a)
    (pool,) = report["pools"]  # one row for the host, however many sessions
    assert (pool["requests"], pool["created"]) == (11_000, 11_000) == (a.requests, a.connections)
    assert report["left_out"] == [
        "pool objects: 10000 of 11000 kept for the manager lines and the timeline (1000 left out)",
        "connect times: percentiles from a uniform sample of 10000 of 11000",
    ]
    assert [advice["rule"] for advice in report["advice"]] == ["one_session"]


def test_many_hosts_give_the_hosts_that_matter_then_one_line_for_the_rest(
    tmp_path: pathlib.Path,
) -> None:
    # 60 hosts visited once each (evicted in turn from a pool_connections=10 session: no waste),
    # and one whose pool is too small: its row comes first, 40 rows in all, then the rest.
    script = tmp_path / "app.py"
    script.write_text(
        PRELUDE
        + textwrap.dedent(
            """
            small = requests.Session(); small.mount("http://", HTTPAdapter(pool_maxsize=1))
            for _ in range(3):
                together(small, A + "/together")
            s = requests.Session()
            for url in sys.argv[4:]:
                s.get(url)
            """
        )
    )
    with LoopbackServer("127.0.0.1", together=2) as a, contextlib.ExitStack() as stack:
        others = [stack.enter_context(LoopbackServer("127.0.0.1")) for _ in range(60)]
        hosts = [a, a, a, *others]  # A, B and C of the prelude are all A
        page = tmp_path / "page.html"
        code, text = run(script, *hosts, fmt="text", extra=("--html", str(page)))
        code_all, text_all = run(script, *hosts, fmt="text", extra=("--all-hosts",))
        servers = [a, *others]
        requests = sum(s.requests for s in servers) // 2  # each script ran twice
        connections = sum(s.connections for s in servers) // 2
    assert code == code_all == 0, text
    assert text.startswith("poolscope report: 61 pool(s)")
    rows = [line for line in text.splitlines() if line.startswith("http://127.0.0.1:")]
    assert len(rows) == 40
    assert rows[0].startswith(a.url)  # the host the advice names
    (line,) = [line for line in text.splitlines() if "other host(s)" in line]
    rest = line.partition(" (all hosts kept:")[0]
    counts = [int(n) for n in re.findall(r"(\d+) ", rest)]
    assert counts[:4] == [21, 21, 21, 0]  # hosts, requests, connections, discarded
    shown = sum(int(row.split()[2]) for row in rows)  # the reqs column
    assert shown + counts[1] == requests == 6 + 60
    assert sum(int(row.split()[3]) for row in rows) + counts[2] == connections
    assert "[pool_maxsize]" in text
    assert "(mgr: the manager that made the host's pools" in text  # the column explained
    html = page.read_text()
    assert html.count('<section class="pool">') == 40
    assert f'<p class="rest">{rest}</p>' in html  # the same line on the page
    assert "other host(s)" not in text_all
    rows_all = [line for line in text_all.splitlines() if line.startswith("http://127.0.0.1:")]
    assert len(rows_all) == 61
