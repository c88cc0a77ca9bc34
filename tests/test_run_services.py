"""`poolscope run` on services: stopped the way services stop (SIGTERM, SIGINT, SIGHUP, sent to
the process group or to poolscope run alone), killed outright after a snapshot, and with
multiprocessing workers terminated by their pool. Real signals to real process groups."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shlex
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable
from typing import Any

import pytest

from poolscope.loopback import LoopbackServer

from .support.binaries import require
from .support.programs import RUN, run_program
from .support.terminal import Pane

# 16 threads share one Session (pool_maxsize=10): each makes 5 requests, then one to /hold,
# which the server answers only once the test releases it. So when the test stops the service,
# 80 requests are done and 16 are in flight, and the server's final counts are known: 96
# requests on 16 connections.
SERVICE = """
import signal, sys, threading, time, requests
s = requests.Session()
s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=10))
def work():
    for _ in range(5):
        s.get(sys.argv[1], timeout=(3.05, 30))
    s.get(sys.argv[1] + "/hold", timeout=(3.05, 30))
threads = [threading.Thread(target=work, daemon=True) for _ in range(16)]
for t in threads:
    t.start()
print("serving", flush=True)
"""
FOREVER = """
while True:
    time.sleep(1)
"""
THREADS, DONE, HELD = 16, 80, 16


def start(tmp_path: pathlib.Path, script: str, *args: str, interval: float = 1.0) -> Any:
    """``poolscope run`` of ``script`` in a process group of its own, as a shell starts a job;
    returns the Popen once the program printed its first line."""
    (tmp_path / "app.py").write_text(textwrap.dedent(script))
    proc = subprocess.Popen(
        [
            *RUN,
            *("--interval", str(interval), "--format", "json", "-o", str(tmp_path / "r.json")),
            *("--", sys.executable, str(tmp_path / "app.py"), *args),
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first, proc.stderr.read() if proc.stderr else ""
    return proc


def until(condition: Callable[[], bool], timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def finish(proc: Any, tmp_path: pathlib.Path) -> tuple[int, str, str, dict[str, Any] | None]:
    try:
        out, err = proc.communicate(timeout=60)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # nothing left behind by a hung program
        raise
    written = tmp_path / "r.json"
    return proc.returncode, out, err, json.loads(written.read_text()) if written.exists() else None


def service_under_way(server: LoopbackServer) -> None:
    # Every thread's 5 requests answered, and its /hold request waiting at the server.
    until(lambda: server.requests == DONE and server.holding == HELD)


@pytest.mark.parametrize(
    ("signum", "to_group"),
    [
        (signal.SIGTERM, True),  # systemd's and `kill -TERM -PGID`'s way
        (signal.SIGTERM, False),  # docker stop and Kubernetes: poolscope run is PID 1
        (signal.SIGINT, False),  # kill -INT to poolscope run, which passes it on
        (signal.SIGHUP, True),  # the terminal closed
    ],
    ids=["TERM-group", "TERM-run-only", "INT-run-only", "HUP-group"],
)
def test_a_service_stopped_by_a_signal_is_reported_with_the_servers_counts(
    tmp_path: pathlib.Path, signum: int, to_group: bool
) -> None:
    with LoopbackServer("127.0.0.1") as server:
        proc = start(tmp_path, SERVICE + FOREVER, server.url)
        service_under_way(server)
        if to_group:
            os.killpg(proc.pid, signum)
        else:
            proc.send_signal(signum)
        code, _, err, report = finish(proc, tmp_path)
        server.release()  # the held requests are answered to nobody, and counted
        until(lambda: server.requests == DONE + HELD)
    assert code == -signum, err  # poolscope run dies of it too
    assert report is not None, err
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (DONE + HELD, THREADS)
    assert (server.requests, server.connections) == (DONE + HELD, THREADS)
    assert pool["in_use"] == HELD  # in flight as it stopped: not leaks
    assert "read_responses" not in [a["rule"] for a in report["advice"]]
    assert report["incomplete"] == []
    assert report["processes"] == 1


def test_a_service_with_its_own_sigterm_handler_keeps_its_behaviour(
    tmp_path: pathlib.Path,
) -> None:
    script = (
        SERVICE
        + """
stopping = threading.Event()
def on_term(signum, frame):
    print("draining", flush=True)
    stopping.set()
signal.signal(signal.SIGTERM, on_term)
stopping.wait()
sys.exit(3)
"""
    )
    with LoopbackServer("127.0.0.1") as server:
        proc = start(tmp_path, script, server.url)
        service_under_way(server)
        proc.send_signal(signal.SIGTERM)  # to poolscope run, which passes it on once
        code, out, err, report = finish(proc, tmp_path)
        server.release()
    assert (code, out) == (3, "draining\n"), err
    assert report is not None
    assert report["pools"][0]["requests"] == DONE + HELD
    assert "read_responses" not in [a["rule"] for a in report["advice"]]


def test_a_sigterm_taken_by_another_thread_still_ends_a_program_blocked_in_join(
    tmp_path: pathlib.Path,
) -> None:
    # Python runs handlers on the main thread only, and this one waits in join() for a thread
    # that never ends: had poolscope's handler nobody to wake it, the program would hang.
    script = """
import signal, sys, threading, requests
def work():
    requests.get(sys.argv[1])
    print("sending", flush=True)
    signal.pthread_kill(threading.get_ident(), signal.SIGTERM)  # to this thread, not main
    threading.Event().wait()
t = threading.Thread(target=work)
t.start()
t.join()
"""
    with LoopbackServer("127.0.0.1") as server:
        proc = start(tmp_path, script, server.url)
        code, _, err, report = finish(proc, tmp_path)
    assert code == -signal.SIGTERM, err
    assert report is not None and report["pools"][0]["requests"] == 1 == server.requests


def in_a_terminal(tmp_path: pathlib.Path, script: str, url: str) -> Pane:
    """``poolscope run`` of ``script`` typed into a real terminal; the report goes to r.json."""
    (tmp_path / "app.py").write_text(textwrap.dedent(script))
    pane = Pane(require("tmux", "tmux"), f"poolscope-run-{os.getpid()}")
    command = [*RUN, "--format", "json", "-o", str(tmp_path / "r.json")]
    command += ["--", sys.executable, str(tmp_path / "app.py"), url]
    pane.type(shlex.join(command), "Enter")
    return pane


def ctrl_c(pane: Pane, report: pathlib.Path) -> str:
    """Ctrl-C, then the screen once the shell printed the exit status (typed after the report
    was written: a shell that saw its job die of SIGINT runs nothing more of the same line)."""
    pane.type("C-c")  # SIGINT to the terminal's foreground group: the program and poolscope run
    until(report.exists)
    pane.type("echo exit: $?", "Enter")
    until(lambda: re.search(r"exit: \d+", pane.screen()) is not None)
    return pane.screen()


def test_ctrl_c_in_a_terminal_reports_a_service_with_requests_in_flight(
    tmp_path: pathlib.Path,
) -> None:
    with LoopbackServer("127.0.0.1") as server:
        pane = in_a_terminal(tmp_path, SERVICE + FOREVER, server.url)
        try:
            service_under_way(server)
            screen = ctrl_c(pane, tmp_path / "r.json")
        finally:
            pane.close()
        server.release()
        until(lambda: server.requests == DONE + HELD)
    assert f"exit: {128 + signal.SIGINT}" in screen, screen
    assert screen.count("KeyboardInterrupt") == 1  # one Ctrl-C, one interrupt: not passed on
    report = json.loads((tmp_path / "r.json").read_text())
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"], pool["in_use"]) == (DONE + HELD, THREADS, HELD)
    assert "read_responses" not in [a["rule"] for a in report["advice"]]


def test_ctrl_c_still_advises_on_responses_really_left_unread(tmp_path: pathlib.Path) -> None:
    # Three streamed responses kept and never read or closed, beside 16 requests in flight.
    script = (
        SERVICE
        + """
leaked = [requests.get(sys.argv[1], stream=True) for _ in range(3)]
"""
        + FOREVER
    )
    with LoopbackServer("127.0.0.1") as server:
        pane = in_a_terminal(tmp_path, script, server.url)
        try:
            until(lambda: server.requests == DONE + 3 and server.holding == HELD)
            screen = ctrl_c(pane, tmp_path / "r.json")
        finally:
            pane.close()
        server.release()
    assert f"exit: {128 + signal.SIGINT}" in screen, screen
    report = json.loads((tmp_path / "r.json").read_text())
    unread = [a for a in report["advice"] if a["rule"] == "read_responses"]
    assert len(unread) == 1, report["advice"]
    assert unread[0]["evidence"].startswith("3 connection(s) to ")


def test_other_signals_to_poolscope_run_reach_the_program_once(tmp_path: pathlib.Path) -> None:
    script = """
import signal, sys, threading
got = []
done = threading.Event()
def on(signum, frame):
    got.append(signal.Signals(signum).name)
    if signum == signal.SIGUSR2:
        done.set()
signal.signal(signal.SIGUSR1, on)
signal.signal(signal.SIGUSR2, on)
print("ready", flush=True)
done.wait(30)
print(" ".join(got))
"""
    proc = start(tmp_path, script)
    proc.send_signal(signal.SIGUSR1)
    time.sleep(0.3)
    proc.send_signal(signal.SIGUSR2)
    code, out, err, _ = finish(proc, tmp_path)
    assert (code, out) == (0, "SIGUSR1 SIGUSR2\n"), err


def test_a_process_killed_outright_is_counted_up_to_its_last_snapshot(
    tmp_path: pathlib.Path,
) -> None:
    script = """
import os, signal, sys, time, requests
pid = os.fork()
if pid == 0:
    s = requests.Session()
    for _ in range(5):
        s.get(sys.argv[1])
    time.sleep(1.0)  # five snapshots, at 0.2 s
    os.kill(os.getpid(), signal.SIGKILL)
os.waitpid(pid, 0)
requests.get(sys.argv[1])
print("done", flush=True)
"""
    with LoopbackServer("127.0.0.1") as server:
        proc = start(tmp_path, script, server.url, interval=0.2)
        code, _, err, report = finish(proc, tmp_path)
    assert code == 0, err
    assert report is not None
    (pool,) = report["pools"]
    assert pool["requests"] == 6 == server.requests
    assert [share["requests"] for share in pool["processes"]] == [1, 5]
    (said,) = report["incomplete"]
    assert said.startswith("1 Python process(es) of the program did not finish (pid ")
    assert "as of their last snapshot, taken every 0.2 s" in said
    assert f"poolscope run: {said}." in err


def test_a_program_killed_outright_is_reported_as_of_its_last_snapshot(
    tmp_path: pathlib.Path,
) -> None:
    script = """
import os, signal, sys, time, requests
s = requests.Session()
for _ in range(3):
    s.get(sys.argv[1])
time.sleep(0.6)  # snapshots at 0.2 s
os.kill(os.getpid(), signal.SIGKILL)
"""
    with LoopbackServer("127.0.0.1") as server:
        out, report = run_program(tmp_path, script, server.url, extra=("--interval", "0.2"))
    assert out.returncode == -signal.SIGKILL, out.stderr  # 137 to a shell, as without poolscope
    assert report is not None
    assert report["pools"][0]["requests"] == 3 == server.requests
    (said,) = report["incomplete"]
    assert said.startswith("1 Python process(es) of the program did not finish")
    assert out.stderr == f"poolscope run: {said}.\n"


def test_with_pool_map_every_request_is_reported_in_50_runs_of_50(
    tmp_path: pathlib.Path,
) -> None:
    # `with Pool(4)` terminates its workers (SIGTERM) as the block ends, idle or exiting.
    (tmp_path / "work.py").write_text(
        "import requests\ndef get(url):\n    return requests.get(url).status_code\n"
    )
    script = f"""
import multiprocessing, sys
sys.path.insert(0, {str(tmp_path)!r})
from work import get
if __name__ == "__main__":
    with multiprocessing.Pool(4) as p:
        print(sorted(set(p.map(get, [sys.argv[1]] * 24))))
"""
    wrong = []
    for attempt in range(50):
        with LoopbackServer("127.0.0.1") as server:
            out, report = run_program(tmp_path, script, server.url)
        assert (out.returncode, out.stdout) == (0, "[200]\n"), out.stderr
        assert report is not None, out.stderr
        counted = (report["pools"][0]["requests"], server.requests, report["incomplete"])
        if counted != (24, 24, []):
            wrong.append((attempt, counted))
    assert wrong == []
