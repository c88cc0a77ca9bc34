"""`poolscope run` on programs shaped like real services: programs that instrument themselves,
work spread over child processes, programs that log, and the ways a run can fail."""

from __future__ import annotations

import os
import pathlib
import signal
import subprocess
import sys
import textwrap
import venv

import pytest

from poolscope.loopback import LoopbackServer

from .support.programs import RUN, run_program

TELEMETRY = """
import functools, sys, requests, poolscope
# A timeout on every request: each program here has one problem, a pool too small.
requests.Session.request = functools.partialmethod(requests.Session.request, timeout=(3.05, 10))
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
reader = InMemoryMetricReader()
provider = MeterProvider(metric_readers=[reader])
URL = sys.argv[1]

def created():
    data = reader.get_metrics_data()
    return sum(
        point.value
        for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics
        if m.name == "urllib3.pool.connections.created" for point in m.data.data_points
    )
"""

# Each program reports its own metrics to its own provider, makes two requests at once through a
# pool of one (one connection discarded), prints what its own metrics counted, and exits 0.
SELF_INSTRUMENTED = {
    "instrument": """
poolscope.instrument(meter_provider=provider)
s = requests.Session(); s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=1))
""",
    "instrument_session": """
s = requests.Session(); s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=1))
poolscope.instrument_session(s, meter_provider=provider)
""",
    "instrument_pool_manager": """
import urllib3
pm = urllib3.PoolManager(maxsize=1, timeout=urllib3.Timeout(connect=3.05, read=10))
pm = poolscope.instrument_pool_manager(pm, meter_provider=provider)
class S:  # the same calls, through urllib3
    def get(self, url):
        return pm.request("GET", url)
s = S()
""",
    "InstrumentedHTTPAdapter": """
s = requests.Session()
s.mount("http://", poolscope.InstrumentedHTTPAdapter(pool_maxsize=1, meter_provider=provider))
""",
    "report_then_session": """
poolscope.instrument(report=True)
s = requests.Session(); s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=1))
poolscope.instrument_session(s, meter_provider=provider)
""",
}

TWO_AT_ONCE = """
import threading
ts = [threading.Thread(target=s.get, args=(URL + "/together",)) for _ in range(2)]
for t in ts: t.start()
for t in ts: t.join()
print("own metrics: created", created())
"""


_run = run_program


@pytest.mark.parametrize("way", list(SELF_INSTRUMENTED))
def test_a_program_that_instruments_itself_runs_as_without_poolscope_run(
    tmp_path: pathlib.Path, way: str
) -> None:
    with LoopbackServer("127.0.0.1", together=2) as server:
        out, report = _run(tmp_path, TELEMETRY + SELF_INSTRUMENTED[way] + TWO_AT_ONCE, server.url)
    assert out.returncode == 0, out.stderr
    assert out.stdout == "own metrics: created 2\n"  # its own telemetry, as exported without
    assert report is not None
    (pool,) = report["pools"]
    assert (pool["created"], pool["discarded"]) == (2, 1) == (server.connections, 1)
    (advice,) = report["advice"]
    assert advice["rule"] == "pool_maxsize" and "maxsize=2" in advice["change"]


def test_a_conflict_between_two_explicit_calls_names_both(tmp_path: pathlib.Path) -> None:
    script = (
        TELEMETRY
        + """
s = poolscope.instrument_session(requests.Session(), meter_provider=provider)
try:
    poolscope.instrument_session(s, mode="logging")
except ValueError as exc:
    print(exc)
"""
    )
    out, _ = _run(tmp_path, script, "http://127.0.0.1:9")
    assert out.returncode == 0, out.stderr
    assert "(mode='otel' with MeterProvider at 0x" in out.stdout
    assert "not mode='logging'); call poolscope.uninstrument_session(session) first" in out.stdout


# A Pool is closed and joined (`with Pool()` terminates idle workers, which then cannot report;
# test_killed_workers_are_counted_as_missing shows what the report says then).
CHILDREN = {
    "fork": "multiprocessing.get_context('fork').Pool(4)",
    "spawn": "multiprocessing.get_context('spawn').Pool(4)",
    "forkserver": "multiprocessing.get_context('forkserver').Pool(4)",
    "executor": "concurrent.futures.ProcessPoolExecutor(4)",
}


@pytest.mark.parametrize("how", [*CHILDREN, "subprocess"])
def test_work_in_child_processes_is_in_one_report(tmp_path: pathlib.Path, how: str) -> None:
    (tmp_path / "work.py").write_text(
        "import sys, requests\n"
        "def get(url):\n"
        "    return requests.get(url).status_code\n"
        "if __name__ == '__main__':\n"
        "    for _ in range(5):\n"
        "        get(sys.argv[1])\n"
    )
    if how == "subprocess":
        script = f"""
import subprocess, sys
for _ in range(4):
    subprocess.run([sys.executable, {str(tmp_path / "work.py")!r}, sys.argv[1]], check=True)
"""
    else:
        script = f"""
import concurrent.futures, multiprocessing, sys
sys.path.insert(0, {str(tmp_path)!r})
from work import get
if __name__ == "__main__":
    workers = {CHILDREN[how]}
    print(sorted(set(workers.map(get, [sys.argv[1]] * 20))))
    if hasattr(workers, "join"):
        workers.close()
        workers.join()
    else:
        workers.shutdown()
"""
    with LoopbackServer("127.0.0.1") as server:
        out, report = _run(tmp_path, script, server.url)
    assert out.returncode == 0, out.stderr
    assert report is not None, out.stderr
    assert server.requests == server.connections == 20
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (20, 20)
    assert report["processes"] >= 2
    assert sum(share["requests"] for share in pool["processes"]) == 20
    # Each process's counts of requests sent without a timeout add up too.
    assert [a["rule"] for a in report["advice"]] == ["one_session", "timeout"]
    assert (pool["no_read_timeout"], pool["no_connect_timeout"]) == (20, 20)


def test_killed_workers_are_counted_as_missing(tmp_path: pathlib.Path) -> None:
    script = """
import os, signal, sys, requests
pid = os.fork()
if pid == 0:
    requests.get(sys.argv[1])
    os.kill(os.getpid(), signal.SIGKILL)
os.waitpid(pid, 0)
requests.get(sys.argv[1])
"""
    with LoopbackServer("127.0.0.1") as server:
        out, report = _run(tmp_path, script, server.url)
    assert out.returncode == 0, out.stderr
    assert "1 Python process(es) of the program ended without reporting" in out.stderr
    assert report is not None and report["pools"][0]["requests"] == 1  # the parent's only
    (said,) = report["incomplete"]
    assert said.startswith("1 Python process(es) of the program ended without reporting")
    assert server.requests == 2


def test_a_program_that_logs_keeps_its_output(tmp_path: pathlib.Path) -> None:
    script = """
import logging, sys, threading, requests
logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s %(message)s")
log = logging.getLogger("app")
s = requests.Session(); s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=1))
for _ in range(3):
    ts = [threading.Thread(target=s.get, args=(sys.argv[1] + "/together",)) for _ in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
    log.info("round done")
print("done")
"""
    (tmp_path / "app.py").write_text(textwrap.dedent(script))
    with LoopbackServer("127.0.0.1", together=2) as server:
        bare = subprocess.run(
            [sys.executable, str(tmp_path / "app.py"), server.url],
            capture_output=True,
            text=True,
            timeout=60,
        )
        out, report = _run(tmp_path, script, server.url)
    assert (out.stdout, out.stderr) == (bare.stdout, bare.stderr)
    assert "Connection pool is full" in bare.stderr  # urllib3's own warnings, in both
    assert report is not None and report["pools"][0]["discarded"] == 3


def test_a_child_interpreter_without_poolscope_is_named(tmp_path: pathlib.Path) -> None:
    bare = tmp_path / "bare"
    venv.create(bare, with_pip=False)
    python = str(bare / "bin" / "python")
    out, report = _run(tmp_path, "print('ran')\n", python=python)
    assert out.returncode == 0
    assert out.stdout == "ran\n"
    assert f"poolscope run: {python} could not import poolscope" in out.stderr
    assert f"poolscope run -- {sys.executable} app.py" in out.stderr
    assert f"{python} -m pip install /path/to/poolscope." in out.stderr  # not on an index yet
    assert "no Python process of the program reported" not in out.stderr  # said why already
    assert "Error in sitecustomize" not in out.stderr
    assert report is None


def test_an_output_path_that_cannot_be_written_fails_before_the_program_runs(
    tmp_path: pathlib.Path,
) -> None:
    ran = tmp_path / "ran"
    script = tmp_path / "app.py"
    script.write_text(f"open({str(ran)!r}, 'w').close()\n")
    missing = tmp_path / "no-such-folder" / "report.html"
    out = subprocess.run(
        [*RUN, "--html", str(missing), "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 2
    assert str(missing) in out.stderr and "does not exist" in out.stderr
    assert not ran.exists()


def test_the_programs_exit_code_passes_through_with_children(tmp_path: pathlib.Path) -> None:
    script = """
import os, sys, requests
pid = os.fork()
if pid == 0:
    requests.get(sys.argv[1])
    os._exit(0)  # as multiprocessing's workers end: no atexit
os.waitpid(pid, 0)
sys.exit(7)
"""
    with LoopbackServer("127.0.0.1") as server:
        out, report = _run(tmp_path, script, server.url)
    assert out.returncode == 7
    assert report is not None and report["processes"] == 2  # the program, and its child
    assert report["pools"][0]["requests"] == server.requests == 1


def test_a_program_killed_by_a_signal_exits_as_the_shell_says(tmp_path: pathlib.Path) -> None:
    script = """
import os, signal, sys, requests
requests.get(sys.argv[1])
os.kill(os.getpid(), signal.SIGTERM)
print("not reached")
"""
    with LoopbackServer("127.0.0.1") as server:
        out, report = _run(tmp_path, script, server.url)
    assert out.returncode == -signal.SIGTERM  # dies of it, as the program did: 143 to a shell
    assert out.stdout == ""
    assert report is not None and report["pools"][0]["requests"] == 1 == server.requests
    assert report["incomplete"] == []


def test_the_programs_own_instrument_keeps_what_came_before_in_the_report(
    tmp_path: pathlib.Path,
) -> None:
    script = """
import sys, requests, poolscope
s = requests.Session()
s.get(sys.argv[1])
poolscope.instrument(mode="logging")
for _ in range(10):
    s.get(sys.argv[1])
requests.get(sys.argv[1])
"""
    with LoopbackServer("127.0.0.1") as server:
        out, report = _run(tmp_path, script, server.url)
    assert out.returncode == 0, out.stderr
    assert report is not None
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (12, 2) == (server.requests, server.connections)


def test_a_child_that_runs_another_program_is_not_counted_as_killed(
    tmp_path: pathlib.Path,
) -> None:
    script = """
import os, shutil
pid = os.fork()
if pid == 0:
    os.execv(shutil.which("true"), ["true"])
os.waitpid(pid, 0)
"""
    out, report = _run(tmp_path, script)
    assert out.returncode == 0
    assert "process(es)" not in out.stderr
    assert report is not None and report["processes"] == 1
    assert report["incomplete"] == []


def test_with_no_snapshots_a_program_forks_with_no_thread_of_poolscopes(
    tmp_path: pathlib.Path,
) -> None:
    # Python 3.13 warns when the main module forks a multi-threaded process: --interval 0
    # leaves the program single-threaded (no snapshots; the part is written at exit).
    script = tmp_path / "app.py"
    script.write_text(
        "import os, threading\n"
        "print(threading.active_count())\n"
        "pid = os.fork()\n"
        "if pid == 0:\n"
        "    os._exit(0)\n"
        "os.waitpid(pid, 0)\n"
    )
    out = subprocess.run(
        [*RUN, "--interval", "0", "-o", str(tmp_path / "r.txt"), "--", sys.executable, str(script)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert (out.returncode, out.stdout, out.stderr) == (0, "1\n", "")
    assert (tmp_path / "r.txt").read_text().startswith("poolscope report: 0 pool(s)")


@pytest.mark.parametrize(
    ("args", "said"),
    [
        (["nosuchfile.py"], "no such file: 'nosuchfile.py', the script"),
        (["-I", "app.py"], "-I (isolated mode) ignores PYTHONPATH"),
        (["-E", "app.py"], "-E ignores the PYTHON* environment variables"),
        (["-W", "error", "-S", "app.py"], "-S skips the site module"),
    ],
    ids=["missing-script", "isolated", "no-environment", "no-site"],
)
def test_a_python_command_that_cannot_be_reported_is_refused_with_the_reason(
    tmp_path: pathlib.Path, args: list[str], said: str
) -> None:
    (tmp_path / "app.py").write_text("open('ran', 'w').close()\n")
    out = subprocess.run(
        [*RUN, "--", sys.executable, *args], cwd=tmp_path, capture_output=True, text=True
    )
    assert out.returncode == 2
    assert out.stderr.startswith(f"poolscope run: {said}")
    assert "[nothing_seen]" not in out.stderr
    assert not (tmp_path / "ran").exists()  # refused before the program ran


def test_python_options_before_the_script_are_fine(tmp_path: pathlib.Path) -> None:
    (tmp_path / "app.py").write_text("print('ran')\n")
    out = subprocess.run(
        [*RUN, "-o", "r.txt", "--", sys.executable, "-W", "ignore", "-X", "dev", "app.py"],
        cwd=tmp_path,
        capture_output=True,
        text=True,
    )
    assert (out.returncode, out.stdout) == (0, "ran\n"), out.stderr


def test_one_file_for_the_report_and_the_page_is_refused(tmp_path: pathlib.Path) -> None:
    same = str(tmp_path / "same.out")
    out = subprocess.run(
        [*RUN, "-o", same, "--html", same, "--", sys.executable, "-c", "pass"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 2
    assert "-o and --html name the same file" in out.stderr
    assert not os.path.exists(same)


def test_every_command_has_help_with_an_example_and_a_version() -> None:
    for command in ("demo", "run", "report", "top"):
        out = subprocess.run(
            [sys.executable, "-m", "poolscope", command, "--help"], capture_output=True, text=True
        )
        assert out.returncode == 0
        assert f"Example: poolscope {command}" in " ".join(out.stdout.split()), out.stdout
    version = subprocess.run(
        [sys.executable, "-m", "poolscope", "--version"], capture_output=True, text=True
    )
    assert version.stdout.startswith("poolscope 0.")
