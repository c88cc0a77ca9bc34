"""``poolscope top``: a live view of a ``poolscope run`` in progress, in another terminal.

Every interval it reads the run's parts (the same state the report reads, :mod:`.runs`) and
shows one row per host: connections in use, idle and the pool size, requests waiting for a
connection, requests so far, then requests, new connections and discards per second over the
last interval, the reuse ratio, the connect time's p99, and the report's advice as soon as it
holds. In a terminal
it redraws a table in place (with rich, the ``top`` extra); when its output is not a terminal,
or rich is not installed, it prints one line per host each interval instead. It ends when the
run ends, or on Ctrl-C.
"""

from __future__ import annotations

import sys
import time
from dataclasses import dataclass
from typing import Any, TextIO

from ..reporting.report import Report
from ..reporting.summaries import PoolSummary
from .runs import RunInfo, alive, build, read_parts

ROWS = 40  # hosts shown, busiest first


@dataclass(frozen=True)
class Row:
    """One host, as the view shows it."""

    origin: str
    in_use: int
    idle: int
    pool_maxsize: int
    waiting: int
    requests: int
    requests_per_s: float
    new_per_s: float
    discards_per_s: float
    reuse_ratio: float
    connect_p99_ms: float | None


class Rates:
    """Per-second rates over the last interval, from one read of the run to the next; the last
    read's report and rows, kept for when the run's folder is gone (it ended)."""

    def __init__(self, run: RunInfo) -> None:
        self.report = Report(run.started, time.time(), (), ())
        self.last_rows: list[Row] = []
        self._last: dict[tuple[str, str | None], tuple[float, int, int, int]] = {}

    def rows(self, pools: tuple[PoolSummary, ...], at: float) -> list[Row]:
        rows = []
        for p in pools:
            key = (p.origin, p.proxy)
            then, requests, created, discarded = self._last.get(key, (0.0, 0, 0, 0))
            span = at - then if then else 0.0

            def per_s(now: int, before: int, span: float = span) -> float:
                return (now - before) / span if span > 0 else 0.0

            p99 = p.connect_time_s.get("p99")
            rows.append(
                Row(
                    p.origin,
                    p.in_use,
                    p.idle,
                    p.pool_maxsize,
                    p.waiting,
                    p.requests,
                    per_s(p.requests, requests),
                    per_s(p.created, created),
                    per_s(p.discarded, discarded),
                    p.reuse_ratio,
                    p99 * 1000 if p99 is not None else None,
                )
            )
            if not then or at > then:  # the parts changed since the last read
                self._last[key] = (at, p.requests, p.created, p.discarded)
        rows.sort(key=lambda r: (-r.requests_per_s, -r.requests, r.origin))
        return rows[:ROWS]


COLUMNS = (
    "host", "in use", "idle", "size", "waiting", "reqs", "req/s", "new/s", "disc/s", "reuse",
    "conn p99",
)  # fmt: skip


def cells(row: Row) -> tuple[str, ...]:
    p99 = f"{row.connect_p99_ms:.1f} ms" if row.connect_p99_ms is not None else "-"
    return (
        row.origin,
        str(row.in_use),
        str(row.idle),
        str(row.pool_maxsize),
        str(row.waiting),
        str(row.requests),
        f"{row.requests_per_s:.1f}",
        f"{row.new_per_s:.1f}",
        f"{row.discards_per_s:.1f}",
        f"{row.reuse_ratio:.0%}",
        p99,
    )


def top(run: RunInfo, *, interval: float, out: TextIO = sys.stdout) -> int:
    """Show ``run`` live until it ends (0) or Ctrl-C (130)."""
    rates = Rates(run)
    title = f"poolscope top: pid {run.pid}: {' '.join(run.command)}"
    live = _live(out)
    try:
        if live is None:
            print(title, file=out, flush=True)
            _lines(run, rates, interval, out)
        else:
            with live:
                while True:
                    report, rows, ended = _read(run, rates)
                    live.update(_table(title, report, rows, ended), refresh=True)
                    if ended:
                        break
                    time.sleep(interval)
    except KeyboardInterrupt:
        return 130
    return 0


def _read(run: RunInfo, rates: Rates) -> tuple[Report, list[Row], bool]:
    ended = not alive(run.pid)
    try:
        parts = read_parts(run.parts)
    except FileNotFoundError:  # the run removed its folder as it ended: its last state stays
        return rates.report, rates.last_rows, True
    rates.report = build(parts, run.interval)
    rates.last_rows = rates.rows(rates.report.pools, parts.written_at)
    return rates.report, rates.last_rows, ended


def _lines(run: RunInfo, rates: Rates, interval: float, out: TextIO) -> None:
    said: set[str] = set()
    while True:
        report, rows, ended = _read(run, rates)
        clock = time.strftime("%H:%M:%S")
        for row in rows:
            fields = " ".join(
                f"{name.replace(' ', '_').replace('/', '_per_')}={value.replace(' ', '')}"
                for name, value in zip(COLUMNS[1:], cells(row)[1:], strict=True)
            )
            print(f"{clock} {row.origin} {fields}", file=out)
        for advice in report.advice:
            line = f"[{advice.rule}] {advice.evidence} -> {advice.change}"
            if line not in said and advice.rule != "nothing_seen":
                said.add(line)
                print(f"{clock} advice: {line}", file=out)
        out.flush()
        if ended:
            print(f"{clock} the run ended", file=out, flush=True)
            return
        time.sleep(interval)


def _live(out: TextIO) -> Any:
    """rich's Live display on a terminal; None where lines serve (not a terminal, no rich)."""
    if not out.isatty():
        return None
    try:
        from rich.console import Console
        from rich.live import Live
    except ImportError:
        print(
            "poolscope top: rich is not installed, so this prints lines; for the live table: "
            "pip install 'poolscope[top]'.",
            file=sys.stderr,
        )
        return None
    return Live(console=Console(file=out), auto_refresh=False, redirect_stdout=False)


def _table(title: str, report: Report, rows: list[Row], ended: bool) -> Any:
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    table = Table(title=title, title_justify="left")
    for n, name in enumerate(COLUMNS):
        table.add_column(name, justify="left" if n == 0 else "right", no_wrap=n == 0)
    for row in rows:
        table.add_row(*cells(row))
    advice = [Text(f"[{a.rule}] {a.change}") for a in report.advice if a.rule != "nothing_seen"]
    footer = Text("the run ended" if ended else "Ctrl-C to quit (the program goes on)")
    return Group(table, *advice, footer)
