"""The hosts axis: what poolscope costs a program that talks to 10 ... 100,000 distinct hosts.

    python benchmarks/hosts.py            # 10 to 100,000 hosts (about 40 minutes)
    python benchmarks/hosts.py --smoke    # 10 to 1,000 hosts, one round: CI runs this
    python benchmarks/hosts.py --hosts 10000 --rounds 5
    python benchmarks/hosts.py --hosts 10000 --collect-every 1000   # the earlier figures' shape

Each configuration runs sweep.py in a fresh process (one Session, one request to each host,
requests' defaults, so nearly every pool is evicted) against hosts_server.py, interleaved
(bare, metrics, report, bare, ...) for several rounds, and prints the median microseconds per
request (wall and the process's CPU) with their ratio to bare measured in the same run, the
growth of the process's peak RSS during the sweep beside bare's, the cost of one metrics
collection at the end, the report's build time, and the range of the rounds' wall ratios (each
mode's run against the bare run of its round: how far one round can be trusted here), with
their median and an interval for it ("paired"). Metrics
mode's reader collects every ``--collect-seconds`` of a sweep (15 by default: the shortest
interval exporters are commonly set to; the SDK's periodic reader defaults to 60, Prometheus to a
minute), or every ``--collect-every`` hosts; a collection at the end is timed on its own. Nothing
here asserts: it measures; the targets (docs/performance.md) speak of the ratios.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import statistics
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

HERE = os.path.dirname(os.path.abspath(__file__))

MODES = ("bare", "metrics", "report")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--hosts", type=int, action="append")
    parser.add_argument("--rounds", type=int)
    parser.add_argument("--collect-seconds", type=float, default=15.0)
    parser.add_argument("--collect-every", type=int, default=0, metavar="HOSTS")
    args = parser.parse_args()
    axis = args.hosts or ([10, 100, 1000] if args.smoke else [10, 100, 1000, 10_000, 100_000])
    print(harness.describe_machine())
    server = subprocess.Popen(
        [sys.executable, os.path.join(HERE, "hosts_server.py")],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert server.stdout is not None and server.stdin is not None
    port = int(server.stdout.readline())
    collect = (
        "--collect-seconds",
        str(args.collect_seconds),
        "--collect-every",
        str(args.collect_every),
    )
    try:
        print(
            f"metrics mode collects every {args.collect_seconds:g} s"
            + (f" or {args.collect_every} hosts" if args.collect_every else "")
        )
        print(
            f"\n{'hosts':>7} {'mode':<8} {'wall us':>8} {'ratio':>6} {'cpu us':>7} {'ratio':>6} "
            f"{'RSS +MB':>8} {'vs bare':>8} {'collect s':>9} {'report s':>8} {'kept':>5} "
            f"{'rounds':>11} {'paired (95%)':>17}"
        )
        for hosts in axis:
            rounds = args.rounds or (1 if args.smoke or hosts >= 100_000 else 3)
            runs: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
            for _ in range(rounds):
                for mode in MODES:
                    runs[mode].append(sweep(port, mode, hosts, *collect))
            table(hosts, runs)
    finally:
        server.stdin.close()
        server.wait(10)
        server.stdout.close()


def sweep(port: int, mode: str, hosts: int, *args: str) -> dict[str, Any]:
    out = subprocess.run(
        [
            *(sys.executable, os.path.join(HERE, "sweep.py"), "--port", str(port)),
            *("--mode", mode, "--hosts", str(hosts), *args),
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    result: dict[str, Any] = json.loads(out.stdout)
    return result


def table(hosts: int, runs: dict[str, list[dict[str, Any]]]) -> None:
    def median(mode: str, name: str) -> float:
        return statistics.median(run.get(name, 0.0) for run in runs[mode])

    bare_wall, bare_cpu = median("bare", "us_per_request"), median("bare", "cpu_us_per_request")
    bare_rss = median("bare", "rss_growth_kb") / 1000
    for mode in MODES:
        wall, cpu = median(mode, "us_per_request"), median(mode, "cpu_us_per_request")
        rss = median(mode, "rss_growth_kb") / 1000
        last = runs[mode][-1]
        kept = last.get("report_rows", "")
        collect = f"{last['collect_s']:.3f}" if "collect_s" in last else ""
        report = f"{last['report_s']:.3f}" if "report_s" in last else ""
        ratios = [
            run["us_per_request"] / bare["us_per_request"]
            for run, bare in zip(runs[mode], runs["bare"], strict=True)
        ]
        spread = f"{min(ratios):.2f}-{max(ratios):.2f}" if mode != "bare" else ""
        print(
            f"{hosts:>7} {mode:<8} {wall:>8.0f} {wall / bare_wall:>5.2f}x {cpu:>7.0f} "
            f"{cpu / bare_cpu:>5.2f}x {rss:>8.1f} {rss - bare_rss:>+8.1f} {collect:>9} "
            f"{report:>8} {kept!s:>5} {spread:>11} {paired(ratios) if mode != 'bare' else '':>17}",
            flush=True,
        )


def paired(ratios: list[float]) -> str:
    """The median of the rounds' own ratios (each mode's run against its round's bare run), with
    a distribution-free interval of about 95% or more for it: order statistics, n/2 -+ 0.98
    sqrt(n) ranks around the middle (with 8 rounds, the smallest and the largest)."""
    ordered, n = sorted(ratios), len(ratios)
    half = 0.98 * math.sqrt(n)
    low = ordered[max(0, math.floor(n / 2 - half) - 1)]
    high = ordered[min(n - 1, math.ceil(n / 2 + 1 + half) - 1)]
    return f"{statistics.median(ordered):.3f} ({low:.2f}-{high:.2f})"


if __name__ == "__main__":
    main()
