"""The ``poolscope`` command line: ``poolscope demo`` and ``poolscope run``. See the README."""

from __future__ import annotations

import argparse
import sys

from .demo import run_demo
from .run import run as run_program


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="poolscope", description="See the connection pools inside requests and urllib3."
    )
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser(
        "demo", help="replay common connection-pool scenarios on loopback and print what happened"
    )
    run = commands.add_parser(
        "run",
        help="run a Python program (and its Python children) with every pool instrumented, "
        "and write a report at exit",
        description="Example: poolscope run --html report.html -- python app.py --its-args. "
        "The report goes to stderr unless -o names a file; the program's own output is left "
        "as it is.",
    )
    run.add_argument("--format", choices=("text", "json"), default="text", help="report format")
    run.add_argument(
        "-o", "--output", metavar="FILE", help="write the report to FILE (default: stderr)"
    )
    run.add_argument("--html", metavar="FILE", help="also write a timeline page to FILE")
    run.add_argument("command", nargs=argparse.REMAINDER, help="-- then the command to run")
    args = parser.parse_args(argv)
    if args.command == "demo":
        return run_demo(sys.stdout)

    command = list(args.command)
    if command[:1] == ["--"]:
        command = command[1:]
    return run_program(command, fmt=args.format, html=args.html, output=args.output)
