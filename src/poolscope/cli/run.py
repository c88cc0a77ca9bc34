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
import signal
import subprocess
import sys
import tempfile
import time
from types import FrameType

from .child import DEFAULT_INTERVAL, ENV_DIR, ENV_INTERVAL, ENV_SITE, SITECUSTOMIZE
from .runs import Parts, announce, build, read_parts, unwritable, write_report

# Signals passed on to the program when poolscope run receives them. SIGINT is not: a terminal
# sends Ctrl-C to the whole foreground process group, the program included.
FORWARDED = (signal.SIGTERM, signal.SIGHUP)


def run(
    command: list[str],
    *,
    fmt: str,
    html: str | None,
    output: str | None = None,
    interval: float = DEFAULT_INTERVAL,
) -> int:
    """Run ``command`` instrumented, write its report, return its exit code."""
    if not command:
        return _fail(
            "poolscope run needs a command after '--', for example: poolscope run -- python app.py"
        )
    for path in (output, html):
        problem = unwritable(path)
        if problem:
            return _fail(f"poolscope run: cannot write the report to {path!r}: {problem}.")
    with tempfile.TemporaryDirectory(prefix="poolscope-run-") as tmp:
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
            code = _call(command, env)
        except FileNotFoundError:
            return _fail(f"poolscope run: no such program: {command[0]!r}.", 127)
        except PermissionError:
            return _fail(f"poolscope run: {command[0]!r} cannot be run (not executable).", 126)
        _explain_missing_poolscope(parts)
        seen = _wait_for_parts(parts)  # after waiting for processes that outlive the program
    if not seen.seen:
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
        return code
    report = build(seen, interval)
    for line in report.incomplete:
        print(f"poolscope run: {line}.", file=sys.stderr)
    write_report(report, fmt, output, html, who="poolscope run", to=sys.stderr)
    return code


def _call(command: list[str], env: dict[str, str]) -> int:
    """Run the program to its end and return its exit code, the shell's way for a signal
    (128 + its number). Ctrl-C reaches the program from the terminal, as a SIGTERM or SIGHUP
    sent here is passed on: it ends, or not, as it would alone, and this waits for it either
    way."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: FrameType | None) -> None:
        if signum in FORWARDED:
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, *FORWARDED)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _wait_for_parts(folder: str, wait: float = 2.0) -> Parts:
    """The parts of every process, once each has ended: processes still running (a helper
    that outlives the program briefly) get ``wait`` seconds to end and write theirs."""
    deadline = time.monotonic() + wait
    while True:
        parts = read_parts(folder)
        if not parts.running - parts.finished or time.monotonic() > deadline:
            return parts
        time.sleep(0.05)


def _explain_missing_poolscope(folder: str) -> None:
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
            f"example: poolscope run -- {sys.executable} app.py; or install poolscope there: "
            f"{interpreter} -m pip install poolscope.",
            file=sys.stderr,
        )


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code
