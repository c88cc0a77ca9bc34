"""``poolscope run -- python app.py``: an unmodified program, instrumented, with a report at exit.

The program runs as a child process whose ``PYTHONPATH`` starts with a folder holding a
``sitecustomize`` module (as ``opentelemetry-instrument`` does it), which instruments every
Python process of the program for the report (:mod:`.child`). Each writes what it saw into a
folder of the run's; once the program has ended, this merges them into one report, writes it
(on stderr, or into the files asked for) and exits with the program's own exit code. The
program's own output, log records and telemetry are what they are without ``poolscope run``.
"""

from __future__ import annotations

import glob
import json
import os
import signal
import subprocess
import sys
import tempfile
import time

from ..reporting.report import Report, json_ready, report_from
from ..reporting.seen import Seen, from_json
from .child import ENV_DIR, ENV_SITE, SITECUSTOMIZE


def run(command: list[str], *, fmt: str, html: str | None, output: str | None = None) -> int:
    """Run ``command`` instrumented, write its report, return its exit code."""
    if not command:
        return _fail(
            "poolscope run needs a command after '--', for example: poolscope run -- python app.py"
        )
    for path in (output, html):
        problem = _unwritable(path)
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
        try:
            code = _call(command, env)
        except FileNotFoundError:
            return _fail(f"poolscope run: no such program: {command[0]!r}.", 127)
        except PermissionError:
            return _fail(f"poolscope run: {command[0]!r} cannot be run (not executable).", 126)
        _explain_missing_poolscope(parts)
        _explain_missing_parts(parts)  # after waiting for processes that outlive the program
        seen = _read(parts)
    if not seen:
        print(
            "poolscope run: no Python process of the program reported (it is not a Python "
            "program, or each of its processes was killed by a signal).",
            file=sys.stderr,
        )
        return code
    report = report_from(seen, final=True)
    _write(report, fmt, output, html)
    return code


def _call(command: list[str], env: dict[str, str]) -> int:
    """Run the program to its end and return its exit code, the shell's way for a signal
    (128 + its number). Ctrl-C reaches the program from the terminal, as SIGTERM sent here is
    passed on: it ends, or not, as it would alone, and this waits for it either way."""
    child = subprocess.Popen(command, env=env)

    def forward(signum: int, frame: object) -> None:
        if signum != signal.SIGINT:  # the terminal sends SIGINT to the program itself
            child.send_signal(signum)

    previous = {sig: signal.signal(sig, forward) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        code = child.wait()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 128 - code if code < 0 else code


def _read(folder: str) -> list[Seen]:
    """What each process saw: the program's first process, and every other that used a pool
    (multiprocessing's helper processes use none)."""
    seen = []
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        with open(path, encoding="utf-8") as f:
            part = json.load(f)
        one = from_json(part["seen"])
        used = any(s.created or s.reused or s.failed or s.waits for s in one.stats.values())
        if part["top"] or used:
            seen.append(one)
    seen.sort(key=lambda s: s.started)  # the program's first process first
    return seen


def _explain_missing_parts(folder: str, wait: float = 2.0) -> None:
    """Say how many of the program's Python processes ended without reporting: killed by a
    signal (as ``multiprocessing.Pool.terminate()`` does to idle workers). Processes still
    running (a helper that outlives the program briefly) get ``wait`` seconds to end."""
    deadline = time.monotonic() + wait
    while True:
        names = os.listdir(folder)
        started = {n[: -len(".started")] for n in names if n.endswith(".started")}
        reported = {n.partition("-")[0] for n in names if n.endswith(".json")}
        pending = started - reported
        running = {pid for pid in pending if _alive(int(pid))}
        if not running or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    killed = len(pending - running)
    if killed:
        print(
            f"poolscope run: {killed} Python process(es) of the program ended without reporting "
            "(killed by a signal, as multiprocessing.Pool.terminate() and `with Pool(...)` do "
            "to idle workers): the pools they used, if any, are missing from the report. "
            "pool.close() and pool.join() let every worker end and report.",
            file=sys.stderr,
        )


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _explain_missing_poolscope(folder: str) -> None:
    interpreters = {}
    for path in glob.glob(os.path.join(folder, "*.error")):
        with open(path, encoding="utf-8") as f:
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


def _write(report: Report, fmt: str, output: str | None, html: str | None) -> None:
    if fmt == "json":
        text = json.dumps(json_ready(report), indent=2) + "\n"
    else:
        text = report.render_text()
    for path, content in ((output, text), (html, report.render_html() if html else "")):
        if path is None:
            continue
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
        except OSError as exc:
            print(f"poolscope run: could not write {path!r}: {exc.strerror}.", file=sys.stderr)
    if output is None:
        sys.stderr.write(text)
        sys.stderr.flush()


def _unwritable(path: str | None) -> str:
    """Why the report cannot be written to ``path`` ("" if it can), asked before the run."""
    if path is None:
        return ""
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        return f"the folder {folder!r} does not exist"
    if os.path.isdir(path):
        return "it is a folder"
    if not os.access(folder, os.W_OK):
        return f"the folder {folder!r} is not writable"
    return ""


def _fail(message: str, code: int = 2) -> int:
    print(message, file=sys.stderr)
    return code
