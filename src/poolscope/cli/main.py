"""The ``poolscope`` command line: ``demo``, ``run``, ``report`` and ``top`` beside a run in
progress, and ``diagnose`` for a fleet from Prometheus. See the README."""

from __future__ import annotations

import argparse
import sys
import time

from .._version import __version__
from ..reporting.report import Report
from .child import DEFAULT_INTERVAL
from .demo import run_demo
from .diagnose import PrometheusError, diagnose
from .run import run as run_program
from .runs import build, choose_run, output_problem, read_parts, write_report
from .top import top


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="poolscope", description="See the connection pools inside requests and urllib3."
    )
    parser.add_argument("--version", action="version", version=f"poolscope {__version__}")
    commands = parser.add_subparsers(dest="action", required=True, metavar="COMMAND")
    commands.add_parser(
        "demo",
        help="replay common connection-pool scenarios on loopback and print what happened",
        description="Example: poolscope demo. Replays the scenarios users ask about "
        "(requests.get() against a Session, pool_connections, pool_maxsize, a server's "
        "keep-alive timeout, pool_block, timeouts) against built-in servers on 127.0.0.1 and "
        "127.0.0.2, and prints, for each, what every pool did and what the report advises. "
        "Needs no network and no backend.",
    )
    run = commands.add_parser(
        "run",
        help="run a Python program (and its Python children) with every pool instrumented, "
        "and write a report when it ends",
        description="Example: poolscope run --html report.html -- python app.py --its-args. "
        "The report goes to stderr unless -o names a file; the program's own output is left "
        "as it is. It is written however the program ends: at exit, by SIGTERM, SIGINT or "
        "SIGHUP. While it runs, `poolscope top` and `poolscope report` read it from another "
        "terminal.",
    )
    _report_options(run)
    run.add_argument(
        "--interval",
        type=_not_negative,
        default=DEFAULT_INTERVAL,
        metavar="SECONDS",
        help="how often each process of the program writes what it saw, for poolscope top "
        "and poolscope report and in case it is killed (default: %(default)s; 0: only at "
        "its end)",
    )
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    report = commands.add_parser(
        "report",
        help="print the report of a poolscope run in progress, without stopping it",
        description="Example: poolscope report --format json -o now.json, in another terminal "
        "while `poolscope run -- python app.py` runs. The report is as of each process's last "
        "snapshot (every second, by default).",
    )
    _report_options(report)
    _pid_option(report)
    live = commands.add_parser(
        "top",
        help="show a poolscope run in progress live: one row per host, refreshed",
        description="Example: poolscope top, in another terminal while `poolscope run -- "
        "python app.py` runs. A table redrawn in place in a terminal (with rich: pip install "
        "rich), one line per host each interval otherwise. Ctrl-C quits it; the program goes "
        "on.",
    )
    _pid_option(live)
    live.add_argument(
        "--interval",
        type=_seconds,
        default=1.0,
        metavar="SECONDS",
        help="redraw every SECONDS (default: %(default)s); the numbers change as often as the "
        "run's own --interval",
    )
    fleet = commands.add_parser(
        "diagnose",
        help="the report's advice for a fleet, from the metrics Prometheus scraped",
        description="Example: poolscope diagnose --prometheus http://prometheus:9090 --job "
        "app --range 6h. Per host, summed over every process of the jobs: connections "
        "created, reused, discarded..., the peak in use and the pool size, then the report's "
        "advice with the number. Anything that speaks Prometheus' HTTP API will do (Thanos, "
        "Mimir, VictoriaMetrics).",
    )
    fleet.add_argument("--prometheus", required=True, metavar="URL", help="Prometheus' URL")
    fleet.add_argument("--job", default="", help="a regular expression of the jobs (default: all)")
    fleet.add_argument(
        "--range",
        default="1h",
        metavar="DURATION",
        help="how far back, as PromQL writes it (default: %(default)s)",
    )
    _report_options(fleet)
    args = parser.parse_args(argv)
    if args.action == "demo":
        return run_demo(sys.stdout)
    if args.action == "diagnose":
        return _diagnose(args)
    if args.action == "run":
        command = list(args.command)
        if command[:1] == ["--"]:
            command = command[1:]
        return run_program(
            command,
            fmt=args.format,
            html=args.html,
            output=args.output,
            interval=args.interval,
            all_hosts=args.all_hosts,
        )
    found = choose_run(args.pid)
    if isinstance(found, str):
        print(f"poolscope {args.action}: {found}", file=sys.stderr)
        return 1
    if args.action == "top":
        return top(found, interval=args.interval)
    problem = output_problem(args.output, args.html)
    if problem:
        print(f"poolscope report: {problem}", file=sys.stderr)
        return 2
    try:
        now = build(read_parts(found.parts), found.interval)
    except FileNotFoundError:
        print(
            f"poolscope report: the run {found.pid} ended as it was read: its report is the one "
            "it wrote at its end.",
            file=sys.stderr,
        )
        return 1
    print(
        f"poolscope report: pid {found.pid} is still running: this is its report so far, as of "
        "each process's last snapshot.",
        file=sys.stderr,
    )
    _write(now, args)
    return 0


def _diagnose(args: argparse.Namespace) -> int:
    problem = output_problem(args.output, args.html)
    if problem:
        print(f"poolscope diagnose: {problem}", file=sys.stderr)
        return 2
    try:
        report = diagnose(args.prometheus, job=args.job, window=args.range, started=time.time())
    except PrometheusError as exc:
        print(f"poolscope diagnose: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while Prometheus answers slowly: as top does
        print("poolscope diagnose: interrupted; no report.", file=sys.stderr)
        return 130
    _write(report, args)
    return 0


def _write(report: Report, args: argparse.Namespace) -> None:
    """The report as _report_options asked for it, to stdout unless -o names a file."""
    write_report(
        report,
        args.format,
        args.output,
        args.html,
        who=f"poolscope {args.action}",
        to=sys.stdout,
        all_hosts=args.all_hosts,
    )


def _report_options(command: argparse.ArgumentParser) -> None:
    command.add_argument("--format", choices=("text", "json"), default="text", help="report format")
    command.add_argument("-o", "--output", metavar="FILE", help="write the report to FILE")
    command.add_argument("--html", metavar="FILE", help="also write a timeline page to FILE")
    command.add_argument(
        "--all-hosts",
        action="store_true",
        help="show every host in the text report and the page (by default: the 40 that matter "
        "most, and one line for the rest; JSON always has every host)",
    )


def _not_negative(value: str) -> float:
    seconds = _number(value)
    if seconds < 0:
        raise argparse.ArgumentTypeError(f"{value} is not a number of seconds, 0 or more")
    return seconds


def _seconds(value: str) -> float:
    seconds = _number(value)
    if seconds <= 0:
        raise argparse.ArgumentTypeError(f"{value} is not a number of seconds above 0")
    return seconds


def _number(value: str) -> float:
    try:
        return float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None


def _pid_option(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--pid", type=int, help="the run to read (poolscope run's pid), when several are running"
    )
