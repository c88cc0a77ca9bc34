"""Timeouts and retries in the report, through ``poolscope run`` as a user runs it: requests sent
with no timeout, errors urllib3 did not retry, read timeouts that fired; and nothing to change
for a program that sets its timeouts and retries."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest
import requests

import poolscope
from poolscope.loopback import LoopbackServer
from poolscope.reporting.timeouts import suggested_read_timeout

from .support.metrics import Metrics
from .support.programs import RUN, run_program
from .support.scripted import CloseOnReuse, full_backlog

GETS = """
import sys, requests
url = sys.argv[1]
s = requests.Session()
for path in ["/slow", "/", "/", "/slow", "/"] * 2:
    s.get(url + path{timeout})
print("done")
"""


def test_no_timeout_gets_one_derived_from_the_response_times(tmp_path: pathlib.Path) -> None:
    with LoopbackServer() as server:
        out, report = run_program(tmp_path, GETS.format(timeout=""), server.url)
    assert out.returncode == 0, out.stderr
    assert report is not None
    (pool,) = report["pools"]
    assert pool["no_read_timeout"] == 10 and pool["no_connect_timeout"] == 1
    times = pool["response_time_s"]
    assert 0.1 <= times["max"] < 1 and times["p50"] < 0.1  # /slow sleeps 0.1 s
    (advice,) = report["advice"]
    assert advice["rule"] == "timeout" and advice["waste"] == 11
    # Four times the p99 (about 0.1 s here), never below the slowest, rounded up: 1 s.
    assert suggested_read_timeout(times) == 1.0
    assert "session.get(url, timeout=(3.05, 1))" in advice["change"]
    assert "10 request(s) to http://127.0.0.1:" in advice["evidence"]
    assert f"{times['max']:.3f} s at the slowest" in advice["evidence"]


def test_the_same_program_with_timeouts_gets_no_advice(tmp_path: pathlib.Path) -> None:
    with LoopbackServer() as server:
        script = GETS.format(timeout=", timeout=(3.05, 10)")
        out, report = run_program(tmp_path, script, server.url)
    assert out.returncode == 0, out.stderr
    assert report is not None
    (pool,) = report["pools"]
    assert (pool["no_read_timeout"], pool["no_connect_timeout"]) == (0, 0)
    assert pool["requests"] == 10
    assert report["advice"] == []


RESET = """
import sys, requests, urllib3
from requests.adapters import HTTPAdapter
url = sys.argv[1]
s = requests.Session()
{mount}
for _ in range(3):
    try:
        s.get(url, timeout=(3.05, 10))
        print("ok")
    except requests.ConnectionError as exc:
        print("failed", type(exc).__name__)
"""


def test_a_reset_on_reuse_without_retries_gets_the_retries_advice(
    tmp_path: pathlib.Path,
) -> None:
    server = CloseOnReuse()
    try:
        out, report = run_program(tmp_path, RESET.format(mount=""), server.url)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ok", "failed ConnectionError", "ok"]
    assert report is not None
    (pool,) = report["pools"]
    assert pool["errors"] == {"http.client.RemoteDisconnected": 1}
    assert pool["retries"] == {}
    assert pool["retry_setting"].startswith("Retry(total=0,")  # requests' default
    (advice,) = [a for a in report["advice"] if a["rule"] == "retries"]
    assert advice["waste"] == 1
    assert "1 request(s) to http://127.0.0.1:" in advice["evidence"]
    assert "kept-alive connection as it was reused" in advice["evidence"]
    assert (
        "HTTPAdapter(max_retries=urllib3.Retry(total=3, backoff_factor=0.5))" in (advice["change"])
    )


def test_the_same_reset_with_retries_is_retried_and_gets_no_advice(
    tmp_path: pathlib.Path,
) -> None:
    server = CloseOnReuse()
    mount = 's.mount("http://", HTTPAdapter(max_retries=urllib3.Retry(total=3)))'
    try:
        out, report = run_program(tmp_path, RESET.format(mount=mount), server.url)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["ok"] * 3
    assert report is not None
    (pool,) = report["pools"]
    assert pool["retries"] == {"http.client.RemoteDisconnected": 1}
    assert pool["errors"] == {}
    assert server.connections == 2 == pool["created"]
    assert report["advice"] == []


SLOW = """
import sys, requests
url = sys.argv[1]
s = requests.Session()
for path in ["/"] * 20 + ["/hold"] * 3:  # /hold answers only once released: always late
    try:
        s.get(url + path, timeout=(3.05, 0.5))  # far above a fast answer, even on a busy machine
    except requests.ReadTimeout:
        print("timed out")
"""


def test_a_slow_endpoint_with_a_short_read_timeout_gets_the_timeouts_advice(
    tmp_path: pathlib.Path,
) -> None:
    # Not /slow (0.1 s): a client descheduled that long between sending and reading, as on a
    # loaded CI machine, finds the answer waiting and does not time out.
    with LoopbackServer() as server:
        out, report = run_program(tmp_path, SLOW, server.url)  # stop() releases /hold
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == ["timed out"] * 3
    assert report is not None
    (pool,) = report["pools"]
    assert pool["read_timeouts"] == 3 and pool["connect_timeouts"] == 0
    assert pool["errors"] == {"urllib3.exceptions.ReadTimeoutError": 3}
    rules = sorted(a["rule"] for a in report["advice"])
    assert rules == ["timeouts_firing"]  # a timeout is not an error to retry blindly
    (advice,) = report["advice"]
    assert advice["waste"] == 3
    assert "3 read timeout(s) fired" in advice["evidence"]
    assert "(read timeout 0.5 s)" in advice["evidence"]
    assert "the server stalls on some requests" in advice["evidence"]


def test_the_same_facts_are_metrics(metrics: Metrics) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    with LoopbackServer() as server:
        s.get(server.url)  # no timeout
        s.get(server.url, timeout=(3.05, 10))
        with pytest.raises(requests.ReadTimeout):
            s.get(server.url + "/hold", timeout=(3.05, 0.02))  # answered at stop(): late
    reset = CloseOnReuse()
    try:
        plain = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
        plain.get(reset.url, timeout=(3.05, 10))
        with pytest.raises(requests.ConnectionError):
            plain.get(reset.url, timeout=(3.05, 10))
    finally:
        reset.close()
    points = metrics.collect()
    for name in (
        "urllib3.pool.requests.without_timeout",
        "urllib3.pool.connections.without_timeout",
        "urllib3.pool.timeouts.read",
        "urllib3.pool.timeouts.connect",
        "urllib3.pool.errors",
    ):
        assert points[name], name  # exported, whatever its value
    local = {"server__port": server.port}
    assert metrics.value(points, "urllib3.pool.requests.without_timeout", **local) == 1
    assert metrics.value(points, "urllib3.pool.connections.without_timeout", **local) == 1
    assert metrics.value(points, "urllib3.pool.timeouts.read", **local) == 1
    assert metrics.value(points, "urllib3.pool.timeouts.connect", **local) == 0
    errors = {"error__type": "urllib3.exceptions.ReadTimeoutError", **local}
    assert metrics.value(points, "urllib3.pool.errors", **errors) == 1
    resets = {"server__port": reset.port, "error__type": "http.client.RemoteDisconnected"}
    assert metrics.value(points, "urllib3.pool.errors", **resets) == 1
    assert (
        metrics.value(points, "urllib3.pool.requests.without_timeout", server__port=reset.port) == 0
    )


def test_the_text_report_shows_them_under_the_host(tmp_path: pathlib.Path) -> None:
    script = tmp_path / "app.py"
    script.write_text(SLOW)
    with LoopbackServer() as server:
        out = subprocess.run(
            [*RUN, "--", sys.executable, str(script), server.url],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    (line,) = [ln.strip() for ln in out.stderr.splitlines() if "timeouts fired" in ln]
    assert line.startswith("responses ms p50/p99/max ")
    assert line.endswith(
        "timeouts fired: 3 read, 0 connect; errors: 3 urllib3.exceptions.ReadTimeoutError"
    )
    assert "[timeouts_firing] 3 read timeout(s) fired" in out.stderr


AFTER_ERRORS = """
import sys, requests, urllib3
from requests.adapters import HTTPAdapter
url = sys.argv[1]
s = requests.Session()
s.mount("http://", HTTPAdapter(max_retries=urllib3.Retry(total=3)))
s.get(url, timeout=(3.05, 10))
try:
    {{}}["missing"]
except KeyError:
    # The program's own exception is being handled while this request is made: the reset
    # (retried) is still a retry, and the KeyError is not the request's error.
    print(s.{method}(url, timeout=(3.05, 10)).status_code)
"""


def test_an_exception_the_program_is_handling_is_not_the_requests(
    tmp_path: pathlib.Path,
) -> None:
    server = CloseOnReuse()
    try:
        out, report = run_program(tmp_path, AFTER_ERRORS.format(method="get"), server.url)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "200\n"
    assert report is not None
    (pool,) = report["pools"]
    assert pool["retries"] == {"http.client.RemoteDisconnected": 1}
    assert pool["errors"] == {} and report["advice"] == []


def test_a_broken_post_with_retries_set_is_not_told_to_set_retries(
    tmp_path: pathlib.Path,
) -> None:
    # urllib3 never retries a POST whose connection broke while reading: Retry would not help.
    server = CloseOnReuse()
    script = (
        AFTER_ERRORS.format(method="post")
        .replace("print(s.post", "try:\n        s.post")
        .replace(
            ".status_code)",
            "\n    except requests.ConnectionError as exc:\n        print(type(exc).__name__)",
        )
    )
    try:
        out, report = run_program(tmp_path, script, server.url)
    finally:
        server.close()
    assert out.returncode == 0, out.stderr
    assert out.stdout == "ConnectionError\n"
    assert report is not None
    (pool,) = report["pools"]
    assert pool["errors"] == {"http.client.RemoteDisconnected": 1}
    assert pool["unretried"] == {} and pool["retries"] == {}
    assert [a["rule"] for a in report["advice"]] == []


def test_a_connect_timeout_is_counted_as_one(metrics: Metrics) -> None:
    with full_backlog() as port:
        s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
        with pytest.raises(requests.ConnectTimeout):
            s.get(f"http://127.0.0.1:{port}/", timeout=(0.2, 10))
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.timeouts.connect", server__port=port) == 1
    assert metrics.value(points, "urllib3.pool.timeouts.read", server__port=port) == 0
    errors = {"server__port": port, "error__type": "urllib3.exceptions.ConnectTimeoutError"}
    assert metrics.value(points, "urllib3.pool.errors", **errors) == 1


FORKED = """
import os, sys, requests
url = sys.argv[1]
s = requests.Session()
for _ in range(10):
    s.get(url + "/slow", timeout=(3.05, 10))
children = []
for _ in range(3):
    pid = os.fork()
    if pid == 0:
        c = requests.Session()
        for _ in range(10):
            c.get(url, timeout=(3.05, 10))
        os._exit(0)
    children.append(pid)
for pid in children:
    os.waitpid(pid, 0)
"""


def test_forked_children_do_not_repeat_their_parents_response_times(
    tmp_path: pathlib.Path,
) -> None:
    with LoopbackServer() as server:
        out, report = run_program(tmp_path, FORKED, server.url)
    assert out.returncode == 0, out.stderr
    assert report is not None
    (pool,) = report["pools"]
    assert pool["requests"] == 40
    times = pool["response_time_s"]
    assert times["p50"] < 0.05 <= times["max"]  # 10 slow of 40, each counted once
