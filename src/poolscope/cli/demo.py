"""``poolscope demo``: the connection-pool questions users ask, replayed on loopback.

Each scenario runs real requests against :class:`LoopbackServer` instances on 127.0.0.x,
prints poolscope's log lines as they happen, then the counts and what the server saw.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import Counter
from collections.abc import Callable
from typing import Any, TextIO

import requests
from requests.adapters import HTTPAdapter

from ..loopback import LoopbackServer
from ..reporting.report import build_report
from ..session import instrument_session


class _Printer(logging.Handler):
    def __init__(self, out: TextIO) -> None:
        super().__init__(logging.DEBUG)
        self.out = out
        self.counts: Counter[str] = Counter()

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "poolscope_event", None)
        if event is None:
            return
        self.counts[event] += 1
        if event == "connection_closed":
            return  # every scenario ends by closing its connections: not worth a line
        print(f"    {record.levelname:<7} {record.getMessage()}", file=self.out)


# Every scenario's requests have a timeout, as every request should, but the one without.
TIMEOUT = (3.05, 10)


class _TimedSession(requests.Session):
    """A Session whose requests have ``TIMEOUT`` unless they say otherwise."""

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> Any:
        kwargs.setdefault("timeout", TIMEOUT)
        return super().request(method, url, *args, **kwargs)


def _session(**adapter_kw: Any) -> requests.Session:
    s = _TimedSession()
    if adapter_kw:
        s.mount("http://", HTTPAdapter(**adapter_kw))
    return instrument_session(s, mode="logging", report=True)


def _together(session: requests.Session, url: str) -> None:
    threads = [threading.Thread(target=session.get, args=(url,)) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)


def _throwaway_sessions(a: LoopbackServer, b: LoopbackServer) -> None:
    for _ in range(5):
        with _session() as s:  # what requests.get() does on every call
            s.get(a.url)


def _one_session(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session()
    for _ in range(3):
        s.get(a.url)


def _pool_connections_1(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session(pool_connections=1)
    for server in (a, b, a):
        s.get(server.url)


def _pool_connections_2(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session(pool_connections=2)
    for server in (a, b, a):
        s.get(server.url)


def _pool_maxsize_2(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session(pool_connections=1, pool_maxsize=2)
    _together(s, a.url + "/together")
    _together(s, a.url + "/together")


def _pool_maxsize_1(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session(pool_connections=1, pool_maxsize=1)
    _together(s, a.url + "/together")
    _together(s, a.url + "/together")


def _stale(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session()
    s.get(b.url)
    time.sleep(0.5)  # longer than the server's 0.2 s keep-alive timeout
    s.get(b.url)


def _pool_block(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session(pool_maxsize=1, pool_block=True)
    first = threading.Thread(target=s.get, args=(a.url + "/hold",))  # answered on release()
    second = threading.Thread(target=s.get, args=(a.url,))
    first.start()
    time.sleep(0.2)
    second.start()
    time.sleep(0.3)
    a.release()
    first.join(15)
    second.join(15)


def _no_timeout(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session()
    for path in ("/", "/slow", "/", "/slow"):
        s.get(a.url + path, timeout=None)  # requests' default: wait forever


def _read_timeout(a: LoopbackServer, b: LoopbackServer) -> None:
    s = _session()
    for path in ("/", "/", "/", "/slow"):
        try:
            s.get(a.url + path, timeout=(3.05, 0.05))
        except requests.ReadTimeout:
            pass


SCENARIOS: list[tuple[str, str, Callable[[LoopbackServer, LoopbackServer], None], bool]] = [
    (
        "requests.get() five times",
        "each call builds and closes a throwaway Session: a new connection every time",
        _throwaway_sessions,
        False,
    ),
    (
        "one Session, three gets",
        "s = requests.Session(); s.get(A) x3: one connection, reused",
        _one_session,
        False,
    ),
    (
        "pool_connections=1, hosts A B A",
        "s.mount('http://', HTTPAdapter(pool_connections=1)): each new host evicts the last pool",
        _pool_connections_1,
        False,
    ),
    (
        "pool_connections=2, hosts A B A",
        "HTTPAdapter(pool_connections=2): both pools stay, A's connection is reused",
        _pool_connections_2,
        False,
    ),
    (
        "pool_maxsize=2, two threads, twice",
        "HTTPAdapter(pool_connections=1, pool_maxsize=2): both connections are kept and reused",
        _pool_maxsize_2,
        True,
    ),
    (
        "pool_maxsize=1, two threads, twice",
        "HTTPAdapter(pool_connections=1, pool_maxsize=1): 'Connection pool is full, discarding'",
        _pool_maxsize_1,
        True,
    ),
    (
        "idle longer than the server's keep-alive",
        "the server (B, keep-alive 0.2 s) closes the idle connection; the next request finds it",
        _stale,
        False,
    ),
    (
        "pool_block=True, pool_maxsize=1, two threads",
        "the second thread waits for the first one's connection (requests sets no pool_timeout)",
        _pool_block,
        False,
    ),
    (
        "no timeout",
        "s.get(A) and s.get(A + '/slow') (0.1 s) with requests' default timeout: none at all",
        _no_timeout,
        False,
    ),
    (
        "a server that stalls on one request in four",
        "s.get(A) three times, then s.get(A + '/slow') (0.1 s), each with timeout=(3.05, 0.05): "
        "the fast answers come well within the timeout, the slow one raises ReadTimeout",
        _read_timeout,
        False,
    ),
]

_SHOWN = (
    ("connection_created", "created"),
    ("connection_reused", "reused"),
    ("connection_dropped", "dropped"),
    ("connection_discarded", "discarded"),
    ("pool_evicted", "evictions"),
    ("wait_ended", "waits"),
)


def _print_advice(out: TextIO, *servers: LoopbackServer) -> None:
    """The report's advice for this scenario's servers only."""
    gc.collect()  # let evicted and closed pools finish closing their connections
    # By origin, host and port: A and B listen on two hosts, so an earlier scenario's A may
    # have had the port this one's B has (a port alone once showed an earlier advice again).
    # Advice on several pools (evictions) names their origins separated by commas.
    origins = {f"http://{server.host}:{server.port}" for server in servers}
    advice = [a for a in build_report().advice if origins & set(a.origin.split(", "))]
    if not advice:
        print("  report: no problems found\n", file=out)
        return
    for a in advice:
        print(f"  report: {a.evidence}\n          -> {a.change}", file=out)
    print(file=out)


def _server(
    used: set[tuple[str, int]], host: str, *, together: int = 1, keepalive: float | None = None
) -> LoopbackServer:
    """A started server on a port no earlier scenario had: the report keys pools by host and
    port, so a port drawn again would merge two scenarios' pools into one."""
    drawn_again = []
    try:
        while True:
            server = LoopbackServer(host, together=together, keepalive=keepalive).start()
            if (host, server.port) not in used:
                used.add((host, server.port))
                return server
            drawn_again.append(server)
    finally:
        for server in drawn_again:
            server.stop()


def run_demo(out: TextIO) -> int:
    """Replay every scenario, printing what poolscope saw; returns a process exit code."""
    logger = logging.getLogger("poolscope.pool")
    printer = _Printer(out)
    logger.addHandler(printer)
    old_level, old_propagate = logger.level, logger.propagate
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    print("poolscope demo: common connection-pool scenarios on loopback servers", file=out)
    print("A = http://127.0.0.1, B = http://127.0.0.2 (keep-alive 0.2 s)\n", file=out)
    used: set[tuple[str, int]] = set()
    try:
        for number, (title, what, scenario, together) in enumerate(SCENARIOS, 1):
            printer.counts.clear()
            a = _server(used, "127.0.0.1", together=2 if together else 1)
            b = _server(used, "127.0.0.2", keepalive=0.2)
            try:
                print(f"[{number}/{len(SCENARIOS)}] {title}", file=out)
                print(f"    {what}", file=out)
                scenario(a, b)
                seen = a.connections + b.connections
            finally:
                a.stop()
                b.stop()
            counts = ", ".join(f"{printer.counts[key]} {label}" for key, label in _SHOWN)
            print(f"  => {counts}; the servers accepted {seen} connection(s)", file=out)
            _print_advice(out, a, b)
    finally:
        logger.removeHandler(printer)
        logger.setLevel(old_level)
        logger.propagate = old_propagate
    return 0
