"""Which Python functions run more (or fewer) bytecodes per request than the bare client's.

    python benchmarks/bytecodes.py            # urllib3 and requests, poolscope without an SDK
    python benchmarks/bytecodes.py --only "poolscope, SDK" --client urllib3
    python benchmarks/bytecodes.py --only "otel-urllib3 + poolscope" --against otel-urllib3

Each configuration runs in its own process against the same nginx: a few requests to connect
and warm up, then 20 reused-connection requests with ``sys.settrace`` opcode events counted per
function. The table lists every function whose count per request differs from bare's (or from
the configuration named by --against: the contrib one, for what poolscope adds to it). Unlike
instructions.py this does not depend on memory layout: it shows what the code itself executes,
and where.
"""

from __future__ import annotations

import argparse
import collections
import os
import subprocess
import sys
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness

REQUESTS = 20


def child(client: str, kind: str, url: str) -> None:
    call = harness.make(client, kind, url)
    for _ in range(3):
        call()
    counts: collections.Counter[str] = collections.Counter()

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        code = frame.f_code
        name = f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}:{code.co_qualname}"

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[name] += 1
            return local

        return local

    with harness.surroundings(kind):
        _traced(call, tracer)
    for name, n in sorted(counts.items()):
        print(f"{n}\t{name}")


def _traced(call: Any, tracer: Any) -> None:
    sys.settrace(tracer)
    try:
        for _ in range(REQUESTS):
            call()
    finally:
        sys.settrace(None)


def counts(client: str, kind: str, url: str) -> dict[str, float]:
    cmd = [sys.executable, os.path.abspath(__file__), "--child", client, kind, url]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        raise SystemExit(f"bytecode count failed for {client} {kind!r}:\n{proc.stderr[-2000:]}")
    out = {}
    for line in proc.stdout.splitlines():
        n, name = line.split("\t", 1)
        out[name] = int(n) / REQUESTS
    return out


def main() -> None:
    parser = harness.parser(__doc__)
    harness.add_client_option(parser)
    parser.add_argument(
        "--only",
        action="append",
        metavar="CONFIGURATION",
        help='compare this one with bare (default: "poolscope, no SDK")',
    )
    parser.add_argument(
        "--against",
        default="bare",
        metavar="CONFIGURATION",
        help="compare with this one instead of bare",
    )
    parser.add_argument("--child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        child(*args.child)
        return
    harness.exit_on_sigterm()
    kinds = args.only or ["poolscope, no SDK"]
    print(harness.describe_machine())
    print(f"bytecodes per reused-connection request ({REQUESTS} requests, sys.settrace opcodes)")
    with harness.nginx() as url:
        for client in ("urllib3", "requests"):
            if args.client and client != args.client:
                continue
            if args.against not in harness.CONFIGURATIONS[client]:
                continue
            bare = counts(client, args.against, url)
            for kind in kinds:
                if kind not in harness.CONFIGURATIONS[client]:
                    continue
                other = counts(client, kind, url)
                print(f"\n{client}: {kind} against {args.against}")
                print(
                    f"  total  {sum(bare.values()):10.1f} {sum(other.values()):10.1f}"
                    f" {sum(other.values()) - sum(bare.values()):+8.1f}"
                )
                for name in sorted(set(bare) | set(other)):
                    a, b = bare.get(name, 0.0), other.get(name, 0.0)
                    if a != b:
                        print(f"  {a:10.1f} {b:10.1f} {b - a:+8.1f}  {name}")


if __name__ == "__main__":
    main()
