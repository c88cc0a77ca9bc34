"""What one process saw, for the report: gathered from its recorders and report sinks, written
as JSON by each process of a ``poolscope run`` and read back by the parent, which merges them.

A forked child starts with its parent's counts; :func:`since` takes out what it had at the fork,
so each process's part holds only its own work.
"""

from __future__ import annotations

import os
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from ..core.events import PoolKey
from ..core.folding import OTHER_HOSTS
from ..core.libraries import unknown_met
from ..core.stats import (
    BY_ERROR,
    GAUGES,
    HIGHEST,
    LAST,
    SUMMED,
    PoolStats,
    combined,
    counted_work,
    minus,
)
from .records import Lane, PoolRecord, Samples, all_sinks
from .vendored import unsupported_httpcore, vendored_copies

# Every PoolStats field a part carries, beside the use times.
FIELDS = (*SUMMED, *GAUGES, *HIGHEST, *BY_ERROR, *LAST)


@dataclass
class Seen:
    """One process's counts per pool key, its samples, and its pool objects; ``held``, as it
    ended, the connections responses nobody read or closed still held (none while it runs);
    ``folded``, how many hosts its recorders folded into ``OTHER_HOSTS``."""

    pid: int
    started: float
    stats: dict[PoolKey, PoolStats] = field(default_factory=dict)
    samples: dict[PoolKey, Samples] = field(default_factory=dict)
    records: list[PoolRecord] = field(default_factory=list)
    held: dict[PoolKey, int] = field(default_factory=dict)
    folded: int = 0
    # Libraries not in poolscope's table that built pools here: description, whose words.
    libraries: dict[str, tuple[str, str]] = field(default_factory=dict)
    # Client code imported and not instrumented (vendored urllib3, an old httpcore): sentences.
    vendored: tuple[str, ...] = ()


def gather() -> Seen:
    """What this process's report sinks and their recorders saw so far."""
    not_counted = vendored_copies() + unsupported_httpcore()
    seen = Seen(os.getpid(), time.time(), libraries=unknown_met(), vendored=not_counted)
    parts: dict[PoolKey, list[PoolStats]] = {}
    for sink in all_sinks():
        seen.records += sink.records()
        seen.started = min(seen.started, sink.started)
        seen.folded += sink.recorder.folded_hosts - sink.baseline_folded
        for key, part in sink.samples_snapshot().items():
            seen.samples.setdefault(key, Samples()).extend(part)
        for one in sink.recorder.all_stats():  # what it counted since the report began
            counted = minus(one, sink.baseline.get(one.key))
            # A pool that did nothing since then adds nothing, not even its maxima and settings
            # (the maxsize of a pool that last worked before the report began).
            if counted_work(counted):
                parts.setdefault(one.key, []).append(counted)
    seen.stats = {key: combined(key, stats) for key, stats in parts.items()}
    seen.records.sort(key=lambda r: r.pool_id)
    return seen


def since(now: Seen, before: Seen) -> Seen:
    """``now`` without the counts ``before`` had (a forked child's, taken at the fork)."""
    stats = {}
    for key, total in now.stats.items():
        old = before.stats.get(key)
        if key == OTHER_HOSTS:  # it took in the counts of hosts folded since, the fork's too
            gone = [s for k, s in before.stats.items() if k not in now.stats]
            old = combined(key, [old, *gone] if old is not None else gone)
        own = stats[key] = minus(total, old)
        if old is not None and own is not total:
            # Connections other threads of the parent had checked out, and requests they had
            # waiting, at the fork are not the child's: they will never come back here.
            own.open -= old.in_use
            own.waiting -= old.waiting
    return Seen(
        now.pid,
        max(now.started, before.started),
        stats,
        now.samples,
        now.records,
        now.held,
        now.folded - before.folded,
        now.libraries,
        now.vendored,
    )


def to_json(seen: Seen) -> dict[str, Any]:
    return {
        "pid": seen.pid,
        "started": seen.started,
        "held": [[list(key), n] for key, n in seen.held.items()],
        "folded": seen.folded,
        "libraries": seen.libraries,
        "vendored": list(seen.vendored),
        "stats": [
            {
                "key": list(key),
                **{name: getattr(stats, name) for name in FIELDS},
                "use_times": list(stats.use_times or ()),
            }
            for key, stats in seen.stats.items()
        ],
        "samples": [
            {
                "key": list(key),
                "connect": s.connect_times,
                "idle": s.idle_times,
                "drop": s.drop_idle_times,
                "drops_seen": s.drops_seen,
                "connects_seen": s.connects_seen,
                "idles_seen": s.idles_seen,
                "wait": s.wait_times,
                "waits_seen": s.waits_seen,
                "pool_timeout": s.pool_timeout,
                "occupancy": {
                    "points": s.occupancy.points,
                    "discards": s.occupancy.discards,
                    "waits": s.occupancy.waits,
                    "left_out": s.occupancy.marks_left_out,
                },
            }
            for key, s in seen.samples.items()
        ],
        "records": [
            {
                "key": list(r.key),
                "pool_id": r.pool_id,
                "manager_id": r.manager_id,
                "library": r.library,
                "maxsize": r.maxsize,
                "num_pools": r.num_pools,
                "evicted": r.evicted,
                "left_out": [r.lanes_left_out, r.marks_left_out],
                "lanes": [
                    [lane.id, lane.opened, lane.closed, lane.reason, lane.requests, lane.uses]
                    for lane in list(r.lanes.values())
                ],
            }
            for r in seen.records
        ],
    }


def from_json(data: dict[str, Any]) -> Seen:
    seen = Seen(int(data["pid"]), float(data["started"]))
    seen.held = {PoolKey(*key): n for key, n in data.get("held", ())}
    seen.folded = int(data.get("folded", 0))
    seen.vendored = tuple(data.get("vendored", ()))
    seen.libraries = {
        name: (text, speaks) for name, (text, speaks) in data.get("libraries", {}).items()
    }
    for item in data["stats"]:
        key = PoolKey(*item["key"])
        stats = seen.stats[key] = PoolStats(key)
        for name in FIELDS:
            setattr(stats, name, item[name])
        stats.use_times = deque(item["use_times"])
    for item in data["samples"]:
        samples = seen.samples[PoolKey(*item["key"])] = Samples()
        samples.connect_times = item["connect"]
        samples.idle_times = item["idle"]
        samples.drop_idle_times = item["drop"]
        samples.drops_seen = item["drops_seen"]
        samples.connects_seen = item["connects_seen"]
        samples.idles_seen = item["idles_seen"]
        samples.wait_times = item["wait"]
        samples.waits_seen = item["waits_seen"]
        samples.pool_timeout = item["pool_timeout"]
        occupancy = item["occupancy"]
        samples.occupancy.points = [tuple(p) for p in occupancy["points"]]
        samples.occupancy.discards = occupancy["discards"]
        samples.occupancy.waits = occupancy["waits"]
        samples.occupancy.marks_left_out = occupancy["left_out"]
    for item in data["records"]:
        rec = PoolRecord(
            PoolKey(*item["key"]), item["pool_id"], item["manager_id"], item["library"]
        )
        rec.maxsize, rec.num_pools, rec.evicted = (
            item["maxsize"],
            item["num_pools"],
            item["evicted"],
        )
        rec.lanes_left_out, rec.marks_left_out = item["left_out"]
        for conn_id, opened, closed, reason, requests, uses in item["lanes"]:
            lane = rec.lanes[conn_id] = Lane(conn_id, opened)
            lane.closed, lane.reason, lane.requests, lane.uses = closed, reason, requests, uses
        seen.records.append(rec)
    return seen
