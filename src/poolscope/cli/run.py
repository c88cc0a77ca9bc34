"""``poolscope run -- python app.py``: an unmodified program, instrumented, with a report at its
end however it ends, readable while it runs.

The program runs as a child process whose ``PYTHONPATH`` starts with a folder holding a
``sitecustomize`` module (as ``opentelemetry-instrument`` does it), which instruments every
Python process of the program for the report (:mod:`.child`). Each writes what it saw into the
run's folder (:mod:`.runs`) while it runs and when it ends; once the program has ended, this
merges them into one report, writes it (on stderr, or into the files asked for) and exits with
the program's own exit code. ``poolscope report`` and ``poolscope top`` read the same folder
while the program runs. The program's own output, log records and telemetry are what they are
without ``poolscope run``.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from .child import DEFAULT_INTERVAL, ENV_DIR, ENV_INTERVAL, ENV_SITE, SITECUSTOMIZE
from .runs import Parts, announce, build, output_problem, read_parts, write_report

# Signals passed on to the program when poolscope run receives them, as `timeout`, `tini` and
# `uv run` do, so that it can be a container's entry point. SIGINT and SIGQUIT, which a
# terminal's keys send to its whole foreground process group, the program included, are not
# passed on when they came that way (see _from_the_terminal).
FORWARDED = (
    signal.SIGTERM, signal.SIGHUP, signal.SIGUSR1, signal.SIGUSR2, signal.SIGINT, signal.SIGQUIT
)  # fmt: skip
TERMINAL_KEYS = (signal.SIGINT, signal.SIGQUIT)


def run(
    command: list[str],
    *,
    fmt: str,
    html: str | None,
    output: str | None = None,
    interval: float = DEFAULT_INTERVAL,
    all_hosts: bool = False,
) -> int:
    """Run ``command`` instrumented, write its report, return its exit code."""
    if not command:
        return _fail(
            "poolscope run needs a command after '--', for example: poolscope run -- python app.py"
        )
    problem = output_problem(output, html) or _python_problem(command)
    if problem:
        return _fail(f"poolscope run: {problem}")
    # A process of the program that outlives it may still be writing its part at cleanup.
    with tempfile.TemporaryDirectory(prefix="poolscope-run-", ignore_cleanup_errors=True) as tmp:
        site = os.path.join(tmp, "site")
        parts = os.path.join(tmp, "parts")
        os.mkdir(site)
        os.mkdir(parts)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(SITECUSTOMIZE)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        env[ENV_SITE] = os.path.abspath(site)
        env[ENV_DIR] = parts
        env[ENV_INTERVAL] = str(interval)
        announce(tmp, command, interval)
        try:
            status = _call(command, env)
        except FileNotFoundError:
            return _fail(f"poolscope run: no such program: {command[0]!r}.", 127)
        except PermissionError:
            return _fail(f"poolscope run: {command[0]!r} cannot be run (not executable).", 126)
        without_poolscope = _explain_missing_poolscope(parts)
        seen = _wait_for_parts(parts)  # after waiting for processes that outlive the program
    if not seen.seen:
        if without_poolscope:
            return _end_as(status)  # said why above
        if seen.missing:
            print(
                f"poolscope run: {len(seen.missing)} Python process(es) of the program ended "
                "without reporting (killed by a signal before their first snapshot).",
                file=sys.stderr,
            )
        print(
            "poolscope run: no Python process of the program reported (it is not a Python "
            "program, or each of its processes was killed by a signal).",
            file=sys.stderr,
        )
        return _end_as(status)
    report = build(seen, interval)
    if output is not None:  # on stderr, the report says it under "Incomplete"
        for line in report.incomplete:
            print(f"poolscope run: {line}.", file=sys.stderr)
    write_report(report, fmt, output, html, who="poolscope run", to=sys.stderr, all_hosts=all_hosts)
    return _end_as(status)


# Signals whose default action ends a process without a core dump: poolscope run dies of the
# one that ended the program, as `timeout` does, so a service manager sees what it would have
# seen (systemd takes a death by SIGTERM as a clean stop, an exit status of 143 as a failure).
_DIE_OF = {
    signal.SIGINT, signal.SIGTERM, signal.SIGHUP, signal.SIGKILL, signal.SIGPIPE,
    signal.SIGALRM, signal.SIGUSR1, signal.SIGUSR2,
}  # fmt: skip


def _end_as(status: int) -> int:
    """The program's exit code to exit with; if a signal ended it, die of the same signal."""
    if status >= 0:
        return status
    if -status in _DIE_OF:
        if -status != signal.SIGKILL:  # which no handler or mask can hold back
            signal.signal(-status, signal.SIG_DFL)
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {-status})
        os.kill(os.getpid(), -status)
    return 128 - status  # the shell's way, for the others (and where it did not die)


def _call(command: list[str], env: dict[str, str]) -> int:
    """Run the program to its end and return its status (-N if signal N ended it). The
    signals sent here are passed on (``FORWARDED``): it ends, or not, as it would alone, and
    this waits for it either way."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum not in TERMINAL_KEYS or not _from_the_terminal():
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in FORWARDED}
    try:
        return child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


def _from_the_terminal() -> bool:
    """Whether poolscope run is in its terminal's foreground process group, so that a Ctrl-C
    or Ctrl-\\ reached the program too. (A signal sent with `kill` to poolscope run alone
    while it runs in the foreground of a terminal is taken for the terminal's, as `uv run`
    does: the program has it from the terminal, or not at all.)"""
    try:
        fd = os.open("/dev/tty", os.O_RDONLY | os.O_NOCTTY)
    except OSError:
        return False  # no controlling terminal: a container, a service, a pipeline
    try:
        return os.tcgetpgrp(fd) == os.getpgrp()
    except OSError:
        return False
    finally:
        os.close(fd)


def _wait_for_parts(folder: str, wait: float = 2.0) -> Parts:
    """The parts of every process, once each has ended: processes still running (a helper
    that outlives the program briefly) get ``wait`` seconds to end and write theirs."""
    deadline = time.monotonic() + wait
    while True:
        parts = read_parts(folder)
        if not parts.running - parts.finished:
            return parts
        if time.monotonic() > deadline:
            return read_parts(folder, ended=True)
        time.sleep(0.05)


def _explain_missing_poolscope(folder: str) -> bool:
    """Name each interpreter of the program that could not import poolscope; whether any."""
    interpreters = {}
    for name in os.listdir(folder):
        if name.endswith(".error"):
            with open(os.path.join(folder, name), encoding="utf-8") as f:
                interpreter, _, reason = f.read().partition("\n")
            interpreters[interpreter] = reason.strip()
    for interpreter, reason in sorted(interpreters.items()):
        print(
            f"poolscope run: {interpreter} could not import poolscope ({reason}), so its work "
            "is not in the report. Run the program with the Python that has poolscope, for "
            f"example: poolscope run -- {sys.executable} app.py; or install poolscope in that "
            f"interpreter's environment from a checkout of poolscope: {interpreter} -m pip "
            "install /path/to/poolscope.",
            file=sys.stderr,
        )
    return bool(interpreters)


# Python options that keep poolscope run's sitecustomize from loading, and why.
_BLIND = {
    "I": "-I (isolated mode) ignores PYTHONPATH, which poolscope run instruments Python through",
    "E": "-E ignores the PYTHON* environment variables, which poolscope run instruments Python "
    "through",
    "S": "-S skips the site module, which loads poolscope run's sitecustomize",
}
_TAKES_VALUE = set("WXQ")  # options whose value may be the next argument


def _python_problem(command: list[str]) -> str:
    """Why a Python command cannot run instrumented, or its script is missing ("" if neither)."""
    if not re.fullmatch(r"python[0-9.]*", os.path.basename(command[0])):
        return ""
    args = iter(command[1:])
    for arg in args:
        if arg == "-" or not arg.startswith("-"):
            if arg != "-" and not os.path.exists(arg):
                return (
                    f"no such file: {arg!r}, the script {command[0]} would run. Check the path "
                    "(relative paths are from the current folder)."
                )
            return ""
        if arg in ("-c", "-m") or arg.startswith("--"):
            return ""
        for n, flag in enumerate(arg[1:]):
            if flag in _BLIND:
                return (
                    f"{_BLIND[flag]}, so nothing would be reported: run the program without "
                    f"-{flag}."
                )
            if flag in "cm":
                return ""
            if flag in _TAKES_VALUE:
                if n == len(arg) - 2:
                    next(args, None)
                break
    return ""


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code
