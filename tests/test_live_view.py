"""`poolscope top` and `poolscope report` beside a `poolscope run` in progress, as a person uses
them: the live table in a real terminal (tmux: send-keys, capture-pane), lines when its output
is not a terminal, and the report of a running program, each checked against the server's
counts while the program runs."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from poolscope.loopback import LoopbackServer

from .support.binaries import require
from .support.programs import RUN
from .support.terminal import Pane

POOLSCOPE = [sys.executable, "-m", "poolscope"]

# 6 threads through one Session (pool_maxsize=10): 5 requests each, then one to /hold, which the
# server answers once the test releases it, then 4 more each; then it idles until stopped. The
# program prints nothing: the live view is in another terminal.
SERVICE = """
import sys, threading, time, requests
s = requests.Session()
s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=10))
def work():
    for _ in range(5):
        s.get(sys.argv[1])
    s.get(sys.argv[1] + "/hold")
    for _ in range(4):
        s.get(sys.argv[1])
threads = [threading.Thread(target=work) for _ in range(6)]
for t in threads:
    t.start()
for t in threads:
    t.join()
time.sleep(60)
"""


def until(condition: Callable[[], Any], timeout: float = 20.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


@pytest.fixture
def service(tmp_path: pathlib.Path) -> Iterator[tuple[LoopbackServer, subprocess.Popen[str]]]:
    """The service under `poolscope run --interval 0.2`, and its server."""
    (tmp_path / "service.py").write_text(textwrap.dedent(SERVICE))
    with LoopbackServer("127.0.0.1") as server:
        proc = subprocess.Popen(
            [
                *RUN,
                "--interval",
                "0.2",
                "--",
                sys.executable,
                str(tmp_path / "service.py"),
                server.url,
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,
        )
        try:
            yield server, proc
        finally:
            proc.terminate()
            proc.communicate(timeout=30)


def held(server: LoopbackServer) -> None:
    """Wait until the six threads made their 5 requests each and sent the /hold one."""
    until(lambda: server.requests == 30 and server.holding == 6)
    time.sleep(0.5)  # a snapshot or two taken since


def row_with(pane: Pane, origin: str, requests: int) -> dict[str, str] | None:
    """The row of ``origin`` once it shows ``requests`` requests."""
    found = row(pane.screen(), origin)
    return found if found is not None and found["reqs"] == str(requests) else None


def row(screen: str, origin: str) -> dict[str, str] | None:
    """The table row of ``origin`` on a screen of ``poolscope top``, by column name."""
    header = next((line for line in screen.splitlines() if "in use" in line), None)
    line = next((line for line in screen.splitlines() if f"│ {origin} " in line), None)
    if header is None or line is None:
        return None
    names = [c.strip() for c in re.split(r"[┃│]", header)[1:-1]]
    values = [c.strip() for c in re.split(r"[┃│]", line)[1:-1]]
    return dict(zip(names, values, strict=True))


def test_top_shows_each_host_live_in_a_terminal(
    service: tuple[LoopbackServer, subprocess.Popen[str]],
) -> None:
    tmux = require("tmux", "tmux")
    server, proc = service
    held(server)
    pane = Pane(tmux, f"poolscope-top-{os.getpid()}")
    try:
        command = shlex.join([*POOLSCOPE, "top", "--interval", "0.2", "--pid", str(proc.pid)])
        pane.type(f"{command}; echo top ended: $?", "Enter")
        # 30 answered, 6 in flight on /hold: 36 requests, 6 connections in use, none idle.
        while_held = until(lambda: row_with(pane, server.url, 36))
        assert (while_held["in use"], while_held["idle"], while_held["size"]) == ("6", "0", "10")
        assert while_held["waiting"] == "0"
        assert server.requests == 30 and server.connections == 6
        assert "[timeout]" in pane.screen()  # the advice, as soon as it holds
        server.release()
        until(lambda: server.requests == 60)
        # All 60 answered: every connection back in the pool, idle, and no new one.
        after = until(lambda: row_with(pane, server.url, 60))
        assert (after["in use"], after["idle"], after["reuse"]) == ("0", "6", "90%")
        assert server.connections == 6
        pane.type("C-c")
        until(lambda: "top ended: 130" in pane.screen())
        assert proc.poll() is None  # the program goes on
    finally:
        pane.close()


def test_top_prints_lines_when_its_output_is_not_a_terminal(
    service: tuple[LoopbackServer, subprocess.Popen[str]],
) -> None:
    server, proc = service
    held(server)
    top = subprocess.Popen(
        [*POOLSCOPE, "top", "--interval", "0.2", "--pid", str(proc.pid)],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert top.stdout is not None
    lines = []
    try:
        while not any("reqs=36" in line for line in lines) or "advice" not in lines[-1]:
            lines.append(top.stdout.readline())
    finally:
        top.terminate()
        top.communicate(timeout=10)
    assert lines[0].startswith(f"poolscope top: pid {proc.pid}: ")
    (seen,) = [line for line in lines if "reqs=36" in line][:1]
    assert f" {server.url} in_use=6 idle=0 size=10 waiting=0 reqs=36 " in seen
    assert any(" advice: [timeout] " in line for line in lines)


def test_report_prints_the_report_of_a_run_in_progress(
    service: tuple[LoopbackServer, subprocess.Popen[str]], tmp_path: pathlib.Path
) -> None:
    server, proc = service
    held(server)

    def report_now() -> dict[str, Any]:
        now = subprocess.run(
            [*POOLSCOPE, "report", "--format", "json", "--pid", str(proc.pid)],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert now.returncode == 0, now.stderr
        assert now.stderr.startswith(f"poolscope report: pid {proc.pid} is still running")
        return json.loads(now.stdout)  # type: ignore[no-any-return]

    # As of the last snapshot, at most an interval (0.2 s) behind the server.
    def caught_up() -> dict[str, Any] | None:
        report = report_now()
        return report if report["pools"][0]["requests"] == 36 else None

    report = until(caught_up)
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"], pool["in_use"]) == (36, 6, 6)
    assert server.connections == 6
    assert "read_responses" not in [a["rule"] for a in report["advice"]]  # in flight, not leaks
    page = tmp_path / "now.html"
    text = subprocess.run(
        [*POOLSCOPE, "report", "--pid", str(proc.pid), "--html", str(page)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert text.stdout.startswith("poolscope report: 1 pool(s)")
    assert page.read_text().startswith("<!doctype html>")
    assert proc.poll() is None  # still running


def test_report_and_top_say_how_to_start_a_run_when_none_is_running() -> None:
    for command in ("report", "top"):
        out = subprocess.run(
            [*POOLSCOPE, command, "--pid", "1"], capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 1
        assert out.stderr.startswith(f"poolscope {command}: No poolscope run with pid 1 ")
