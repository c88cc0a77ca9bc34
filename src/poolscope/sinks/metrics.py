"""The OpenTelemetry metrics sink: observable counters over the recorder's counts, histograms.

Counts are read at collection time from the recorder's plain integers, so a request costs no
instrument call. Idle and use times, the histograms fed on the reused-connection path, are
buffered per pool key (a bounded deque append each) and recorded when a reader collects; the
other histograms' samples are held back and recorded in batches (see
:mod:`poolscope.sinks.pending`).

Series are bounded on purpose, as an SDK keeps every series it was ever given: at most
``POOLSCOPE_MAX_HOSTS`` hosts (see :mod:`poolscope.core.folding`) get series of their own over
the process's life, the first met; every other host, and the hosts the recorder folded, report
together in one series per instrument marked ``poolscope.other_hosts=true``. Each series is
monotonic: a folded host's counts move into that series as its own stops being reported.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Sequence
from operator import add
from typing import Any

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._version import __version__
from ..core.events import EventKind, PoolEvent, PoolKey
from ..core.folding import OTHER_HOSTS
from ..core.recorder import Recorder
from ..core.sink import Sink
from ..core.stats import PoolStats
from .instruments import COUNTERS, DURATION_BUCKETS, IDLE_BUCKETS, SHORT_BUCKETS, histogram
from .pending import PendingRecords, record_all
from .sdk import GLOBAL_METER_PROVIDER, records_anything

# An attribute a figure adds to its host's (error.type, http.connection.state), or None.
Extra = tuple[str, str] | None
_ACTIVE = ("http.connection.state", "active")
_IDLE = ("http.connection.state", "idle")
LIBRARY = "poolscope.library"  # urllib3.pool.library's: which library built a host's pools
# The attributes of the series of the hosts folded together (no server.address of their own).
OTHER_HOSTS_ATTRIBUTES = {"poolscope.other_hosts": True}
USE_TIME_ENV = "POOLSCOPE_METRICS_USE_TIME"  # 1: export urllib3.pool.connection.use_time


class MetricsSink(Sink):
    """Turns pool events and counts into OpenTelemetry instruments on one meter."""

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
        # The attributes of each host with series of its own (at most max_hosts), and OTHER's.
        self._attributes: dict[PoolKey, dict[str, Any]] = {OTHER_HOSTS: OTHER_HOSTS_ATTRIBUTES}
        self._series_budget = recorder.max_hosts + 1
        # The histograms' samples not yet recorded; one that fails to record is said once.
        self.pending = PendingRecords(lambda: recorder.sinks.failed(self))
        meter = metrics.get_meter(
            "poolscope",
            __version__,
            meter_provider=meter_provider,
            schema_url="https://opentelemetry.io/schemas/1.26.0",
        )
        self._create_time = histogram(
            meter,
            "urllib3.pool.connection.create_time",
            "Time to establish a connection: TCP connect plus TLS handshake.",
            SHORT_BUCKETS,
        )
        self._tls_time = histogram(
            meter,
            "urllib3.pool.connection.tls_time",
            "Time spent in the TLS handshake of a new https connection.",
            SHORT_BUCKETS,
        )
        self._idle_time = histogram(
            meter,
            "urllib3.pool.connection.idle_time",
            "How long a pooled connection sat idle before it was reused.",
            IDLE_BUCKETS,
        )
        self._dropped_idle_time = histogram(
            meter,
            "urllib3.pool.connection.dropped_idle_time",
            "How long a pooled connection sat idle before it was found closed by the server "
            'as it was taken out (urllib3\'s "Resetting dropped connection").',
            IDLE_BUCKETS,
        )
        self._use_time = (
            histogram(
                meter,
                "urllib3.pool.connection.use_time",
                "How long a request held its connection, from checkout to its return to the "
                "pool (sending, waiting for the response, reading it).",
                DURATION_BUCKETS,
            )
            if self.drains_use_times
            else None
        )
        self._wait_time = histogram(
            meter,
            "urllib3.pool.connection.wait_time",
            "How long a request waited for a free connection (pool_block=True).",
            SHORT_BUCKETS,
        )
        self._duration = histogram(
            meter,
            "http.client.connection.duration",
            "The duration of the successfully established outbound HTTP connections.",
            DURATION_BUCKETS,
        )
        for name, field, unit, description in COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[self._counter_callback(field)], unit=unit, description=description
            )
        observed: Sequence[tuple[Any, str, Any, str, str]] = (
            (
                meter.create_observable_counter,
                "urllib3.pool.connections.failed",
                self._observe_failed,
                "{connection}",
                "Connection attempts that failed, by error.type.",
            ),
            (
                meter.create_observable_counter,
                "urllib3.pool.retries",
                self._observe_retries,
                "{request}",
                "Requests urllib3 retried after a connection error, by error.type.",
            ),
            (
                meter.create_observable_counter,
                "urllib3.pool.errors",
                self._observe_errors,
                "{request}",
                "Errors that reached the program (no retry left or allowed), by error.type.",
            ),
            (
                meter.create_observable_up_down_counter,
                "http.client.open_connections",
                self._observe_open,
                "{connection}",
                "Number of outbound HTTP connections that are currently active or idle.",
            ),
            (
                meter.create_observable_gauge,
                "urllib3.pool.connections.max",
                self._observe_maxsize,
                "{connection}",
                "The most connections a pool of this host keeps (urllib3's maxsize, requests' "
                "pool_maxsize).",
            ),
            (
                meter.create_observable_gauge,
                "urllib3.pool.connections.peak",
                self._observe_peak,
                "{connection}",
                "The most connections in use at once since the previous collection: a "
                "high-water mark, so that no peak between two scrapes is missed.",
            ),
            (
                meter.create_observable_gauge,
                "urllib3.pool.library",
                self._observe_library,
                "{library}",
                "1 for the library that built a host's pools, named in poolscope.library (an "
                "info-style series: join it to the host's others on its host attributes).",
            ),
            (
                meter.create_observable_up_down_counter,
                "urllib3.pool.wait.pending",
                self._observe_waiting,
                "{request}",
                "Requests waiting for a free connection right now (pool_block=True).",
            ),
        )
        for create, name, callback, unit, description in observed:
            create(name, callbacks=[callback], unit=unit, description=description)
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
        if kind is EventKind.CREATED:
            attrs = self._attrs(event.key)
            add(self._create_time.record, event.duration, attrs)
            if event.tls_duration is not None:
                add(self._tls_time.record, event.tls_duration, attrs)
        elif kind is EventKind.CLOSED:
            add(self._duration.record, event.duration, self._attrs(event.key))
        elif kind is EventKind.DROPPED and event.duration is not None:  # idle time known
            add(self._dropped_idle_time.record, event.duration, self._attrs(event.key))
        elif kind is EventKind.WAIT_ENDED or kind is EventKind.WAIT_TIMED_OUT:
            add(self._wait_time.record, event.duration, self._attrs(event.key))

    def _attrs(self, key: PoolKey) -> dict[str, Any]:
        """The attributes of ``key``'s series: its own while the budget lasts, else OTHER's."""
        attrs = self._attributes.get(key)
        if attrs is None:
            if len(self._attributes) >= self._series_budget:
                return OTHER_HOSTS_ATTRIBUTES
            attrs = self._attributes.setdefault(key, key.attributes())
        return attrs

    # -- collection -------------------------------------------------------------------------

    def _counter_callback(self, field: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if field == "reused":
                # A failing histogram must not cost the counter its observations.
                try:
                    self._flush_times()
                except Exception:
                    self._recorder.sinks.failed(self)
            return self._observe(lambda stats: ((None, getattr(stats, field)),))

        return observe

    def _stats(self) -> list[PoolStats]:
        recorder = self._recorder
        if not self._sdk:  # a reader collects: a provider records, whose idle times are kept
            self.wants_reuse()
        if not recorder.counting_switch.on:
            # A reader collects, so an SDK is there: pools made before it appeared count
            # reuses and idle connections from now on (see poolscope.core.counting).
            recorder.counting_switch.turn_on()
        return recorder.all_stats()

    def _flush_times(self) -> None:
        # Runs inside a reader's collection, before it reads the histograms: the buffered
        # samples land in this collection.
        record_all()  # the held-back samples, this sink's and any other's
        flushed = [(self._idle_time.record, "idle_times")]
        if self._use_time is not None:
            flushed.append((self._use_time.record, "use_pending"))
        for stats in self._stats():
            for record, field in flushed:
                samples = getattr(stats, field)
                if not samples:
                    continue
                attrs = self._attrs(stats.key)
                while True:
                    try:
                        value = samples.popleft()
                    except IndexError:
                        break
                    record(value, attrs)

    def _observe_failed(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_error_type("failed")

    def _observe_retries(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_error_type("retries")

    def _observe_errors(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._by_error_type("errors")

    def _by_error_type(self, field: str) -> list[Observation]:
        def by_type(stats: PoolStats) -> list[tuple[Extra, int]]:
            counts: dict[str, int] = getattr(stats, field)
            return [(("error.type", etype), n) for etype, n in list(counts.items())]

        return self._observe(by_type)

    def _observe_open(self, options: CallbackOptions) -> Iterable[Observation]:
        def by_state(stats: PoolStats) -> tuple[tuple[Extra, int], ...]:
            idle = stats.idle
            return ((_ACTIVE, stats.open - idle), (_IDLE, idle))

        return self._observe(by_state)

    def _observe_waiting(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda stats: ((None, stats.waiting),))

    def _observe_maxsize(self, options: CallbackOptions) -> Iterable[Observation]:
        # A pool with no limit (httpx's max_keepalive_connections=None) has no size to say.
        return self._observe(lambda stats: ((None, stats.maxsize),) if stats.maxsize else (), max)

    def _observe_peak(self, options: CallbackOptions) -> Iterable[Observation]:
        def since_last(stats: PoolStats) -> tuple[tuple[Extra, int]]:
            peak = stats.peak_since
            stats.peak_since = stats.open - stats.idle  # from those in use now, for the next
            return ((None, peak),)

        return self._observe(since_last, max)

    def _observe_library(self, options: CallbackOptions) -> Iterable[Observation]:
        return self._observe(lambda stats: (((LIBRARY, stats.library or "urllib3"), 1),), max)

    def _observe(
        self,
        values: Callable[[PoolStats], Iterable[tuple[Extra, int]]],
        combine: Callable[[int, int], int] = add,
    ) -> list[Any]:
        """One observation per series: each host's own, and the other hosts' combined into one
        (summed; for a size or a peak, the largest). ``values`` gives a host's figures, each
        with the attribute it adds, if any."""
        observations = []
        others: dict[Extra, int] = {}
        for stats in self._stats():
            attrs = self._attrs(stats.key)
            if attrs is OTHER_HOSTS_ATTRIBUTES:
                for extra, value in values(stats):
                    others[extra] = combine(others[extra], value) if extra in others else value
                continue
            for extra, value in values(stats):
                observations.append(Observation(value, _with(attrs, extra)))
        for extra, value in others.items():
            observations.append(Observation(value, _with(OTHER_HOSTS_ATTRIBUTES, extra)))
        return observations


def _with(attrs: dict[str, Any], extra: Extra) -> dict[str, Any]:
    """A series' attributes: its host's, and the one its figure adds (if any)."""
    return {**attrs, extra[0]: extra[1]} if extra else attrs
