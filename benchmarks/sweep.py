"""One program that talks to many hosts once each, for the hosts axis (hosts.py) and its tests.

    python benchmarks/sweep.py --port PORT --mode report --hosts 20000 [--tracemalloc]

One ``requests.Session`` with requests' defaults (``pool_connections=10``, so nearly every pool
is evicted) makes one request to each of ``--hosts`` distinct hosts, ``h1.hosts.test`` ...,
which this process resolves to 127.0.0.1, where hosts_server.py listens on ``--port``: distinct
(scheme, host, port) pools on real loopback connections, with one listening socket. ``--mode``:
``bare``, ``metrics`` (an OpenTelemetry SDK MeterProvider whose in-memory reader collects, as an
exporter would, every ``--collect-seconds`` of the sweep or every ``--collect-every`` hosts,
whichever comes first) or ``report`` (``report=True``; ``--html``
writes its page). ``--bytecodes N`` counts the bytecodes (``sys.settrace``'s opcode
events, Python 3.11) the last N hosts' requests execute, per request: a deterministic measure
of the same sweep, where wall time moves from run to run (N a multiple of 250, a fold's period
at the default limit). With
``--crowded K``, every K-th host is also asked by three threads at once through a second
session whose pool keeps one connection, so that some connections are discarded (counted, as
urllib3 warns of each, in ``warned_full``). It prints one
JSON object: microseconds per request, memory (with ``--tracemalloc``, Python's traced memory
after ``--checkpoint`` hosts and at the end, both after a full collection), the last collection
or the report's build time, and the totals the metrics or the report give over every host.
"""

from __future__ import annotations

import argparse
import gc
import json
import logging
import resource
import socket
import sys
import threading
import time
import tracemalloc
from typing import Any

_getaddrinfo = socket.getaddrinfo


def _resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
    if isinstance(host, str) and host.endswith(".hosts.test"):
        host = "127.0.0.1"
    return _getaddrinfo(host, *args, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--mode", choices=("bare", "metrics", "report"), required=True)
    parser.add_argument("--hosts", type=int, required=True)
    parser.add_argument("--checkpoint", type=int, default=0)
    parser.add_argument("--collect-every", type=int, default=1000, help="hosts; 0: never")
    parser.add_argument("--collect-seconds", type=float, default=0, help="0: never")
    parser.add_argument("--tracemalloc", action="store_true")
    parser.add_argument("--crowded", type=int, default=0)
    parser.add_argument("--html", help="report mode: write the report's page there")
    parser.add_argument("--bytecodes", type=int, default=0, metavar="N")
    args = parser.parse_args()
    socket.getaddrinfo = _resolve  # type: ignore[assignment]

    import requests

    import poolscope

    session, small = requests.Session(), requests.Session()
    small.mount("http://", requests.adapters.HTTPAdapter(pool_maxsize=1))
    warned = _FullPoolWarnings()
    logging.getLogger("urllib3.connectionpool").addHandler(warned)
    reader = None
    if args.mode == "metrics":
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader

        reader = InMemoryMetricReader()
        provider = MeterProvider([reader])
        for one in (session, small):
            poolscope.instrument_session(one, meter_provider=provider)
    elif args.mode == "report":
        for one in (session, small):
            poolscope.instrument_session(one, report=True)
    out: dict[str, Any] = {"mode": args.mode, "hosts": args.hosts}
    if args.tracemalloc:
        tracemalloc.start()
    rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    started, cpu = time.perf_counter(), time.process_time()
    counted = [0]
    every = args.collect_every or args.hosts + 1
    interval = args.collect_seconds or float("inf")
    collected, collections = started, 0
    for i in range(1, args.hosts + 1):
        url = f"http://h{i}.hosts.test:{args.port}/"
        if i > args.hosts - args.bytecodes:
            _traced(session, url, counted)
        else:
            session.get(url).close()
        if args.crowded and i % args.crowded == 0:
            _at_once(small, url, 3)
        if reader is not None and (i % every == 0 or time.perf_counter() - collected >= interval):
            reader.get_metrics_data()
            collected, collections = time.perf_counter(), collections + 1
        if i == args.checkpoint and args.tracemalloc:
            gc.collect()
            out["traced_at_checkpoint"] = tracemalloc.get_traced_memory()[0]
    out["us_per_request"] = (time.perf_counter() - started) / args.hosts * 1e6
    if args.bytecodes:
        out["bytecodes_per_request"] = counted[0] / args.bytecodes
    out["cpu_us_per_request"] = (time.process_time() - cpu) / args.hosts * 1e6
    gc.collect()
    if args.tracemalloc:
        out["traced_at_end"] = tracemalloc.get_traced_memory()[0]
    out["rss_growth_kb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before
    out["warned_full"] = warned.count
    if reader is not None:
        out["collections"] = collections  # during the sweep, this last one aside
        took = time.perf_counter()
        data = reader.get_metrics_data()
        out["collect_s"] = time.perf_counter() - took
        out["totals"], out["points"], out["other_hosts_series"] = _metric_totals(data)
    if args.mode == "report":
        took = time.perf_counter()
        report = poolscope.report()
        text = report.render_text()
        out["report_s"] = time.perf_counter() - took
        if args.html:
            with open(args.html, "w") as page:
                page.write(report.render_html())
        out["report_lines"] = len(text.splitlines())
        out["report_rows"] = len(report.pools)
        other = report.other_hosts
        out["totals"] = {
            name: sum(getattr(p, name) for p in report.pools)
            + (getattr(other, name) if other else 0)
            for name in ("requests", "created", "discarded")
        }
        out["folded_hosts"] = other.hosts if other else 0
    print(json.dumps(out))


class _FullPoolWarnings(logging.Handler):
    """Counts urllib3's "Connection pool is full, discarding connection" warnings."""

    def __init__(self) -> None:
        super().__init__()
        self.count = 0

    def emit(self, record: logging.LogRecord) -> None:
        if record.getMessage().startswith("Connection pool is full"):
            self.count += 1


def _traced(session: Any, url: str, counted: list[int]) -> None:
    """One request, its bytecodes added to ``counted[0]``."""

    def local(frame: Any, event: str, arg: Any) -> Any:
        if event == "opcode":
            counted[0] += 1
        return local

    def tracer(frame: Any, event: str, arg: Any) -> Any:
        frame.f_trace_opcodes = True
        frame.f_trace_lines = False
        return local

    sys.settrace(tracer)
    try:
        session.get(url).close()
    finally:
        sys.settrace(None)


def _at_once(session: Any, url: str, threads: int) -> None:
    barrier = threading.Barrier(threads)

    def one() -> None:
        barrier.wait()
        session.get(url).close()

    workers = [threading.Thread(target=one) for _ in range(threads)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join()


def _metric_totals(data: Any) -> tuple[dict[str, int], int, int]:
    """Each counter summed over its series, the points in all, and the other-hosts series."""
    names = {
        "urllib3.pool.connections.created": "created",
        "urllib3.pool.connections.reused": "reused",
        "urllib3.pool.connections.discarded": "discarded",
    }
    totals = {name: 0 for name in names.values()}
    points = other = 0
    for resource_metrics in data.resource_metrics:
        for scope in resource_metrics.scope_metrics:
            for metric in scope.metrics:
                for point in metric.data.data_points:
                    points += 1
                    if point.attributes.get("poolscope.other_hosts"):
                        other += 1
                    if metric.name in names:
                        totals[names[metric.name]] += point.value
    totals["requests"] = totals["created"] + totals["reused"]
    return totals, points, other


if __name__ == "__main__":
    main()
