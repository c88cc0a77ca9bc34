"""poolscope's overhead against the bare clients and the OpenTelemetry contrib instrumentations.

    python benchmarks/run.py            # the full run (a few minutes; see the README's table)
    python benchmarks/run.py --smoke    # a few hundred requests, no thresholds: CI runs this
    python benchmarks/run.py --memory   # only memory, over 1,000,000 requests (about 25 min)
    python benchmarks/run.py --threads 40   # only the 32-thread throughput, 40 rounds each
    python benchmarks/run.py --gap 200      # only wall clock against instructions (~10 min)
    python benchmarks/run.py --gap 200 --traced --client urllib3   # the same, traced path

It starts Debian's nginx on loopback with a config it writes (keep-alive on, one worker), runs
every configuration interleaved (A B C ... A B C ...) several rounds, and prints microseconds per
request (the median round) and the ratio to the bare client measured in the same run. Ratios,
never absolute times, are what the targets speak of. Nothing here asserts: it measures. Each
"contrib + poolscope" row is also printed over its contrib row ("poolscope on top of contrib").

Wall clock and CPU time are what other processes on the machine move: on a small shared machine
they are the noisy figures, and instructions.py's counts are the steady ones. ``--gap`` asks
whether a difference between the two is noise or a cost instructions do not see (see gap()).
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import gc
import math
import os
import random
import resource
import statistics
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable, Iterator
from typing import Any

import requests

import poolscope

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import harness


def per_request_us(call: Callable[[], Any], n: int) -> tuple[float, float]:
    """Wall-clock and this thread's CPU microseconds per request. The CPU figure leaves out
    nginx and the scheduler, so it shows the client's own cost with far less noise."""
    wall, cpu = time.perf_counter(), time.thread_time()
    harness.repeat(call, n)
    return (time.perf_counter() - wall) / n * 1e6, (time.thread_time() - cpu) / n * 1e6


def compare(
    title: str,
    kinds: list[str],
    make: Callable[[str, str], Callable[[], Any]],
    url: str,
    n: int,
    rounds: int,
) -> list[tuple[str, float, float]]:
    """Median µs/request per configuration, interleaved; contrib instrumentations are global,
    so each is switched on only around its own turn. Returns (kind, wall ratio, CPU ratio)."""
    calls = connected(kinds, lambda kind: make(kind, url))
    times: dict[str, list[tuple[float, float]]] = {kind: [] for kind in kinds}
    for _ in range(rounds):
        for kind in kinds:
            with turn(kind, calls[kind]):
                times[kind].append(per_request_us(calls[kind], n))
    medians = {
        kind: (statistics.median(w for w, _ in t), statistics.median(c for _, c in t))
        for kind, t in times.items()
    }
    bare_wall, bare_cpu = medians[kinds[0]]
    print(f"\n{title} ({n} requests x {rounds} rounds, interleaved; medians)")
    print(f"  {'configuration':<25} {'wall us':>8} {'ratio':>7} {'client CPU us':>14} {'ratio':>7}")
    rows = []
    for kind, (wall, cpu) in medians.items():
        wall_ratio, cpu_ratio = wall / bare_wall, cpu / bare_cpu
        print(f"  {kind:<25} {wall:>8.1f} {wall_ratio:>7.3f} {cpu:>14.1f} {cpu_ratio:>7.3f}")
        rows.append((kind, wall_ratio, cpu_ratio))
    for kind, base in harness.ON_TOP_OF_CONTRIB.items():
        if kind in times and base in times:
            # The two run one after the other in every round: the per-round ratio pairs them.
            wall_paired = paired([w for w, _ in times[kind]], [w for w, _ in times[base]])
            cpu_paired = paired([c for _, c in times[kind]], [c for _, c in times[base]])
            print(
                f"  poolscope on top of contrib ({kind} / {base}): wall "
                f"{medians[kind][0] / medians[base][0]:.3f}, client CPU "
                f"{medians[kind][1] / medians[base][1]:.3f} (medians); paired per round: "
                f"wall {wall_paired}, client CPU {cpu_paired}"
            )
    return rows


def connected(
    kinds: list[str], make: Callable[[str], Callable[[], Any]]
) -> dict[str, Callable[[], Any]]:
    """Each configuration built and its connection made (the benchmark is the reused-connection
    path), one after the other: a contrib configuration is built with its instrumentation on,
    and switched off before the next is built, until its turn."""
    calls = {}
    for kind in kinds:
        call = calls[kind] = make(kind)
        call()
        if isinstance(call, harness.ContribRequest):
            call.switch_off()
    return calls


@contextlib.contextmanager
def turn(kind: str, call: Callable[[], Any]) -> Iterator[None]:
    """Where one configuration's measured requests run: a contrib configuration with its
    instrumentation on (process-wide, so only now), logging mode with its handler."""
    if isinstance(call, harness.ContribRequest):
        call.switch_on()
        try:
            yield
        finally:
            call.switch_off()
    else:
        with harness.surroundings(kind):
            yield


def paired(values: list[float], against: list[float]) -> str:
    """The geometric mean of the per-round ratios values[i] / against[i], with its 95%
    interval: "1.012 (0.998-1.026)"."""
    logs = [math.log(v / a) for v, a in zip(values, against, strict=True)]
    mean = statistics.fmean(logs)
    half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
    return f"{math.exp(mean):.3f} ({math.exp(mean - half):.3f}-{math.exp(mean + half):.3f})"


def hot_path(url: str, n: int, repeats: int) -> None:
    """poolscope's own cost on the reused-connection path, without the network: one checkout
    and return of an open pooled connection (what every reused request does), best of
    ``repeats``; the difference to bare urllib3 is what poolscope adds to each request there."""
    import timeit

    best: dict[str, float] = {}
    for kind in harness.CHECKOUT_CONFIGURATIONS:
        cycle = harness.make_checkout(kind, url)
        best[kind] = min(timeit.repeat(cycle, number=n, repeat=repeats)) / n * 1e6
    print(f"\nreused-connection checkout and return, no I/O (best of {repeats} x {n})")
    for kind, us in best.items():
        print(f"  {kind:<22} {us:>6.2f} us   +{us - best['bare']:.2f} us")


def threaded(url: str, threads: int, per_thread: int, rounds: int) -> None:
    """Throughput of one Session shared by many threads, bare against poolscope with an SDK.

    Two bare sessions run as well as the instrumented one: the second bare against the first
    (an A/A comparison) shows how far two identical configurations land apart on this machine,
    which is the yardstick for the instrumented ratio. The order within a round rotates, so no
    configuration always runs first or last."""

    def session(instrumented: bool) -> requests.Session:
        s = requests.Session()
        s.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=threads))
        if instrumented:
            mp, (tp, _) = harness.sdk_providers()
            poolscope.instrument_session(s, meter_provider=mp, tracer_provider=tp)
        return s

    def throughput(s: requests.Session) -> tuple[float, float]:
        barrier = threading.Barrier(threads + 1)

        def worker() -> None:
            barrier.wait()
            for _ in range(per_thread):
                s.get(url)

        pool = [threading.Thread(target=worker) for _ in range(threads)]
        for t in pool:
            t.start()
        start, cpu = time.perf_counter(), time.process_time()
        barrier.wait()
        for t in pool:
            t.join()
        done = threads * per_thread
        return done / (time.perf_counter() - start), (time.process_time() - cpu) / done * 1e6

    sessions = {
        "bare": session(False),
        "bare again (A/A)": session(False),
        "poolscope, SDK": session(True),
    }
    for s in sessions.values():  # every thread's connection made before the first round
        throughput(s)
    kinds = list(sessions)
    results: dict[str, list[float]] = {k: [] for k in sessions}
    cpu: dict[str, list[float]] = {k: [] for k in sessions}
    for r in range(rounds):
        for kind in kinds[r % len(kinds) :] + kinds[: r % len(kinds)]:
            rps, us = throughput(sessions[kind])
            results[kind].append(rps)
            cpu[kind].append(us)
    print(f"\n{threads} threads, one Session ({threads * per_thread} requests x {rounds} rounds)")
    print(
        f"  {'configuration':<18} {'median':>15} {'ratio':>7} {'paired':>7} {'95% interval':>15}"
        f" {'process CPU':>14} {'ratio':>7}"
    )
    bare, bare_cpu = results["bare"], statistics.median(cpu["bare"])
    for kind, values in results.items():
        rps = statistics.median(values)
        # Per-round ratios to bare, summarised as a geometric mean with a 95% interval.
        logs = [math.log(v / b) for v, b in zip(values, bare, strict=True)]
        mean = statistics.fmean(logs)
        half = 1.96 * statistics.stdev(logs) / math.sqrt(len(logs)) if len(logs) > 1 else 0.0
        interval = f"{math.exp(mean - half):.3f}-{math.exp(mean + half):.3f}"
        us = statistics.median(cpu[kind])
        print(
            f"  {kind:<18} {rps:>9.0f} req/s {rps / statistics.median(bare):>7.3f}"
            f" {math.exp(mean):>7.3f} {interval:>15} {us:>11.1f} us {bare_cpu / us:>7.3f}"
        )
    print(
        "  (paired: geometric mean of the per-round ratios to bare, with its 95% interval;\n"
        "   CPU ratio: bare's process CPU per request / this one's)"
    )


GAP_KINDS = ["bare", "bare again (A/A)", "poolscope, no SDK", "poolscope, SDK"]


def gap(url: str, client: str, n: int, rounds: int, traced: bool = False) -> None:
    """Wall clock and CPU time against instructions: is a gap between them noise, or a cost that
    instruction counts do not see (cache misses, allocation, the garbage collector)?

    Each configuration runs twice per round, with the collector on and with ``gc.disable()``
    around its turn, and the round's turns run in a random order (seeded), so none is always
    first or always after the same one. A second bare client, built and measured like the
    first, is the yardstick (A/A): two identical configurations land that far apart here.
    Printed per configuration and collector state: median µs per request and its ratio to bare's
    median; the per-round ratio to bare with the collector in the same state (geometric mean and
    95% interval: the turns of one round ran within a second of each other, so this pairs away
    the slow drifts of a shared machine); the collector's runs per 1,000 requests by generation;
    and the thread's CPU split into user and system time (getrusage: Linux splits a thread's
    exact CPU time in the proportion its timer ticks found, so the split is sampled).

    ``traced``: the traced path instead of poolscope's own rows, the contrib configuration and
    contrib + poolscope (each with its instrumentation switched on around its own turn), and
    poolscope on top of contrib paired the same way."""
    order = random.Random(0)
    kinds = GAP_KINDS
    if traced:
        contrib = f"otel-{client}"
        kinds = [*GAP_KINDS[:2], contrib, f"{contrib} + poolscope"]
    calls = connected(
        kinds, lambda kind: harness.make(client, "bare" if kind.startswith("bare") else kind, url)
    )
    turns = [(kind, collector) for kind in kinds for collector in ("on", "off")]
    times: dict[tuple[str, str], list[tuple[float, float, float]]] = {t: [] for t in turns}
    collections: dict[tuple[str, str], list[int]] = {t: [0, 0, 0] for t in turns}
    counting: list[int] = [0, 0, 0]

    def count_collections(phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            counting[info["generation"]] += 1

    gc.collect()
    gc.callbacks.append(count_collections)
    try:
        for _ in range(rounds):
            for each in order.sample(turns, len(turns)):
                kind, collector = each
                with turn(kind, calls[kind]):
                    if collector == "off":
                        gc.disable()
                    counting[:] = [0, 0, 0]  # the measured requests' collections only
                    try:
                        times[each].append(per_request_split(calls[kind], n))
                        # Read before the collector is back on: garbage left while it was
                        # off is collected at the next allocation, after this turn.
                        runs = counting.copy()
                    finally:
                        gc.enable()
                    for generation in range(3):
                        collections[each][generation] += runs[generation]
    finally:
        gc.callbacks.remove(count_collections)
    print(
        f"\ngap: {client}, keep-alive ({n} requests x {rounds} rounds; each round's "
        f"{len(turns)} turns in random order)"
    )
    print(
        f"  {'configuration':<25} {'gc':>3} {'wall us':>8} {'ratio':>6} {'paired (95%)':>20}"
        f" {'CPU us':>7} {'ratio':>6} {'paired (95%)':>20} {'gc runs/1k req':>15}"
    )
    for kind, collector in turns:
        wall, cpu = ([t[i] for t in times[kind, collector]] for i in (0, 1))
        bare_wall, bare_cpu = ([t[i] for t in times["bare", collector]] for i in (0, 1))
        runs = "/".join(f"{r * 1000 / (n * rounds):.1f}" for r in collections[kind, collector])
        print(
            f"  {kind:<25} {collector:>3} {statistics.median(wall):>8.1f}"
            f" {statistics.median(wall) / statistics.median(bare_wall):>6.3f}"
            f" {paired(wall, bare_wall):>20} {statistics.median(cpu):>7.1f}"
            f" {statistics.median(cpu) / statistics.median(bare_cpu):>6.3f}"
            f" {paired(cpu, bare_cpu):>20} {runs:>15}"
        )
    print(f"\n  {'the CPU time split':<29} {'user us':>8} {'paired (95%)':>20} {'system us':>10}")
    for kind, collector in turns:
        user = [t[2] for t in times[kind, collector]]
        system = [t[1] - t[2] for t in times[kind, collector]]
        bare_user = [t[2] for t in times["bare", collector]]
        print(
            f"  {kind:<25} {collector:>3} {statistics.fmean(user):>8.1f}"
            f" {paired(user, bare_user):>20} {statistics.fmean(system):>10.1f}"
        )
    print(
        "  ratio: of medians, to bare with the collector in the same state; paired: geometric\n"
        "  mean of the per-round ratios, 95% interval; CPU: this thread's (user and system);\n"
        "  gc runs: collections of generations 0/1/2 per 1,000 requests; user and system: means"
    )
    for kind, base in harness.ON_TOP_OF_CONTRIB.items():
        if kind not in kinds:
            continue
        for collector in ("on", "off"):
            wall, cpu = ([t[i] for t in times[kind, collector]] for i in (0, 1))
            base_wall, base_cpu = ([t[i] for t in times[base, collector]] for i in (0, 1))
            print(
                f"  poolscope on top of contrib, gc {collector}: wall {paired(wall, base_wall)},"
                f" CPU {paired(cpu, base_cpu)} (paired per round)"
            )


def per_request_split(call: Callable[[], Any], n: int) -> tuple[float, float, float]:
    """Wall clock, this thread's CPU time and the user-mode part of it, µs per request."""
    wall, cpu, user = time.perf_counter(), time.thread_time(), _thread_user_time()
    harness.repeat(call, n)
    return (
        (time.perf_counter() - wall) / n * 1e6,
        (time.thread_time() - cpu) / n * 1e6,
        (_thread_user_time() - user) / n * 1e6,
    )


def _thread_user_time() -> float:
    return resource.getrusage(resource.RUSAGE_THREAD).ru_utime


MEMORY_KINDS = ["bare", "poolscope, no SDK", "poolscope, SDK"]


def memory(url: str, total: int, only: list[str] | None = None) -> None:
    """Memory over many requests, each configuration in a fresh process of its own.

    Flat means no per-request growth. Three cheap process-wide counters are read after a
    1,000-request warm-up and after every tenth of the run (no tracemalloc, which would make a
    million requests take an hour): the interpreter's allocated memory blocks, objects tracked
    by the garbage collector, and the resident set size."""
    print(f"\nmemory over {total:,} requests, each configuration in its own process")
    print("  growth from the first tenth to the end; in brackets, from the end of the warm-up")
    print("  (that span also fills bounded buffers, such as the idle-time samples)")
    print(f"  {'configuration':<22} {'blocks':>15} {'gc objects':>13} {'RSS KiB':>15} {'B/req':>7}")
    for kind in MEMORY_KINDS:
        if only and kind not in only:
            continue
        cmd = [sys.executable, os.path.abspath(__file__), "--memory-child", kind, str(total), url]
        out = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if out.returncode != 0:
            raise SystemExit(f"memory run for {kind!r} failed:\n{out.stderr[-2000:]}")
        rows = [tuple(int(v) for v in line.split()) for line in out.stdout.split("\n") if line]
        *checkpoints, (alive,) = rows
        start, tenth, last = checkpoints[0], checkpoints[1], checkpoints[-1]
        blocks, objects, rss = (
            f"{last[i] - tenth[i]:+,} ({last[i] - start[i]:+,})" for i in (1, 2, 3)
        )
        per = (last[3] - tenth[3]) * 1024 / max(last[0] - tenth[0], 1)
        print(f"  {kind:<22} {blocks:>15} {objects:>13} {rss:>15} {per:>7.3f}")
        print(f"  {'':<22} after Session.close(): {alive} of session, manager, pool alive")


def memory_child(kind: str, total: int, url: str) -> None:
    """Run in the measured process: print one line per checkpoint, then the alive count."""
    session = requests.Session()
    call: Callable[[], Any] = functools.partial(session.get, url)
    if kind == "poolscope, no SDK":
        poolscope.instrument_session(session)
    elif kind == "poolscope, SDK":
        mp, (tp, exporter) = harness.sdk_providers()
        poolscope.instrument_session(session, meter_provider=mp, tracer_provider=tp)
        call = harness.clearing(call, exporter)
    for _ in range(1000):
        call()
    step = max(total // 10, 1)
    for done in range(0, total + 1, step):
        if done:
            for _ in range(step):
                call()
        gc.collect()
        with open("/proc/self/statm") as statm:
            rss = int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") // 1024
        print(done, sys.getallocatedblocks(), len(gc.get_objects()), rss, flush=True)
    refs = _close_and_watch(session, url)
    del session, call
    gc.collect()
    print(sum(ref() is not None for ref in refs))


def _close_and_watch(session: requests.Session, url: str) -> list[weakref.ref[Any]]:
    adapter = session.get_adapter(url)
    pool = adapter.poolmanager.connection_from_url(url)
    refs: list[weakref.ref[Any]] = [
        weakref.ref(session),
        weakref.ref(adapter.poolmanager),
        weakref.ref(pool),
    ]
    session.close()
    return refs


def main() -> None:
    parser = harness.parser(__doc__)
    parser.add_argument("--smoke", action="store_true", help="a few hundred requests, for CI")
    parser.add_argument(
        "--memory", action="store_true", help="only the memory figures, over 1,000,000 requests"
    )
    parser.add_argument(
        "--threads", type=int, metavar="ROUNDS", help="only the 32-thread figure, this many rounds"
    )
    parser.add_argument(
        "--gap",
        type=int,
        metavar="ROUNDS",
        help="only wall clock against instructions (A/A, gc on and off), this many rounds",
    )
    parser.add_argument(
        "--traced", action="store_true", help="with --gap: the contrib and contrib + poolscope rows"
    )
    harness.add_client_option(parser)
    parser.add_argument(
        "--only",
        action="append",
        choices=MEMORY_KINDS,
        metavar="CONFIGURATION",
        help="with --memory: only this configuration (repeatable)",
    )
    parser.add_argument("--memory-child", nargs=3, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.memory_child:
        kind, total, url = args.memory_child
        memory_child(kind, int(total), url)
        return
    harness.exit_on_sigterm()
    n, rounds = (50, 2) if args.smoke else (500, 21)
    print(harness.describe_machine())
    with harness.nginx() as url:
        if args.memory:
            memory(url, 1_000_000, args.only)
            return
        if args.threads:
            threaded(url, 32, 150, args.threads)
            return
        if args.gap:
            for client in [args.client] if args.client else ["urllib3", "requests"]:
                gap(url, client, n, args.gap, args.traced)
            return
        if args.client in (None, "requests"):
            compare(
                "requests, one Session, keep-alive",
                harness.CONFIGURATIONS["requests"],
                harness.make_requests,
                url,
                n,
                rounds,
            )
        if args.client in (None, "urllib3"):
            compare(
                "urllib3, one PoolManager, keep-alive",
                harness.CONFIGURATIONS["urllib3"],
                harness.make_urllib3,
                url,
                n,
                rounds,
            )
        hot_path(url, 2000 if args.smoke else 50_000, 3 if args.smoke else 9)
        threaded(url, 32, 10 if args.smoke else 150, 2 if args.smoke else 6)
        memory(url, 2000 if args.smoke else 20_000)


if __name__ == "__main__":
    main()
