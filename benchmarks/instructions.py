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

Most of what moves a count from one memory layout to the next is CPython 3.11's method cache
(see _shift_layout): a lookup that misses it runs find_name_in_mro, which walks the class's
MRO. The run counts those misses from callgrind's call graph and prints each configuration's
cost both ways: all instructions, and all but the misses' (nearer the code's own cost, which moves
much less between layouts). With several layouts it prints the mean added cost with its standard
error over layouts (each layout's configuration minus that layout's bare run).

What it counts is the client process's user-space instructions. The kernel's share of a
request (socket calls on loopback) and nginx's are not in it, so a ratio here overstates
poolscope's share of a real request's time: poolscope adds no system calls, only Python.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple


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

import harness  # noqa: E402

_COLLECTED = re.compile(r"Collected\s*:\s*(\d+)")


def child(client: str, kind: str, n: int, url: str) -> None:
    """Run in the measured process: build the configuration, connect once, then n requests."""
    call = harness.make(client, kind, url)
    call()  # the first request connects; every counted one reuses
    with harness.surroundings(kind):
        harness.repeat(call, n)


class Count(NamedTuple):
    instructions: float  # the whole process (or per request, see per_request)
    misses: float  # calls of find_name_in_mro: method-cache misses
    miss_instructions: float  # instructions spent in those calls, inclusive


_MISS_FUNCTION = "find_name_in_mro"


def method_cache_misses(path: str) -> tuple[int, int]:
    """Calls of find_name_in_mro, and their inclusive instructions, from a callgrind file.

    Callgrind writes each call as ``cfn=(id) name`` (the name only the first time an id
    appears), then ``calls=N ...``, then a line whose second number is the call's inclusive
    cost. (0, 0) when the interpreter has no symbols for it."""
    names: dict[str, str] = {}
    calls = cost = 0
    target = False
    with open(path) as f:
        for line in f:
            if line.startswith(("fn=", "cfn=")):
                m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
                if m is not None:
                    if m.group(3):
                        names[m.group(2)] = m.group(3)
                    if m.group(1) == "cfn":
                        target = names.get(m.group(2)) == _MISS_FUNCTION
            elif line.startswith("calls=") and target:
                calls += int(line[6:].split()[0])
                cost += int(next(f).split()[1])
    return calls, cost


def count(client: str, kind: str, n: int, url: str, layout: int = 0) -> Count:
    """What callgrind counted for a whole child process doing n requests."""
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
        return Count(int(match.group(1)), *method_cache_misses(f"{tmp}/out"))


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument(
        "--smoke", action="store_true", help="a few requests, two configurations, for CI"
    )
    harness.add_client_option(parser)
    parser.add_argument(
        "--only", action="append", metavar="CONFIGURATION", help="only this one (and bare)"
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="callgrind runs at a time"
    )
    parser.add_argument("--layouts", type=int, default=1, help="mean over this many memory layouts")
    parser.add_argument(
        "--first-layout", type=int, default=0, metavar="K", help="layouts K, K+1, ... (default 0)"
    )
    parser.add_argument(
        "--per-layout", action="store_true", help="also print each layout's added instructions"
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("CLIENT", "KIND", "N", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.child:
        client, kind, n, url = args.child
        child(client, kind, int(n), url)
        return
    harness.exit_on_sigterm()
    if shutil.which("valgrind") is None:
        raise SystemExit("this benchmark needs valgrind: apt-get install valgrind")
    short, long = (100, 600) if args.quick else (200, 2200)
    if args.smoke:
        short, long = 5, 15
        args.client, args.only = args.client or "urllib3", args.only or ["poolscope, no SDK"]
    layouts = range(args.first_layout, args.first_layout + args.layouts)
    print(harness.describe_machine())
    print(f"instructions per reused-connection request: ({long} - {short}) requests, callgrind")
    if args.layouts > 1:
        print(
            f"mean over {args.layouts} memory layouts (each a different draw of method-cache "
            "collisions)"
        )
    with harness.nginx() as url:
        for client, kinds in harness.CONFIGURATIONS.items():
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
                        per_request(
                            jobs[kind, layout, long].result(),
                            jobs[kind, layout, short].result(),
                            long - short,
                        )
                        for layout in layouts
                    ]
                    for kind in kinds
                }
            print(f"\n{client}")
            report(per, kinds[0], args.layouts, args.per_layout)


def per_request(long: Count, short: Count, n: int) -> Count:
    """One request's share: the long run minus the short one, over the requests between."""
    return Count(
        (long.instructions - short.instructions) / n,
        (long.misses - short.misses) / n,
        (long.miss_instructions - short.miss_instructions) / n,
    )


def report(per: dict[str, list[Count]], bare_kind: str, layouts: int, each: bool) -> None:
    bare = per[bare_kind]
    header = f"  {'configuration':<22} {'instructions':>12} {'added':>9} {'ratio':>7}"
    if layouts > 1:
        header += f" {'2 SE':>7}   per-layout ratios"
    header += f"   {'misses':>6}   {'without misses':>14} {'ratio':>7}"
    print(header)
    for kind, values in per.items():
        added = [v.instructions - b.instructions for v, b in zip(values, bare, strict=True)]
        own = [
            (v.instructions - v.miss_instructions) - (b.instructions - b.miss_instructions)
            for v, b in zip(values, bare, strict=True)
        ]
        mean_bare = statistics.fmean(b.instructions for b in bare)
        mean_bare_own = statistics.fmean(b.instructions - b.miss_instructions for b in bare)
        mean = statistics.fmean(v.instructions for v in values)
        line = f"  {kind:<22} {mean:>12,.0f} {statistics.fmean(added):>+9,.0f}"
        line += f" {mean / mean_bare:>7.4f}"
        if layouts > 1:
            se = statistics.stdev(added) / len(added) ** 0.5
            ratios = [v.instructions / b.instructions for v, b in zip(values, bare, strict=True)]
            line += f" {2 * se / mean_bare:>7.4f}   {min(ratios):.4f} to {max(ratios):.4f}"
        misses = statistics.fmean(v.misses for v in values)
        line += f"   {misses:>6.1f}   {statistics.fmean(own):>+14,.0f}"
        line += f" {1 + statistics.fmean(own) / mean_bare_own:>7.4f}"
        print(line)
        if each:
            print("    per layout:", " ".join(f"{a:+.0f}" for a in added))
            print("    misses:", " ".join(f"{v.misses:.1f}" for v in values))
    print(
        "  added: mean over layouts of (configuration - bare) instructions per request; "
        "2 SE: two standard errors of that mean, as a ratio;\n"
        "  misses: method-cache misses per request; without misses: added instructions and "
        "ratio with every miss's own instructions taken out of both sides"
    )


if __name__ == "__main__":
    main()
