"""Many threads, several hosts, small pools: every connection accounted for.

Used by tests/test_concurrent_load.py (a short run in the suite) and scripts/soak (the long one).
"""

from __future__ import annotations

import gc
import random
import threading
from typing import Any

import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.config import get_recorder
from poolscope.loopback import LoopbackServer


def run_load(
    threads: int,
    per_thread: int,
    meter_provider: Any,
    closes: bool,
    tracer_provider: Any = None,
    count_midway: bool = False,
) -> dict[str, Any]:
    """Run the load and return what the invariants need; raises AssertionError on a breach.

    With an SDK meter provider the pools count reuses and idle connections from the start;
    with no-op providers (no SDK) they do not, unless ``count_midway``: then the recorder
    starts counting while the load runs, as a metrics reader's first collection makes it,
    once a quarter of the requests are done (by count, not by time: on a busy machine the
    first 50 ms may have opened connections and reused none)."""
    hosts = [f"127.0.0.{i}" for i in range(1, 5)]
    servers = [LoopbackServer(h).start() for h in hosts]
    path = "/maybe-close" if closes else "/"
    try:
        s = requests.Session()
        s.mount("http://", HTTPAdapter(pool_connections=3, pool_maxsize=4))
        poolscope.instrument_session(
            s, meter_provider=meter_provider, tracer_provider=tracer_provider
        )
        recorder = get_recorder("otel", meter_provider, tracer_provider)
        errors: list[BaseException] = []
        negative: list[str] = []
        stop = threading.Event()
        quarter_done = threading.Event()
        done = [0]
        done_lock = threading.Lock()

        def watch() -> None:  # no counter is ever negative, sampled while the load runs
            if count_midway:
                quarter_done.wait(60)
                recorder.counting_switch.turn_on()
            while not stop.is_set():
                for st in recorder.all_stats():
                    for field in ("open", "idle", "waiting", "created", "closed"):
                        if getattr(st, field) < 0:
                            negative.append(f"{st.key.origin} {field}={getattr(st, field)}")
                    if st.open - st.idle < 0:
                        negative.append(f"{st.key.origin} active={st.open - st.idle}")
                stop.wait(0.01)

        def worker(seed: int) -> None:
            rnd = random.Random(seed)
            try:
                for _ in range(per_thread):
                    s.get(servers[rnd.randrange(len(servers))].url + path, timeout=30)
                    with done_lock:
                        done[0] += 1
                        if done[0] * 4 >= threads * per_thread:
                            quarter_done.set()
            except BaseException as exc:
                errors.append(exc)

        watcher = threading.Thread(target=watch)
        watcher.start()
        pool = [threading.Thread(target=worker, args=(i,)) for i in range(threads)]
        for t in pool:
            t.start()
        for t in pool:
            t.join()
        stop.set()
        watcher.join()
        assert not errors, errors[:3]
        assert not negative, negative[:5]
        mine = [st for st in recorder.all_stats() if st.key.host in hosts]
        during = {st.key.origin: (st.created, st.closed, st.open, st.idle) for st in mine}
        for st in mine:
            assert st.created - st.closed == st.open, (st.key, st.created, st.closed, st.open)
            assert 0 <= st.idle <= st.open
            assert st.reused + st.created >= 1
        requests_served = sum(st.created + st.reused for st in mine)
        accepted = sum(srv.connections for srv in servers)
        s.close()
        gc.collect()
        for st in mine:
            assert st.open == 0 and st.idle == 0, (st.key, st.open, st.idle)
            assert st.created == st.closed
        return {
            "requests": threads * per_thread,
            "served": requests_served,
            "reused": sum(st.reused for st in mine),
            "created": sum(st.created for st in mine),
            "accepted": accepted,
            "during": during,
        }
    finally:
        for srv in servers:
            srv.stop()
