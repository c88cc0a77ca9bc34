"""poolscope's own cost for a new host, without the network: hosts.py's measure, less its noise.

    python benchmarks/lifecycle.py                  # 20,000 hosts a run, five rounds
    python benchmarks/lifecycle.py --smoke          # 500 hosts, one round: CI runs this
    python benchmarks/lifecycle.py --hosts 50000 --rounds 7
    python benchmarks/lifecycle.py --phases         # where in a host's life the time goes
    python benchmarks/lifecycle.py --blocks 250 --hosts 4000   # the first hosts against the later

A new host in a sweep (hosts.py) costs poolscope a pool, a connection, its connect, its return
to the pool, the pool's eviction and the connection's close. Here each host runs exactly that
through one ``requests.Session``'s PoolManager (requests' defaults), with each connection
connected over a ``socket.socketpair()`` (no server, no handshake, no HTTP): a few microseconds
of system calls where a loopback request spends hundreds, so poolscope's share is most of what
differs (runs of the same code still differ by a few microseconds a host). Each mode runs in a
fresh process, interleaved (bare, metrics, report, bare, ...), after 2,000 hosts of warm-up
(past the folding threshold); it prints the median CPU microseconds a host and their
difference to bare's. With ``--phases`` it times each step of a host instead (wall time, a
clock read around each): making its pool, the rest of asking the manager for it (the oldest
pool's eviction and the close of its connection), the checkout, the connect and the return.
With ``--blocks N`` it runs no warm-up and times the hosts from the first in blocks of N (CPU
microseconds a host, the median of the rounds for each block): what the first hosts cost
against the later ones (the first ``POOLSCOPE_MAX_HOSTS`` keep counts and series of their own;
folding starts after them), and whether a host costs more as more were seen.
Nothing here asserts: it measures.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from typing import Any

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

MODES = ("bare", "metrics", "report")
WARM_UP = 2_000
PHASES = ("new pool", "key+evict", "checkout", "connect", "return")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true")
    parser.add_argument("--hosts", type=int, default=20_000)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--phases", action="store_true", help="time each step of a host")
    parser.add_argument("--blocks", type=int, default=0, metavar="N", help="time blocks of N hosts")
    parser.add_argument("--child", choices=MODES, help=argparse.SUPPRESS)
    args = parser.parse_args()
    hosts, rounds = (500, 1) if args.smoke else (args.hosts, args.rounds)
    if args.child:
        print(json.dumps(_run(args.child, hosts, args.phases, args.blocks)))
        return
    import harness

    print(harness.describe_machine())
    runs: dict[str, list[float]] = {mode: [] for mode in MODES}
    steps: dict[str, list[list[float]]] = {mode: [] for mode in MODES}
    for _ in range(rounds):
        for mode in MODES:
            child = [sys.executable, __file__, "--child", mode, "--hosts", str(hosts)]
            child += ["--phases"] if args.phases else []
            child += ["--blocks", str(args.blocks)] if args.blocks else []
            out = json.loads(
                subprocess.run(child, check=True, capture_output=True, text=True).stdout
            )
            if args.phases or args.blocks:
                steps[mode].append(out["phases_us"] if args.phases else out["blocks_us"])
            else:
                runs[mode].append(out["cpu_us_per_host"])
    if args.phases:
        _print_phases(hosts, rounds, steps)
        return
    if args.blocks:
        _print_blocks(args.blocks, rounds, steps)
        return
    bare = statistics.median(runs["bare"])
    print(f"\n{hosts:,} hosts a run, {rounds} round(s), median CPU microseconds a host")
    for mode in MODES:
        median = statistics.median(runs[mode])
        print(f"  {mode:<8} {median:7.2f} us  {median - bare:+7.2f} us  {median / bare:6.3f}x")


def _print_phases(hosts: int, rounds: int, steps: dict[str, list[list[float]]]) -> None:
    print(f"\n{hosts:,} hosts a run, {rounds} round(s), median wall microseconds a host")
    print(f"  {'mode':<8}" + "".join(f"{phase:>11}" for phase in (*PHASES, "all")))
    for mode in MODES:
        medians = [statistics.median(run[i] for run in steps[mode]) for i in range(len(PHASES))]
        print(f"  {mode:<8}" + "".join(f"{us:>11.2f}" for us in (*medians, sum(medians))))


def _print_blocks(size: int, rounds: int, blocks: dict[str, list[list[float]]]) -> None:
    print(f"\nblocks of {size:,} hosts from the first, {rounds} round(s), median CPU us a host")
    print(f"  {'hosts':>15}" + "".join(f"{mode:>10}" for mode in MODES))
    for i in range(len(blocks["bare"][0])):
        medians = [statistics.median(run[i] for run in blocks[mode]) for mode in MODES]
        span = f"{i * size + 1:,}-{(i + 1) * size:,}"
        print(f"  {span:>15}" + "".join(f"{us:>10.1f}" for us in medians))


def _run(mode: str, hosts: int, phases: bool = False, blocks: int = 0) -> dict[str, Any]:
    import requests
    import urllib3.connection

    session = requests.Session()
    if mode != "bare":
        import poolscope

        if mode == "metrics":
            from opentelemetry.sdk.metrics import MeterProvider
            from opentelemetry.sdk.metrics.export import InMemoryMetricReader

            poolscope.instrument_session(
                session, meter_provider=MeterProvider([InMemoryMetricReader()])
            )
        else:
            poolscope.instrument_session(session, report=True)
    peers: list[socket.socket] = []

    def socketpair_connection(*args: Any, **kwargs: Any) -> socket.socket:
        ours, theirs = socket.socketpair()
        peers.append(theirs)  # its other end, closed a few hosts later
        if len(peers) > 64:
            peers.pop(0).close()
        return ours

    urllib3.connection.connection.create_connection = socketpair_connection  # type: ignore[assignment]
    manager = session.get_adapter("http://example.test/").poolmanager

    def one_host(i: int) -> None:
        pool = manager.connection_from_host(f"h{i}.hosts.test", 80, "http")
        conn = pool._get_conn()
        conn.connect()
        pool._put_conn(conn)  # closed when a later host's pool evicts this one

    if blocks:
        return {"mode": mode, "blocks_us": _blocks(one_host, hosts, blocks)}
    for i in range(WARM_UP):
        one_host(i)
    if phases:
        return {"mode": mode, "phases_us": _phases(manager, hosts)}
    cpu = time.process_time()
    for i in range(WARM_UP, WARM_UP + hosts):
        one_host(i)
    return {"mode": mode, "cpu_us_per_host": (time.process_time() - cpu) / hosts * 1e6}


def _blocks(one_host: Any, hosts: int, size: int) -> list[float]:
    """CPU microseconds a host in each block of ``size`` hosts, from the first host on."""
    spent = []
    for start in range(0, hosts - size + 1, size):
        cpu = time.process_time()
        for i in range(start, start + size):
            one_host(i)
        spent.append((time.process_time() - cpu) / size * 1e6)
    return spent


def _phases(manager: Any, hosts: int) -> list[float]:
    """one_host()'s steps timed apart, microseconds a host (PHASES' order)."""
    now = time.perf_counter
    spent = [0.0] * len(PHASES)
    new_pool = manager._new_pool  # poolscope's hook in the instrumented modes

    def timed_new_pool(*args: Any, **kwargs: Any) -> Any:
        start = now()
        try:
            return new_pool(*args, **kwargs)
        finally:
            spent[0] += now() - start

    manager._new_pool = timed_new_pool
    for i in range(WARM_UP, WARM_UP + hosts):
        start = now()
        pool = manager.connection_from_host(f"h{i}.hosts.test", 80, "http")
        taken = now()
        conn = pool._get_conn()
        connecting = now()
        conn.connect()
        returning = now()
        pool._put_conn(conn)
        done = now()
        spent[1] += taken - start  # less the new pool's share, taken out below
        spent[2] += connecting - taken
        spent[3] += returning - connecting
        spent[4] += done - returning
    spent[1] -= spent[0]
    return [total / hosts * 1e6 for total in spent]


if __name__ == "__main__":
    main()
