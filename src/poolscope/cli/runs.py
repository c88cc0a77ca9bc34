"""A run's folder: where ``poolscope run`` and its program's processes meet, how ``poolscope
report`` and ``poolscope top`` find a run in progress, and how its parts are read and its
report written.

A run's folder is a private temporary directory named ``poolscope-run-*``:

- ``run.json``: ``poolscope run``'s own pid, the program's command and when it started;
- ``site/sitecustomize.py``: what instruments each Python process of the program;
- ``parts/PID.started``: a process that started; ``parts/PID-NS.json``: its part, written over
  at each snapshot and marked ``final`` when it ended (:mod:`.child`); ``parts/PID.error``: an
  interpreter that could not import poolscope.
"""

from __future__ import annotations

import glob
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import TextIO

from ..reporting.report import Report, json_ready, report_from
from ..reporting.seen import Seen, from_json

PREFIX = "poolscope-run-"


@dataclass(frozen=True)
class RunInfo:
    """A ``poolscope run`` in progress: its folder, its own pid, the program it runs."""

    folder: str
    pid: int
    command: tuple[str, ...]
    started: float
    interval: float  # seconds between the snapshots of its processes

    @property
    def parts(self) -> str:
        return os.path.join(self.folder, "parts")


def announce(folder: str, command: list[str], interval: float) -> None:
    """Write ``run.json``, by which ``poolscope report`` and ``poolscope top`` find this run."""
    info = {"pid": os.getpid(), "command": command, "started": time.time(), "interval": interval}
    with open(os.path.join(folder, "run.json.part"), "w", encoding="utf-8") as f:
        json.dump(info, f)
    os.replace(os.path.join(folder, "run.json.part"), os.path.join(folder, "run.json"))


def find_runs() -> list[RunInfo]:
    """The runs in progress of this user, oldest first."""
    runs = []
    for path in glob.glob(os.path.join(tempfile.gettempdir(), PREFIX + "*", "run.json")):
        try:
            with open(path, encoding="utf-8") as f:
                info = json.load(f)
        except (OSError, ValueError):
            continue  # another user's, or one ending now
        run = RunInfo(
            os.path.dirname(path),
            info["pid"],
            tuple(info["command"]),
            info["started"],
            info["interval"],
        )
        if alive(run.pid):
            runs.append(run)
    return sorted(runs, key=lambda r: r.started)


def choose_run(pid: int | None) -> RunInfo | str:
    """The run to read: the one with ``pid``, or the only one; else why there is none."""
    runs = find_runs()
    if pid is not None:
        for run in runs:
            if run.pid == pid:
                return run
        return (
            f"No poolscope run with pid {pid} is running for this user. Running: "
            + (", ".join(_describe(r) for r in runs) or "none")
            + "."
        )
    if not runs:
        return (
            "No poolscope run is running for this user: start the program with "
            "`poolscope run -- python app.py`, then run this again in another terminal."
        )
    if len(runs) > 1:
        return (
            f"{len(runs)} poolscope runs are running: choose one with --pid. "
            + "; ".join(_describe(r) for r in runs)
            + "."
        )
    return runs[0]


def _describe(run: RunInfo) -> str:
    started = time.strftime("%H:%M:%S", time.localtime(run.started))
    return f"pid {run.pid}, started {started}: {' '.join(run.command)}"


@dataclass
class Parts:
    """What the processes of a run wrote, and which of them did not end by writing."""

    seen: list[Seen] = field(default_factory=list)
    unfinished: dict[int, float] = field(default_factory=dict)  # pid: when its part was written
    started: set[int] = field(default_factory=set)  # pids that started
    finished: set[int] = field(default_factory=set)  # pids that wrote their final part
    written: set[int] = field(default_factory=set)  # pids that wrote a part, final or not
    running: set[int] = field(default_factory=set)  # pids still running, as read
    written_at: float = 0.0  # when the newest part was written

    @property
    def missing(self) -> set[int]:
        """Processes that ended, or were killed, before they wrote any part."""
        return self.started - self.written - self.running


def read_parts(folder: str, *, ended: bool = False) -> Parts:
    """Every part in ``folder``: the program's first process, and every other that used a pool
    (multiprocessing's helper processes use none). Once the program ``ended``, a process still
    running has not finished either."""
    parts = Parts()
    names = os.listdir(folder)
    parts.started = {int(n[: -len(".started")]) for n in names if n.endswith(".started")}
    parts.running = {pid for pid in parts.started if alive(pid)}
    for path in sorted(glob.glob(os.path.join(folder, "*.json"))):
        try:
            with open(path, encoding="utf-8") as f:
                part = json.load(f)
        except (OSError, ValueError):
            continue  # gone since it was listed
        one = from_json(part["seen"])
        parts.written.add(one.pid)
        parts.written_at = max(parts.written_at, part["written"])
        if part["final"]:
            parts.finished.add(one.pid)
        elif ended or one.pid not in parts.running:
            parts.unfinished[one.pid] = part["written"]
        used = any(s.created or s.reused or s.failed or s.waits for s in one.stats.values())
        if part["top"] or used:
            parts.seen.append(one)
        elif one.pid in parts.unfinished:
            del parts.unfinished[one.pid]  # it used no pool: nothing of it is missing
    parts.seen.sort(key=lambda s: s.started)  # the program's first process first
    return parts


def incomplete(parts: Parts, interval: float, ended: float) -> tuple[str, ...]:
    """What the report of ``parts`` misses, in words, for the report itself."""
    said = []
    if parts.unfinished:
        oldest = ended - min(parts.unfinished.values())
        said.append(
            f"{len(parts.unfinished)} Python process(es) of the program did not finish (pid "
            f"{', '.join(map(str, sorted(parts.unfinished)))}: killed by SIGKILL or the OOM "
            f"killer, or still running): counted as of their last snapshot, taken every "
            f"{interval:g} s (the oldest {oldest:.1f} s before this report)"
        )
    if parts.missing:
        said.append(
            f"{len(parts.missing)} Python process(es) of the program ended without reporting, "
            "before their first snapshot (killed by a signal): the pools they used, if any, "
            "are not counted"
        )
    return tuple(said)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def build(parts: Parts, interval: float) -> Report:
    return report_from(parts.seen, incomplete=incomplete(parts, interval, time.time()))


def write_report(
    report: Report,
    fmt: str,
    output: str | None,
    html: str | None,
    *,
    who: str,
    to: TextIO,
    all_hosts: bool = False,
) -> None:
    """Write ``report`` as ``fmt`` into ``output`` (``to`` if None) and a page into ``html``."""
    if fmt == "json":
        text = json.dumps(json_ready(report), indent=2) + "\n"
    else:
        text = report.render_text(all_hosts=all_hosts)
    page = report.render_html(all_hosts=all_hosts) if html else ""
    for path, content in ((output, text), (html, page)):
        if path is None:
            continue
        try:
            with open(path, "w", encoding="utf-8") as f:
                f.write(content)
        except OSError as exc:
            print(f"{who}: could not write {path!r}: {exc.strerror}.", file=sys.stderr)
    if output is None:
        to.write(text)
        to.flush()


def output_problem(output: str | None, html: str | None) -> str:
    """Why the report cannot be written to ``output`` and the page to ``html`` ("" if they
    can), asked before anything runs."""
    for path in (output, html):
        problem = _unwritable(path)
        if problem:
            return f"cannot write the report to {path!r}: {problem}."
    if output is not None and html is not None:
        if os.path.realpath(output) == os.path.realpath(html):
            return (
                f"-o and --html name the same file ({output!r}): the page would overwrite the "
                "report. Name two files, for example: -o report.txt --html report.html"
            )
    return ""


def _unwritable(path: str | None) -> str:
    """Why a file cannot be written to ``path`` ("" if it can)."""
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
