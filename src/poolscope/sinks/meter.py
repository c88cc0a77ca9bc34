"""One OpenTelemetry meter's pool instruments, made once, and the series they observe over every
recorder that reports to that meter.

An SDK keeps one instrument per name on a meter: a second ``create_observable_counter`` of the
same name returns the first instrument and drops the new callbacks (silently, in recent SDKs).
Several recorders can report to one meter: sessions given the same meter provider and different
tracer providers, or the global provider reached both implicitly and by name. So each meter has one
:class:`PoolMeter`, found through :func:`pool_meter`, whose callbacks observe every recorder's
metrics sink on it, a host's figures summed across them.

Series are bounded on purpose, as an SDK keeps every series it was ever given: at most
``POOLSCOPE_MAX_HOSTS`` hosts (see :mod:`poolscope.core.folding`) get series of their own over
the process's life, the first met on the meter; every other host reports in one series per
instrument marked ``poolscope.other_hosts=true``. Counters stay monotonic through folding: a
host a recorder folds keeps its series, with its counts (its sink keeps them), and adds to it
when met again; a host without series of its own goes on counting in the other hosts' series.
"""

from __future__ import annotations

import threading
import weakref
from collections import deque
from collections.abc import Callable, Iterable
from operator import add
from typing import Any, Protocol

from opentelemetry import metrics
from opentelemetry.metrics import CallbackOptions, Observation

from .._version import __version__
from ..core.events import PoolKey
from ..core.folding import OTHER_HOSTS
from ..core.stats import PoolStats
from .instruments import (
    COUNTERS,
    DURATION_BUCKETS,
    IDLE_BUCKETS,
    OBSERVED,
    SHORT_BUCKETS,
    histogram,
)
from .sdk import records_anything

# An attribute a figure adds to its host's (error.type, http.connection.state), or None.
Extra = tuple[str, str] | None
_ACTIVE = ("http.connection.state", "active")
_IDLE = ("http.connection.state", "idle")
LIBRARY = "poolscope.library"  # urllib3.pool.library's: which library built a host's pools
# The attributes of the series of the hosts folded together (no server.address of their own).
OTHER_HOSTS_ATTRIBUTES = {"poolscope.other_hosts": True}


class MeterSink(Protocol):
    """What a :class:`PoolMeter` reads of each metrics sink on it (sinks/metrics.py's)."""

    def collecting(self) -> None:
        """A reader collects: record what is held back; the recorder counts from now on."""

    def counts(self, read: Callable[[list[PoolStats], list[PoolStats]], None]) -> None:
        """Run ``read`` on the counts the recorder keeps and on those the sink keeps of folded
        hosts with series of their own, with no fold in between."""

    def buffered(self) -> list[PoolStats]:
        """The recorder's counts, whose idle and use times wait for this collection."""

    def failed(self) -> None:
        """Something of it failed: its recorder says so once."""

    drains_use_times: bool


class PoolMeter:
    """The instruments of one meter, and the series they observe over the sinks added."""

    def __init__(self, meter_provider: Any, max_hosts: int) -> None:
        self.provider = meter_provider  # kept: its id is a key of _meters
        self._sinks: tuple[MeterSink, ...] = ()
        # The attributes of each host with series of its own (at most max_hosts), and OTHER's.
        self._attributes: dict[PoolKey, dict[str, Any]] = {OTHER_HOSTS: OTHER_HOSTS_ATTRIBUTES}
        self._series_budget = max_hosts + 1
        # Whether a key has series of its own (asked, never given): the dict's own, read in C.
        self.has_series: Callable[[PoolKey], bool] = self._attributes.__contains__
        meter = metrics.get_meter(
            "poolscope",
            __version__,
            meter_provider=meter_provider,
            schema_url="https://opentelemetry.io/schemas/1.26.0",
        )
        self.create_time = histogram(
            meter,
            "urllib3.pool.connection.create_time",
            "Time to establish a connection: TCP connect plus TLS handshake.",
            SHORT_BUCKETS,
        )
        self.tls_time = histogram(
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
        self.dropped_idle_time = histogram(
            meter,
            "urllib3.pool.connection.dropped_idle_time",
            "How long a pooled connection sat idle before it was found closed by the server "
            'as it was taken out (urllib3\'s "Resetting dropped connection").',
            IDLE_BUCKETS,
        )
        self._use_time: Any = None  # made when a sink drains use times (see include)
        self._meter = meter
        self.wait_time = histogram(
            meter,
            "urllib3.pool.connection.wait_time",
            "How long a request waited for a free connection (pool_block=True).",
            SHORT_BUCKETS,
        )
        self.duration = histogram(
            meter,
            "http.client.connection.duration",
            "The duration of the successfully established outbound HTTP connections.",
            DURATION_BUCKETS,
        )
        for name, field, unit, description in COUNTERS:
            meter.create_observable_counter(
                name, callbacks=[self._counter_callback(field)], unit=unit, description=description
            )
        for kind, name, method, unit, description in OBSERVED:
            create = getattr(meter, f"create_observable_{kind}")
            create(name, callbacks=[getattr(self, method)], unit=unit, description=description)

    def include(self, sink: MeterSink) -> None:
        """Observe ``sink``'s recorder too (a sink is never taken out: an SDK keeps callbacks
        for its provider's life)."""
        with _lock:
            if sink.drains_use_times and self._use_time is None:
                self._use_time = histogram(
                    self._meter,
                    "urllib3.pool.connection.use_time",
                    "How long a request held its connection, from checkout to its return to "
                    "the pool (sending, waiting for the response, reading it).",
                    DURATION_BUCKETS,
                )
            self._sinks = (*self._sinks, sink)

    def attributes(self, key: PoolKey) -> dict[str, Any]:
        """The attributes of ``key``'s series: its own while the budget lasts (the first hosts
        met have them), else the other hosts'. A new host's two events ask: one call each."""
        attrs = self._attributes.get(key)
        if attrs is None:
            if len(self._attributes) >= self._series_budget:
                return OTHER_HOSTS_ATTRIBUTES
            attrs = self._attributes.setdefault(key, key.attributes())
        return attrs

    def series(self, key: PoolKey) -> PoolKey:
        """The key of ``key``'s series: its own, or OTHER_HOSTS."""
        return OTHER_HOSTS if self.attributes(key) is OTHER_HOSTS_ATTRIBUTES else key

    # -- collection -------------------------------------------------------------------------

    def _counter_callback(self, field: str) -> Any:
        def observe(options: CallbackOptions) -> Iterable[Observation]:
            if field == "reused":
                self._flush_times()
            return self._observe(lambda stats: ((None, getattr(stats, field)),), counter=True)

        return observe

    def _flush_times(self) -> None:
        # Runs inside a reader's collection, before it reads the histograms: the held-back and
        # buffered samples land in this collection. A sink whose samples fail to record is
        # said once by its recorder (Sinks.failed); the counters are observed all the same.
        for sink in self._sinks:
            try:
                sink.collecting()
                flushed = [(self._idle_time.record, "idle_times")]
                if sink.drains_use_times and self._use_time is not None:
                    flushed.append((self._use_time.record, "use_pending"))
                for stats in sink.buffered():
                    for record, field in flushed:
                        samples = getattr(stats, field)
                        if samples:
                            _record_each(samples, record, self.attributes(stats.key))
            except Exception:
                sink.failed()

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

        return self._observe(by_type, counter=True)

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
        counter: bool = False,
    ) -> list[Any]:
        """One observation per series: a host's figures across every recorder on this meter,
        and the hosts without series of their own together, summed (for a size or a peak, the
        largest). ``values`` gives a host's figures, each with the attribute it adds, if any.
        A counter's series also go on for the folded hosts that have them, where not zero: a
        host no longer met has no gauge, and a count of nothing ends as it was."""
        series: dict[tuple[PoolKey, Extra], int] = {}
        key_of = self.series

        def put(key: PoolKey, stats: PoolStats, nonzero: bool) -> None:
            for extra, value in values(stats):
                if value or not nonzero:
                    at = (key, extra)
                    series[at] = combine(series[at], value) if at in series else value

        def read(kept: list[PoolStats], folded: list[PoolStats]) -> None:
            for stats in kept:
                put(key_of(stats.key), stats, False)
            if counter:
                for stats in folded:
                    put(stats.key, stats, True)

        for sink in self._sinks:
            sink.counts(read)
        attributes = self._attributes
        return [
            Observation(value, _with(attributes[key], extra))
            for (key, extra), value in series.items()
        ]


def _record_each(
    samples: deque[float], record: Callable[[float, dict[str, Any]], Any], attrs: dict[str, Any]
) -> None:
    """Record and take out every sample of a deque another thread may still append to (one
    appended meanwhile is recorded too, or waits for the next collection)."""
    while True:
        try:
            value = samples.popleft()
        except IndexError:
            return
        record(value, attrs)


def _with(attrs: dict[str, Any], extra: Extra) -> dict[str, Any]:
    """A series' attributes: its host's, and the one its figure adds (if any)."""
    return {**attrs, extra[0]: extra[1]} if extra else attrs


# Each meter's PoolMeter, by the id of its provider (kept alive by the PoolMeter, or for good
# by the API when it is the global one), and the global provider's under _GLOBAL too: whichever
# way a recorder names a provider, it finds the one PoolMeter of that provider's meter.
_meters: weakref.WeakValueDictionary[int, PoolMeter] = weakref.WeakValueDictionary()
_GLOBAL = 0  # no object's id
_lock = threading.Lock()


def pool_meter(meter_provider: Any, max_hosts: int) -> PoolMeter:
    """The PoolMeter of ``meter_provider``'s meter (None: the global provider's), made on
    first use with a series budget of ``max_hosts`` hosts."""
    current = metrics.get_meter_provider()
    keys = [] if meter_provider is None else [id(meter_provider)]
    if meter_provider is None or meter_provider is current:
        # The global provider, or the one named that is it: instruments made through the API's
        # proxy before it was set are on its meter too.
        keys.insert(0, _GLOBAL)
        if records_anything(current, "opentelemetry.metrics"):
            keys.append(id(current))
    with _lock:
        found = next(filter(None, map(_meters.get, keys)), None)
        if found is None:
            found = PoolMeter(meter_provider, max_hosts)
        for key in keys:
            _meters.setdefault(key, found)
    return found
