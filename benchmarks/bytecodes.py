"""Which Python functions run more (or fewer) bytecodes per request than the bare client's.

    python benchmarks/bytecodes.py            # urllib3 and requests, poolscope without an SDK
    python benchmarks/bytecodes.py --only "poolscope, SDK" --client urllib3
    python benchmarks/bytecodes.py --only "otel-urllib3 + poolscope" --against otel-urllib3
    python benchmarks/bytecodes.py --client httpx-async   # an httpx.AsyncClient, on one loop

Each configuration runs in its own process against the same nginx: a few requests to connect
and warm up, then 20 reused-connection requests with each bytecode executed counted per function
(``sys.settrace``'s opcode events up to 3.11, ``sys.monitoring``'s INSTRUCTION events from
3.12: the totals of two interpreters are not comparable, their differences to bare are). The
table lists every function whose count per request differs from bare's (or from the
configuration named by --against: the contrib one, for what poolscope adds to it). Unlike
instructions.py this does not depend on memory layout: it shows what the code itself executes,
and where. An ``httpx.AsyncClient``'s 20 requests are awaited in one coroutine on one event
loop (``harness.AsyncRequest``): the loop's own bytecodes are in every row alike.
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
    with harness.surroundings(kind):
        if sys.version_info >= (3, 12):
            _monitored(call, counts)
        else:
            _traced(call, counts)
    for name, n in sorted(counts.items()):
        print(f"{n}\t{name}")


def _name(code: Any) -> str:
    qualname = getattr(code, "co_qualname", code.co_name)  # co_qualname: 3.11+
    return f"{os.path.basename(code.co_filename)}:{code.co_firstlineno}:{qualname}"


def _traced(call: Any, counts: collections.Counter[str]) -> None:
    # Up to 3.11: sys.settrace's opcode events (3.12's settrace, rebuilt on sys.monitoring,
    # drops those asked for in a frame's call event).
    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        name = _name(frame.f_code)

        def local(frame: Any, event: str, arg: Any) -> Any:
            if event == "opcode":
                counts[name] += 1
            return local

        return local

    sys.settrace(tracer)
    try:
        harness.repeat(call, REQUESTS)
    finally:
        sys.settrace(None)


def _monitored(call: Any, counts: collections.Counter[str]) -> None:
    # 3.12+: sys.monitoring's INSTRUCTION events, one per bytecode executed. The loop that
    # makes the requests (harness.repeat's) is counted too, the same in every configuration.
    monitoring: Any = getattr(sys, "monitoring")  # noqa: B009 (3.12+; typeshed for 3.10 lacks it)
    names: dict[Any, str] = {}

    def instruction(code: Any, offset: int) -> None:
        name = names.get(code)
        if name is None:
            name = names[code] = _name(code)
        counts[name] += 1

    tool = monitoring.PROFILER_ID
    monitoring.use_tool_id(tool, "poolscope-bytecodes")
    monitoring.register_callback(tool, monitoring.events.INSTRUCTION, instruction)
    monitoring.set_events(tool, monitoring.events.INSTRUCTION)
    try:
        harness.repeat(call, REQUESTS)
    finally:
        monitoring.set_events(tool, 0)
        monitoring.register_callback(tool, monitoring.events.INSTRUCTION, None)
        monitoring.free_tool_id(tool)


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
    how = "sys.monitoring" if sys.version_info >= (3, 12) else "sys.settrace opcodes"
    print(f"bytecodes per reused-connection request ({REQUESTS} requests, {how})")
    with harness.nginx() as url:
        for client in ("urllib3", "requests", "httpx", "httpx-async"):
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
