"""The OpenTelemetry metrics sink: one recorder's counts and events, on its meter's instruments.

Counts are read at collection time from the recorder's plain integers, so a request costs no
instrument call. Idle and use times, the histograms fed on the reused-connection path, are
buffered per pool key (a bounded deque append each) and recorded when a reader collects; the
other histograms' samples are held back and recorded in batches (see
:mod:`poolscope.sinks.pending`). The instruments, and which hosts get series of their own, are
the meter's (:mod:`poolscope.sinks.meter`): recorders on one meter share them.

The counts of the hosts with series of their own that the recorder folds are kept here as they
are folded, so that those series go on from their totals (monotonic, and summed across
recorders); the rest of the recorder's aggregate of folded hosts is the other hosts' series.
That is at most ``POOLSCOPE_MAX_HOSTS`` + 1 sets of counts a sink.
"""

from __future__ import annotations

import os
from collections import deque
from collections.abc import Callable
from itertools import compress
from operator import attrgetter
from typing import Any

from ..core.events import EventKind, PoolEvent, PoolKey
from ..core.folding import OTHER_HOSTS
from ..core.recorder import Recorder
from ..core.sink import Sink
from ..core.stats import PoolStats, add_into, minus
from .meter import pool_meter
from .pending import PendingRecords
from .sdk import GLOBAL_METER_PROVIDER, records_anything

USE_TIME_ENV = "POOLSCOPE_METRICS_USE_TIME"  # 1: export urllib3.pool.connection.use_time
_key = attrgetter("key")
_NOTHING_KEPT: deque[float] = deque(maxlen=0)  # always empty: shared


def _counts(key: PoolKey) -> PoolStats:
    """Counts to add folded hosts' into: their report's samples are not kept here."""
    stats = PoolStats(key)
    stats.use_times = _NOTHING_KEPT
    return stats


class MetricsSink(Sink):
    """Turns one recorder's pool events and counts into its meter's instruments."""

    kinds = frozenset(
        {
            EventKind.CREATED,
            EventKind.CLOSED,
            EventKind.DROPPED,
            EventKind.WAIT_ENDED,
            EventKind.WAIT_TIMED_OUT,
        }
    )
    # Reuses' idle times are read from PoolStats.idle_times, kept once a provider that records
    # is seen (wants_reuse): before, nothing would ever read them.

    def __init__(self, recorder: Recorder, meter_provider: Any = None) -> None:
        # How long requests held a connection (from PoolStats.use_pending), when asked: timing
        # each request costs the reused-connection path (docs/decisions.md, "Response times
        # in the metrics, when asked").
        self.drains_use_times = os.environ.get(USE_TIME_ENV, "").strip() not in ("", "0")
        self._recorder = recorder
        self._provider = meter_provider
        self._sdk = False  # a meter provider that records was seen (it stays so)
        # The counts of the hosts folded that have series of their own, each and in all (see
        # folding()): at most POOLSCOPE_MAX_HOSTS of them.
        self._folded: dict[PoolKey, PoolStats] = {}
        self._folded_total = _counts(OTHER_HOSTS)
        # The histograms' samples not yet recorded; one that fails to record is said once.
        self.pending = PendingRecords(self.failed)
        self.meter = pool_meter(meter_provider, recorder.max_hosts)
        self.meter.include(self)
        if meter_provider is not None:  # one that records keeps idle times from the start
            self.wants_reuse()

    # -- events -----------------------------------------------------------------------------

    def wants_reuse(self) -> bool:
        """Idle times are worth sampling only for a meter provider beyond the API's no-op."""
        if not self._sdk:
            if self._provider:
                self._sdk = records_anything(self._provider, "opentelemetry.metrics")
            else:  # the global one, asked at every connect and close while none records
                self._sdk = GLOBAL_METER_PROVIDER.records()
            if self._sdk:
                self._recorder.keep_idle_times()
        return self._sdk

    def handle(self, event: PoolEvent) -> None:
        if not (self._sdk or self.wants_reuse()):
            return  # the API's no-op instruments: nothing would be recorded
        kind = event.kind
        add = self.pending.add
        meter = self.meter
        if kind is EventKind.CREATED:
            attrs = meter.attributes(event.key)
            add(meter.create_time.record, event.duration, attrs)
            if event.tls_duration is not None:
                add(meter.tls_time.record, event.tls_duration, attrs)
        elif kind is EventKind.CLOSED:
            add(meter.duration.record, event.duration, meter.attributes(event.key))
        elif kind is EventKind.DROPPED and event.duration is not None:  # idle time known
            add(meter.dropped_idle_time.record, event.duration, meter.attributes(event.key))
        elif kind is EventKind.WAIT_ENDED or kind is EventKind.WAIT_TIMED_OUT:
            add(meter.wait_time.record, event.duration, meter.attributes(event.key))

    def folding(self, folded: list[PoolStats]) -> None:
        """Keep the counts of the hosts being folded that have series of their own (under the
        recorder's lock: a collection sees them here or in the recorder, never both)."""
        own = list(compress(folded, map(self.meter.has_series, map(_key, folded))))
        for stats in own:
            into = self._folded.get(stats.key)
            if into is None:
                into = self._folded[stats.key] = _counts(stats.key)
            add_into(into, [stats])
        add_into(self._folded_total, own)

    def failed(self) -> None:
        """Something of this sink failed (a sample, a collection): its recorder says so once."""
        self._recorder.sinks.failed(self)

    # -- what its meter reads at a collection -----------------------------------------------

    def collecting(self) -> None:
        if not self._sdk:  # a reader collects: a provider records, whose idle times are kept
            self.wants_reuse()
        switch = self._recorder.counting_switch
        if not switch.on:
            # A reader collects, so an SDK is there: pools made before it appeared count
            # reuses and idle connections from now on (see poolscope.core.counting).
            switch.turn_on()
        self.pending.record()

    def counts(self, read: Callable[[list[PoolStats], list[PoolStats]], None]) -> None:
        def live_and_folded(all_stats: list[PoolStats]) -> None:
            # The recorder's aggregate of its folded hosts, less those that keep their series.
            total = self._folded_total
            counted = [
                stats if stats.key != OTHER_HOSTS else minus(stats, total) for stats in all_stats
            ]
            read(counted, list(self._folded.values()))

        self._recorder.read_counts(live_and_folded)

    def buffered(self) -> list[PoolStats]:
        return self._recorder.all_stats()
