"""poolscope's overhead in instructions, counted by valgrind's callgrind: the same every run.

    python benchmarks/instructions.py            # every configuration (about ten minutes)
    python benchmarks/instructions.py --quick    # fewer requests (about three minutes)

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

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import run

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


def count(client: str, kind: str, n: int, url: str) -> int:
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
        env = {**os.environ, "PYTHONHASHSEED": "0"}
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
    parser.add_argument("--client", choices=sorted(CONFIGURATIONS), help="only this client")
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
    print(run.describe_machine())
    print(f"instructions per reused-connection request: ({long} - {short}) requests, callgrind")
    with run.nginx() as url:
        for client, kinds in CONFIGURATIONS.items():
            if args.client and client != args.client:
                continue
            per: dict[str, float] = {}
            for kind in kinds:
                per[kind] = (count(client, kind, long, url) - count(client, kind, short, url)) / (
                    long - short
                )
            bare = per[kinds[0]]
            print(f"\n{client}")
            print(f"  {'configuration':<22} {'instructions':>12} {'added':>9} {'ratio':>7}")
            for kind, value in per.items():
                print(f"  {kind:<22} {value:>12,.0f} {value - bare:>+9,.0f} {value / bare:>7.4f}")


if __name__ == "__main__":
    main()
