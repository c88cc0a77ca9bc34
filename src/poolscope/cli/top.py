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
    requests_per_s: float | None  # None: not known yet (one snapshot read so far)
    new_per_s: float | None
    discards_per_s: float | None
    reuse_ratio: float
    connect_p99_ms: float | None


# Requests, new connections and discards per second; None before a second snapshot.
Rate = tuple[float | None, float | None, float | None]


class Rates:
    """Per-second rates over the last interval, from one snapshot of the run to the next (none
    before the second); the last read's report and rows, kept for when the run's folder is gone
    (it ended)."""

    def __init__(self, run: RunInfo) -> None:
        self.report = Report(run.started, time.time(), (), ())
        self.last_rows: list[Row] = []
        # Per (host, proxy): the counts of the last snapshot read, when it was written, and the
        # rates from the one before (kept while no newer snapshot is written).
        self._last: dict[tuple[str, str | None], tuple[float, tuple[int, int, int], Rate]] = {}

    def rows(self, pools: tuple[PoolSummary, ...], at: float) -> list[Row]:
        rows = []
        for p in pools:
            key = (p.origin, p.proxy)
            counts = (p.requests, p.created, p.discarded)
            then, before, rates = self._last.get(key, (0.0, counts, (None, None, None)))
            if then and at > then:  # a newer snapshot: rates over the time between the two
                span = at - then
                rates = (
                    (counts[0] - before[0]) / span,
                    (counts[1] - before[1]) / span,
                    (counts[2] - before[2]) / span,
                )
            if at > then:
                self._last[key] = (at, counts, rates)
            p99 = p.connect_time_s.get("p99")
            rows.append(
                Row(
                    p.origin,
                    p.in_use,
                    p.idle,
                    p.pool_maxsize,
                    p.waiting,
                    p.requests,
                    rates[0],
                    rates[1],
                    rates[2],
                    p.reuse_ratio,
                    p99 * 1000 if p99 is not None else None,
                )
            )
        rows.sort(key=lambda r: (-(r.requests_per_s or 0.0), -r.requests, r.origin))
        return rows[:ROWS]


COLUMNS = (
    "host", "in use", "idle", "size", "waiting", "reqs", "req/s", "new/s", "disc/s", "reuse",
    "conn p99",
)  # fmt: skip


# The same, for a narrow terminal (80 columns).
SHORT = ("host", "use", "idle", "size", "wait", "reqs", "req/s", "new/s", "disc/s", "reuse", "p99")


def cells(row: Row) -> tuple[str, ...]:
    p99 = f"{row.connect_p99_ms:.1f}ms" if row.connect_p99_ms is not None else "-"
    return (
        row.origin,
        str(row.in_use),
        str(row.idle),
        str(row.pool_maxsize),
        str(row.waiting),
        str(row.requests),
        _rate(row.requests_per_s),
        _rate(row.new_per_s),
        _rate(row.discards_per_s),
        f"{row.reuse_ratio:.0%}",
        p99,
    )


def _rate(value: float | None) -> str:
    return "-" if value is None else f"{value:.1f}"


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
                    width = live.console.width
                    live.update(_table(title, report, rows, ended, width), refresh=True)
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
            "poolscope top: rich is not installed, so this prints lines; for the live table, "
            "install it: pip install rich.",
            file=sys.stderr,
        )
        return None
    return Live(console=Console(file=out), auto_refresh=False, redirect_stdout=False)


def _table(title: str, report: Report, rows: list[Row], ended: bool, width: int) -> Any:
    from rich import box
    from rich.console import Group
    from rich.table import Table
    from rich.text import Text

    values = [cells(row) for row in rows]

    def widths(names: tuple[str, ...]) -> list[int]:
        return [max([len(name)] + [len(v[n]) for v in values]) for n, name in enumerate(names)]

    # Numbers are never cut: on a narrow terminal the host's name gives way first, and the
    # table drops its vertical lines (3 columns a cell) and shortens its headers before that.
    boxed = sum(widths(COLUMNS)[1:]) + 3 * len(COLUMNS) + 16 <= width
    names = COLUMNS if boxed else SHORT
    table = Table(
        title=title,
        title_justify="left",
        box=box.HEAVY_HEAD if boxed else box.SIMPLE_HEAD,
        pad_edge=boxed,
        collapse_padding=not boxed,
    )
    room = width - sum(widths(names)[1:]) - 2 * len(names) - 1  # what the numbers leave
    table.add_column(
        names[0], overflow="ellipsis", no_wrap=True, min_width=12, max_width=max(12, room)
    )
    for name, least in zip(names[1:], widths(names)[1:], strict=True):
        table.add_column(name, justify="right", no_wrap=True, min_width=least)
    for v in values:
        table.add_row(*v)
    advice = [Text(f"[{a.rule}] {a.change}") for a in report.advice if a.rule != "nothing_seen"]
    footer = Text("the run ended" if ended else "Ctrl-C to quit (the program goes on)")
    return Group(table, *advice, footer)
