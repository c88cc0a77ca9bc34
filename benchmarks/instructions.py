"""poolscope's overhead in instructions, counted by valgrind's callgrind: the same every run.

    python benchmarks/instructions.py            # every configuration (about ten minutes)
    python benchmarks/instructions.py --quick    # fewer requests (about three minutes)
    python benchmarks/instructions.py --layouts 8          # the mean over 8 memory layouts
    python benchmarks/instructions.py --smoke              # a few requests, no figures: CI
    python benchmarks/instructions.py --quick --client urllib3 --only "poolscope, no SDK"
    python benchmarks/instructions.py --quick --client httpx-async   # httpx.AsyncClient
    python benchmarks/instructions.py --quick --client httpx-async --freeze-heap
    python benchmarks/instructions.py --quick --only "otel-urllib3 + poolscope"  # and its contrib
    python benchmarks/instructions.py --quick --cache --only "poolscope, SDK"   # cachegrind
    python benchmarks/instructions.py --hot-path --layouts 4   # checkout and return, no I/O
    bash benchmarks/every_python.sh --quick --layouts 4    # on Python 3.10, 3.11, 3.12, 3.13
    python benchmarks/instructions.py --quick --layouts 4 --first-layout 4 --save b.json
    python benchmarks/instructions.py --load a.json --load b.json   # one table, 8 layouts

Wall-clock ratios on a small shared machine move by several percent from one run to the next,
more than the overhead they are meant to show. Instructions executed do not: callgrind counts
them exactly, whatever else the machine is doing. Each configuration runs in its own process
twice, with a short and a long series of reused-connection requests against the same nginx;
the difference between the two counts, divided by the difference in requests, is the client's
cost of one request with start-up, imports and the first connection taken out. An
``httpx.AsyncClient`` ("httpx-async") awaits each series in one coroutine on one event loop
(``harness.AsyncRequest`` says why), so its per-request cost is an awaited request's in a
running loop, the loop's own share of it included, and no loop start-up.

The garbage collector's full collections are in the counts, and they do not divide evenly: a
full collection walks the whole heap (start-up included: imports, an SDK), and one comes every
couple of thousand httpx requests, when what survived to the oldest generation since the last
one reaches a quarter of it. Whether one falls between the short and the long series, or in
both, moves a row by a whole collection over the requests between (about 36,000 instructions
a request for an httpx.AsyncClient at --quick), and a row whose heap is larger is charged for
walking it. ``--freeze-heap`` takes both out: after the first request the child freezes what
it holds (``gc.freeze()``, start-up and SDK included) and collects, so that a full collection
walks only what the requests left behind and none waits on the size of the start-up heap; the
young collections, and all the requests allocate, are still collected and counted.

The traced request path is the "contrib + poolscope" rows: the contrib instrumentation makes a
request span current for each request, and poolscope adds its link and span event to it. Below
each client's table, "poolscope on top of contrib" is that row over the contrib row alone, and
"poolscope over its control" the SDK row over the bare client in a process where the same SDK
is set up and never used ("bare, SDK set up"; harness.SDK_CONTROL says why it differs from bare).

Most of what moves a count from one memory layout to the next is CPython's method cache (see
_shift_layout): a lookup that misses it runs find_name_in_mro, which walks the class's MRO.
The run counts those misses from callgrind's call graph (calls of find_name_in_mro from the
cache's lookup, _PyType_Lookup or, on 3.13, _PyType_LookupRef; "n/a" where the interpreter has
no symbols for them) and prints each configuration's cost both ways: all instructions, and all
but the misses' (nearer the code's own cost, which moves much less between layouts). With
several layouts it prints the mean added cost with its standard error over layouts (each
layout's configuration minus that layout's bare run).

What it counts is the client process's user-space instructions. The kernel's share of a
request (socket calls on loopback) and nginx's are not in it, so a ratio here overstates
poolscope's share of a real request's time: poolscope adds no system calls, only Python.
Instructions are not time either: ``--cache`` runs cachegrind instead, which simulates the
caches and branch predictor and prints misses per request with cachegrind's cycle estimate.
``--hot-path`` counts poolscope's own code on that path alone: a pool's checkout and return of
an open connection, no request, no I/O (the rows bare, no SDK and SDK); the same code on two
interpreters shows there what each makes of it.
"""

from __future__ import annotations

import argparse
import gc
import json
import math
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, NamedTuple


def _shift_layout(layout: int) -> list[object]:
    """Move where the interpreter's method cache puts things, before anything is imported.

    CPython 3.10 to 3.13 find a type's attribute through the same 4,096-entry cache, indexed by
    the type's version tag XOR the name's address (shifted right by 3). Two lookups that land
    in one entry evict each other on every request, at a few hundred instructions a miss, and
    which lookups collide depends only on tags and addresses: adding or removing one class
    anywhere moves it. What reaches the cache differs by version: on 3.10 every method call
    and most attribute reads on a class look up through it; from 3.11 a specialized
    instruction keeps the type's version in the bytecode and skips the cache, so the lookups
    left are those of sites that are not specialized and of C code (special methods such as
    ``__enter__``, ``getattr()``). From 3.12 the interpreter's own names and the static
    builtin types sit at the same addresses and tags in every process; the names of the code
    and the tags of the classes it creates do not. Consuming some version tags and allocating
    some memory first gives each layout a different draw, so the mean over layouts is the cost
    of the code, not of one lucky or unlucky arrangement."""
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

# --freeze-heap, passed on to the measured child processes.
FREEZE_HEAP = "POOLSCOPE_BENCH_FREEZE_HEAP"

# --hot-path: the pool's checkout and return without I/O, under this name as a client.
CHECKOUT = "checkout and return"


def child(client: str, kind: str, n: int, url: str) -> None:
    """Run in the measured process: build the configuration, connect once, then n requests."""
    if client == CHECKOUT:
        call = harness.make_checkout(kind, url)  # connected, so every cycle reuses
    else:
        call = harness.make(client, kind, url)
        call()  # the first request connects; every counted one reuses
    if os.environ.get(FREEZE_HEAP):
        gc.freeze()  # the start-up heap: no later collection walks it
        gc.collect()  # nor waits for a quarter of it to be new
    with harness.surroundings(kind):
        harness.repeat(call, n)


class Count(NamedTuple):
    instructions: float  # the whole process (or per request, see per_request)
    misses: float  # method-cache misses: NaN where the interpreter has no symbols for them
    miss_instructions: float  # instructions spent in those misses, inclusive


# A method-cache miss is a call of find_name_in_mro from the cache's lookup: _PyType_Lookup
# (3.10 to 3.12) or _PyType_LookupRef (3.13, which _PyType_Lookup calls). Its other caller,
# update_one_slot, fills a new class's slots: class creation, not a miss.
_MISS_FUNCTION = "find_name_in_mro"
_LOOKUPS = frozenset({"_PyType_Lookup", "_PyType_LookupRef"})


def method_cache_misses(lines: Iterable[str]) -> tuple[float, float]:
    """Method-cache misses, and their inclusive instructions, from a callgrind file's lines.

    Callgrind writes ``fn=(id) name`` for the function whose costs follow and each call it
    makes as ``cfn=(id) name`` (a name only the first time its id appears), then
    ``calls=N ...``, then a line whose second number is the call's inclusive cost. (NaN, NaN)
    when the interpreter has no symbols for find_name_in_mro (a stripped build)."""
    names: dict[str, str] = {}
    calls = cost = 0
    caller = ""
    target = False
    lines = iter(lines)
    for line in lines:
        if line.startswith(("fn=", "cfn=")):
            m = re.match(r"(c?fn)=\((\d+)\)(?: (.*))?", line.rstrip("\n"))
            if m is not None:
                if m.group(3):
                    names[m.group(2)] = m.group(3)
                name = names.get(m.group(2), "")
                if m.group(1) == "fn":
                    caller, target = name, False
                else:
                    target = name == _MISS_FUNCTION and caller in _LOOKUPS
        elif line.startswith("calls=") and target:
            calls += int(line[6:].split()[0])
            cost += int(next(lines).split()[1])
    if _MISS_FUNCTION not in names.values():
        return math.nan, math.nan
    return calls, cost


# The valgrind runs under way, so that a run stopped early (SIGTERM, Ctrl-C) stops them too.
_running: set[subprocess.Popen[str]] = set()
_stopping = threading.Event()


def valgrind(tool: list[str], client: str, kind: str, n: int, url: str, layout: int) -> str:
    """Run one child process doing n requests under valgrind; returns its output file's text."""
    with tempfile.TemporaryDirectory(prefix="poolscope-valgrind-") as tmp:
        cmd = [
            "valgrind",
            *tool,
            f"--{tool[0].removeprefix('--tool=')}-out-file={tmp}/out",
            sys.executable,
            os.path.abspath(__file__),
            "--child",
            client,
            kind,
            str(n),
            url,
        ]
        env = {**os.environ, "PYTHONHASHSEED": "0", "POOLSCOPE_BENCH_LAYOUT": str(layout)}
        proc = subprocess.Popen(
            cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
        )
        _running.add(proc)
        try:
            if _stopping.is_set():
                proc.terminate()
            _, stderr = proc.communicate()
        finally:
            _running.discard(proc)
        if proc.returncode != 0 or not os.path.exists(f"{tmp}/out"):
            raise SystemExit(f"{tool[0]} run failed for {client} {kind!r}:\n{stderr[-2000:]}")
        with open(f"{tmp}/out") as f:
            return f.read()


def count(client: str, kind: str, n: int, url: str, layout: int = 0) -> Count:
    """What callgrind counted for a whole child process doing n requests."""
    lines = valgrind(["--tool=callgrind"], client, kind, n, url, layout).splitlines()
    total = next(int(line.split()[1]) for line in lines if line.startswith("summary:"))
    return Count(total, *method_cache_misses(lines))


# cachegrind's events with --cache-sim=yes --branch-sim=yes: instructions (Ir), data reads (Dr)
# and writes (Dw), their first-level (I1mr, D1mr, D1mw) and last-level (ILmr, DLmr, DLmw) misses,
# conditional and indirect branches (Bc, Bi) and their mispredictions (Bcm, Bim).
CACHE_TOOL = ["--tool=cachegrind", "--cache-sim=yes", "--branch-sim=yes"]


def cache_count(client: str, kind: str, n: int, url: str, layout: int = 0) -> dict[str, float]:
    """cachegrind's totals for a whole child process doing n requests."""
    events: list[str] = []
    summary: list[int] = []
    for line in valgrind(CACHE_TOOL, client, kind, n, url, layout).splitlines():
        if line.startswith("events:"):
            events = line.split()[1:]
        elif line.startswith("summary:"):
            summary = [int(v) for v in line.split()[1:]]
    return dict(zip(events, summary, strict=True))


def cycles(e: dict[str, float]) -> float:
    """cachegrind's cycle estimate: Ir + 10 x (first-level misses + mispredicted branches) +
    100 x last-level misses. A rough model, not a measurement of this machine."""
    l1 = e["I1mr"] + e["D1mr"] + e["D1mw"]
    ll = e["ILmr"] + e["DLmr"] + e["DLmw"]
    return e["Ir"] + 10 * (l1 + e["Bcm"] + e["Bim"]) + 100 * ll


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--quick", action="store_true", help="fewer requests")
    parser.add_argument(
        "--smoke", action="store_true", help="a few requests, two configurations, for CI"
    )
    harness.add_client_option(parser)
    parser.add_argument(
        "--only",
        action="append",
        metavar="CONFIGURATION",
        help='only this one (and bare; a "contrib + poolscope" one also brings its contrib one)',
    )
    parser.add_argument(
        "--jobs", type=int, default=os.cpu_count() or 1, help="valgrind runs at a time"
    )
    parser.add_argument("--layouts", type=int, default=1, help="mean over this many memory layouts")
    parser.add_argument(
        "--first-layout", type=int, default=0, metavar="K", help="layouts K, K+1, ... (default 0)"
    )
    parser.add_argument(
        "--per-layout", action="store_true", help="also print each layout's added instructions"
    )
    parser.add_argument(
        "--cache",
        action="store_true",
        help="cachegrind instead: cache and branch misses per request, estimated cycles",
    )
    parser.add_argument(
        "--hot-path",
        action="store_true",
        help="only a pool's checkout and return of an open connection, no I/O",
    )
    parser.add_argument(
        "--freeze-heap",
        action="store_true",
        help="freeze the start-up heap before the counted requests (full collections even out)",
    )
    parser.add_argument(
        "--save", metavar="FILE", help="also write each layout's counts per request (JSON)"
    )
    parser.add_argument(
        "--load",
        action="append",
        metavar="FILE",
        help="measure nothing: one table from the layouts of these --save files",
    )
    parser.add_argument(
        "--child", nargs=4, metavar=("CLIENT", "KIND", "N", "URL"), help=argparse.SUPPRESS
    )
    args = parser.parse_args()
    if args.load:
        load(args.load, args.per_layout)
        return
    if args.child:
        client, kind, n, url = args.child
        child(client, kind, int(n), url)
        return
    harness.exit_on_sigterm()
    if shutil.which("valgrind") is None:
        raise SystemExit("this benchmark needs valgrind: apt-get install valgrind")
    known = {k for kinds in harness.CONFIGURATIONS.values() for k in kinds}
    for kind in args.only or []:
        if kind not in known:
            raise SystemExit(
                f"--only {kind!r} is not a configuration; pick one of: {', '.join(sorted(known))}"
            )
    short, long = (100, 600) if args.quick else (200, 2200)
    clients = harness.CONFIGURATIONS
    if args.hot_path:
        short, long = short * 10, long * 10
        clients = {CHECKOUT: harness.CHECKOUT_CONFIGURATIONS}
        args.client = None
    if args.smoke:
        short, long = 5, 15
        args.only = args.only or ["poolscope, no SDK"]
        if not args.hot_path:
            args.client = args.client or "urllib3"
    layouts = range(args.first_layout, args.first_layout + args.layouts)
    print(harness.describe_machine())
    tool = "cachegrind" if args.cache else "callgrind"
    what = "checkout and return, no I/O" if args.hot_path else "reused-connection request"
    print(f"instructions per {what}: ({long} - {short}) of them, {tool}")
    if args.freeze_heap:
        os.environ[FREEZE_HEAP] = "1"  # the children's environment is this one's
        print("start-up heap frozen before the counted requests (--freeze-heap)")
    if args.layouts > 1:
        print(
            f"mean over {args.layouts} memory layouts (each a different draw of method-cache "
            "collisions)"
        )
    wanted = set(args.only or known) | {"bare"}
    for pairs in (harness.ON_TOP_OF_CONTRIB, harness.SDK_CONTROL):
        wanted |= {pairs[k] for k in wanted if k in pairs}
    measure = cache_count if args.cache else count
    saved: dict[str, Any] = {
        "machine": harness.describe_machine(),
        "requests": [short, long],
        "freeze_heap": args.freeze_heap,
        "clients": {},
    }
    with harness.nginx() as url:
        for client, kinds in clients.items():
            if args.client and client != args.client:
                continue
            kinds = [k for k in kinds if k in wanted]
            # Instruction counts do not depend on what else runs: use every core.
            workers = ThreadPoolExecutor(max_workers=args.jobs)
            try:
                jobs = {
                    (kind, layout, n): workers.submit(measure, client, kind, n, url, layout)
                    for layout in layouts
                    for kind in kinds
                    for n in (long, short)
                }
                results: dict[tuple[str, int, int], Any] = {
                    key: job.result() for key, job in jobs.items()
                }
            except BaseException:  # stopped, or one run failed: stop the others too
                _stopping.set()
                workers.shutdown(wait=False, cancel_futures=True)
                for proc in list(_running):
                    proc.terminate()
                raise
            workers.shutdown()
            print(f"\n{client}")
            if args.cache:
                cache_report(results, kinds, layouts, long, short)
                continue
            per = {
                kind: [
                    per_request(
                        results[kind, layout, long], results[kind, layout, short], long - short
                    )
                    for layout in layouts
                ]
                for kind in kinds
            }
            report(per, kinds[0], args.layouts, args.per_layout)
            report_on_top(per, args.layouts)
            saved["clients"][client] = {
                kind: {str(layout): list(c) for layout, c in zip(layouts, counts, strict=True)}
                for kind, counts in per.items()
            }
    if args.save and not args.cache:
        with open(args.save, "w") as f:
            json.dump(saved, f, indent=1)


def load(paths: list[str], each: bool) -> None:
    """One table per client from the layouts of several --save files (of one commit and
    interpreter, with the same requests: the first file's machine lines are printed)."""
    files = []
    for path in paths:
        with open(path) as f:
            files.append(json.load(f))
    first = files[0]

    def measured(saved: dict[str, Any]) -> tuple[str, Any]:
        # every_python.sh exports each run's code to a directory of its own: not a difference.
        machine = re.sub(r" \(exported to [^)]*\)", "", saved["machine"])
        return machine, saved["requests"], saved.get("freeze_heap", False)

    for path, other in zip(paths, files, strict=True):
        if measured(other) != measured(first):
            raise SystemExit(
                f"{path} was measured on another commit, interpreter, request count or "
                f"--freeze-heap than {paths[0]}: combine only runs of one commit and interpreter."
            )
    short, long = first["requests"]
    print(first["machine"])
    print(f"instructions per reused-connection request: ({long} - {short}) of them, callgrind")
    if first.get("freeze_heap"):
        print("start-up heap frozen before the counted requests (--freeze-heap)")
    print(f"from {', '.join(paths)}")
    for client in [*harness.CONFIGURATIONS, CHECKOUT]:
        merged: dict[str, dict[str, list[float]]] = {}
        for other in files:
            for kind, by_layout in other["clients"].get(client, {}).items():
                for layout, values in by_layout.items():
                    merged.setdefault(kind, {}).setdefault(layout, values)
        if not merged:
            continue
        # Only the layouts every configuration has, so each is compared within its layout.
        common = set.intersection(*(set(by_layout) for by_layout in merged.values()))
        layouts = sorted(common, key=int)
        print(f"\n{client}")
        print(f"mean over {len(layouts)} memory layouts ({', '.join(layouts)})")
        known = harness.CONFIGURATIONS.get(client, harness.CHECKOUT_CONFIGURATIONS)
        kinds = [k for k in known if k in merged]
        per = {kind: [Count(*merged[kind][layout]) for layout in layouts] for kind in kinds}
        report(per, kinds[0], len(layouts), each)
        report_on_top(per, len(layouts))


def per_request(long: Count, short: Count, n: int) -> Count:
    """One request's share: the long run minus the short one, over the requests between."""
    return Count(
        (long.instructions - short.instructions) / n,
        (long.misses - short.misses) / n,
        (long.miss_instructions - short.miss_instructions) / n,
    )


def _or_na(value: float, spec: str) -> str:
    """``value`` formatted with ``spec`` (">+14,.0f"), or "n/a" as wide where it is NaN."""
    if math.isnan(value):
        return f"{'n/a':>{len(format(0.0, spec))}}"
    return format(value, spec)


def report(per: dict[str, list[Count]], bare_kind: str, layouts: int, each: bool) -> None:
    bare = per[bare_kind]
    header = f"  {'configuration':<25} {'instructions':>12} {'added':>10} {'ratio':>7}"
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
        line = f"  {kind:<25} {mean:>12,.0f} {statistics.fmean(added):>+10,.0f}"
        line += f" {mean / mean_bare:>7.4f}"
        if layouts > 1:
            se = statistics.stdev(added) / len(added) ** 0.5
            ratios = [v.instructions / b.instructions for v, b in zip(values, bare, strict=True)]
            line += f" {2 * se / mean_bare:>7.4f}   {min(ratios):.4f} to {max(ratios):.4f}"
        misses = statistics.fmean(v.misses for v in values)
        line += f"   {_or_na(misses, '>6.1f')}   {_or_na(statistics.fmean(own), '>+14,.0f')}"
        line += f" {_or_na(1 + statistics.fmean(own) / mean_bare_own, '>7.4f')}"
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


def report_on_top(per: dict[str, list[Count]], layouts: int) -> None:
    """poolscope on top of contrib: each "contrib + poolscope" row over its contrib row, and
    the SDK row over its control (harness.SDK_CONTROL), as the mean over layouts of the added
    instructions over the base row's mean (as in report)."""
    rows = [("poolscope on top of contrib", k, b) for k, b in harness.ON_TOP_OF_CONTRIB.items()]
    rows += [("poolscope over its control", k, b) for k, b in harness.SDK_CONTROL.items()]
    for title, kind, base in rows:
        if kind not in per or base not in per:
            continue
        pairs = list(zip(per[kind], per[base], strict=True))
        added = [v.instructions - b.instructions for v, b in pairs]
        own = [
            (v.instructions - v.miss_instructions) - (b.instructions - b.miss_instructions)
            for v, b in pairs
        ]
        mean_base = statistics.fmean(b.instructions for _, b in pairs)
        mean_base_own = statistics.fmean(b.instructions - b.miss_instructions for _, b in pairs)
        line = f"  {title} ({kind} / {base}): {1 + statistics.fmean(added) / mean_base:.4f}"
        if layouts > 1:
            se = statistics.stdev(added) / len(added) ** 0.5
            line += f" ± {2 * se / mean_base:.4f} (2 SE)"
        line += f", {statistics.fmean(added):+,.0f} instructions"
        mean_own = statistics.fmean(own)
        if not math.isnan(mean_own):
            line += f"; without misses {1 + mean_own / mean_base_own:.4f} ({mean_own:+,.0f})"
        print(line)


def cache_report(
    results: dict[tuple[str, int, int], dict[str, float]],
    kinds: list[str],
    layouts: range,
    long: int,
    short: int,
) -> None:
    """Per request (long minus short run), the mean over layouts of cachegrind's events."""
    per: dict[str, dict[str, float]] = {}
    for kind in kinds:
        rows = [
            {
                event: (results[kind, layout, long][event] - results[kind, layout, short][event])
                / (long - short)
                for event in results[kind, layout, long]
            }
            for layout in layouts
        ]
        per[kind] = {event: statistics.fmean(r[event] for r in rows) for event in rows[0]}
    bare = per[kinds[0]]
    print(
        f"  {'configuration':<25} {'instructions':>12} {'ratio':>7} {'L1 misses':>10}"
        f" {'LL misses':>10} {'mispredicts':>11} {'est. cycles':>12} {'ratio':>7}"
    )
    for kind, e in per.items():
        l1 = e["I1mr"] + e["D1mr"] + e["D1mw"]
        ll = e["ILmr"] + e["DLmr"] + e["DLmw"]
        print(
            f"  {kind:<25} {e['Ir']:>12,.0f} {e['Ir'] / bare['Ir']:>7.4f} {l1:>10,.0f}"
            f" {ll:>10,.1f} {e['Bcm'] + e['Bim']:>11,.0f} {cycles(e):>12,.0f}"
            f" {cycles(e) / cycles(bare):>7.4f}"
        )
    print(
        "  per request, mean over layouts; L1: first-level instruction and data misses; LL: "
        "last-level; est. cycles: Ir + 10 x (L1 misses + mispredicts) + 100 x LL misses"
    )


if __name__ == "__main__":
    main()
