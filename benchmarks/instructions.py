"""poolscope's overhead in instructions, counted by valgrind's callgrind: the same every run.

    python benchmarks/instructions.py            # every configuration (about ten minutes)
    python benchmarks/instructions.py --quick    # fewer requests (about three minutes)
    python benchmarks/instructions.py --layouts 8          # the mean over 8 memory layouts
    python benchmarks/instructions.py --smoke              # a few requests, no figures: CI
    python benchmarks/instructions.py --quick --client urllib3 --only "poolscope, no SDK"

Wall-clock ratios on a small shared machine move by several percent from one run to the next,
more than the overhead they are meant to show. Instructions executed do not: callgrind counts
them exactly, whatever else the machine is doing. Each configuration runs in its own process
twice, with a short and a long series of reused-connection requests against the same nginx;
the difference between the two counts, divided by the difference in requests, is the client's
cost of one request with start-up, imports and the first connection taken out.

What it counts is the client process's user-space instructions. The kernel's share of a
request (socket calls on loopback) and nginx's are not in it, so a ratio here overstates
poolscope's share of a real request's time: poolscope adds no system calls, only Python.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor


def _shift_layout(layout: int) -> list[object]:
    """Move where the interpreter's method cache puts things, before anything is imported.

    CPython 3.11 finds a type's attribute in a 4,096-entry cache indexed by the type's version
    tag and the name's address. Two lookups that land in one entry evict each other on every
    request, at a few hundred instructions a time, and which lookups collide depends only on
    tags and addresses: adding or removing one class anywhere moves it. Consuming some version
    tags and allocating some memory first gives each layout a different draw, so the mean over
    layouts is the cost of the code, not of one lucky or unlucky arrangement."""
    kept: list[object] = []
    for i in range(layout * 37):
        cls = type(f"_Layout{i}", (), {})
        getattr(cls, "_layout", None)  # gives the class a version tag
        kept.append(cls)
    kept.extend("." * (i % 64) + str(i) for i in range(layout * 211))
    return kept


if len(sys.argv) > 1 and sys.argv[1] == "--child":
    _LAYOUT = _shift_layout(int(os.environ.get("POOLSCOPE_BENCH_LAYOUT", "0")))

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run  # noqa: E402

CONFIGURATIONS = {
    "requests": [
        "bare",
        "poolscope, no SDK",
        "poolscope, SDK",
        "poolscope, logging",
        "otel-requests",
    ],
    "urllib3": [
        "bare",
        "poolscope, no SDK",
        "poolscope, SDK",
        "poolscope, logging",
        "otel-urllib3",
    ],
}

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(client: str, kind: str, n: int, url: str) -> None:
    """Run in the measured process: build the configuration, connect once, then n requests."""
    make = run.make_requests if client == "requests" else run.make_urllib3
    call = make(kind, url)
    call()  # the first request connects; every counted one reuses
    if kind == "poolscope, logging":
        with run.info_logging():
            for _ in range(n):
                call()
    else:
        for _ in range(n):
            call()


def count(client: str, kind: str, n: int, url: str, layout: int = 0) -> int:
    """Instructions callgrind counted for a whole child process doing n requests."""
    with tempfile.TemporaryDirectory(prefix="poolscope-callgrind-") as tmp:
        cmd = [
            "valgrind",
            "--tool=callgrind",
            f"--callgrind-out-file={tmp}/out",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            client,
            kind,
            str(n),
            url,
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0", "POOLSCOPE_BENCH_LAYOUT": str(layout)}
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, check=False)
        match = _COLLECTED.search(proc.stderr)
        if proc.returncode != 0 or match is None:
            raise SystemExit(f"callgrind run failed for {client} {kind!r}:\n{proc.stderr[-2000:]}")
        return int(match.group(1))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument(
        "--smoke", action="store_true", help="a few requests, two configurations, for CI"
    )
    parser.add_argument("--client", choices=sorted(CONFIGURATIONS), help="only this client")
    parser.add_argument(
        "--only", action="append", metavar="CONFIGURATION", help="only this one (and bare)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="callgrind runs at a time"
    )
    parser.add_argument("--layouts", type=int, default=1, help="mean over this many memory layouts")
    parser.add_argument(
        "--child", nargs=4, metavar=("CLIENT", "KIND", "N", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        client, kind, n, url = args.child
        child(client, kind, int(n), url)
        return
    if shutil.which("valgrind") is None:
        raise SystemExit("this benchmark needs valgrind: apt-get install valgrind")
    short, long = (100, 600) if args.quick else (200, 2200)
    if args.smoke:
        short, long = 5, 15
        args.client, args.only = args.client or "urllib3", args.only or ["poolscope, no SDK"]
    layouts = range(args.layouts)
    print(run.describe_machine())
    print(f"instructions per reused-connection request: ({long} - {short}) requests, callgrind")
    if args.layouts > 1:
        print(
            f"mean over {args.layouts} memory layouts (each a different draw of method-cache "
            "collisions), with the range of the per-layout ratios"
        )
    with run.nginx() as url:
        for client, kinds in CONFIGURATIONS.items():
            if args.client and client != args.client:
                continue
            kinds = [k for k in kinds if k == "bare" or not args.only or k in args.only]
            # Instruction counts do not depend on what else runs: use every core.
            with ThreadPoolExecutor(max_workers=args.jobs) as workers:
                jobs = {
                    (kind, layout, n): workers.submit(count, client, kind, n, url, layout)
                    for layout in layouts
                    for kind in kinds
                    for n in (long, short)
                }
                per = {
                    kind: [
                        (jobs[kind, layout, long].result() - jobs[kind, layout, short].result())
                        / (long - short)
                        for layout in layouts
                    ]
                    for kind in kinds
                }
            bare = per[kinds[0]]
            mean_bare = sum(bare) / len(bare)
            print(f"\n{client}")
            print(f"  {'configuration':<22} {'instructions':>12} {'added':>9} {'ratio':>7}", end="")
            print("   per-layout ratios   per-layout instructions" if args.layouts > 1 else "")
            for kind, values in per.items():
                mean = sum(values) / len(values)
                added = mean - mean_bare
                line = f"  {kind:<22} {mean:>12,.0f} {added:>+9,.0f} {mean / mean_bare:>7.4f}"
                if args.layouts > 1:
                    ratios = [v / b for v, b in zip(values, bare, strict=True)]
                    line += f"   {min(ratios):.4f} to {max(ratios):.4f}"
                    line += f"   {min(values):,.0f} to {max(values):,.0f}"
                print(line)


if __name__ == "__main__":
    main()
