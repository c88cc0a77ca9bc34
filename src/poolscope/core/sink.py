"""The sink contract, and a recorder's set of sinks with every call to them contained.

A sink consumes pool events: metrics, spans, log records, the report. :class:`Sink` declares
every capability a recorder asks about, each with its default; a sink overrides what it needs.
:class:`Sinks` indexes them by what they want, so an event is built only when some sink wants
its kind, and contains their failures (a sink that raises is reported once and skipped).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import ClassVar

from .errors import sink_failed
from .events import EventKind, PoolEvent, PoolKey
from .stats import PoolStats

_OnReuse = Callable[[int, float | None], None]


class Sink:
    """Base class of every consumer of pool events.

    ``kinds`` lists the events it wants; the recorder builds an event only when some sink wants
    its kind, which keeps the reused-connection path to integer bookkeeping.
    """

    kinds: ClassVar[frozenset[EventKind]] = frozenset()
    #: It reads ``PoolStats.idle_times`` (buffered idle times of reuses), so they are kept from
    #: the start (a sink that reads them only later calls ``Recorder.keep_idle_times()`` then).
    keeps_idle_times: ClassVar[bool] = False
    #: It reads ``PoolStats.use_times`` (how long requests held a connection), so they are kept.
    keeps_use_times: ClassVar[bool] = False
    #: It takes ``PoolStats.use_pending`` (the same, not yet collected), so they are buffered
    #: (a sink may say so per instance).
    drains_use_times: bool = False
    #: The kinds for which it has a ``gate()`` (when it overrides it).
    gated_kinds: ClassVar[frozenset[EventKind]] = frozenset({EventKind.REUSED})

    def handle(self, event: PoolEvent) -> None:
        """Consume one event of a kind in ``kinds``; may raise (the failure is contained)."""

    def wants_reuse(self) -> bool:
        """Whether it acts on each reuse now. Asked when pools and connections are made, and
        False means it will not while it stays so (an OpenTelemetry sink with no SDK behind
        it): then pools neither count reuses nor run their checkout hook (see
        ``Recorder.should_count``). By default: whether it wants reuse events."""
        return EventKind.REUSED in self.kinds

    def wants_phases(self) -> bool:
        """Whether connects should be timed phase by phase (DNS lookup, TCP connect, TLS)."""
        return False

    def on_reuse(self, connection_id: int, idle: float | None) -> None:
        """A sink that overrides this takes each reuse here instead of as a REUSED event
        through ``handle``: ``idle`` is how long the connection sat in its pool (None when not
        known). It runs on every reuse, so it must be cheap when there is nothing to do. The
        span sink overrides it: a reuse is the hot path of a traced service, where an event
        it did not need, a gate and a second span lookup made up some 40% of what poolscope
        cost (docs/performance.md). Never called otherwise."""

    def folding(self, folded: list[PoolStats]) -> None:
        """The recorder is folding these hosts' counts into ``OTHER_HOSTS``: called under its
        lock, before they leave it (see ``Recorder.read_counts``), so it must be quick and
        take no lock held while the recorder is called."""

    def folded(self, keys: list[PoolKey]) -> None:
        """The recorder folded these hosts into ``OTHER_HOSTS`` (see
        :mod:`poolscope.core.folding`): forget what is kept for them. Called outside the
        recorder's lock."""

    def gate(self) -> bool:
        """Whether it would do something with an event of a kind in ``gated_kinds`` now; only
        asked when a sink overrides it. For reuses (with no ``on_reuse`` of its own), asked
        before an event is built for it: False, and it is not handed one (the log sink, while
        its logger is not enabled for DEBUG). For another kind, asked when only sinks that
        gate it want it: no event is built while every gate says False (the span sink with
        the events it puts on the request's span, while no span that records is current);
        when one is built, every sink that wants the kind is handed it, and one whose gate
        would say False must do nothing with it."""
        return True


class Sinks:
    """A recorder's sinks, indexed by what each wants; every call into them is contained."""

    def __init__(self) -> None:
        self.all: tuple[Sink, ...] = ()
        self.wanted: dict[EventKind, tuple[Sink, ...]] = {kind: () for kind in EventKind}
        # The sinks of reuses, each with its own on_reuse when it has one (else it gets events)
        # and its gate when it has one.
        self.reuse: tuple[tuple[Sink, _OnReuse | None, Callable[[], bool] | None], ...] = ()
        self._phases: tuple[Sink, ...] = ()  # those that may want phases (Sink's never does)
        self._folding: tuple[Sink, ...] = ()  # those that keep folded hosts' counts
        # The kinds (reuses aside) that only sinks with a gate for them want, with those gates:
        # an event of one is built only when some gate says so. A dict the recorder reads too.
        self.gated_only: dict[EventKind, tuple[tuple[Sink, Callable[[], bool]], ...]] = {}
        self._ungated: set[EventKind] = set()  # kinds some sink without a gate for them wants
        self.keep_idle_times = False
        self.keep_use_times = False
        self.drain_use_times = False
        self._failed: set[int] = set()

    def add(self, sink: Sink) -> None:
        self.all = (*self.all, sink)
        has_gate = type(sink).gate is not Sink.gate
        for kind in sink.kinds:
            self.wanted[kind] = (*self.wanted[kind], sink)
            if kind is EventKind.REUSED:
                continue
            if has_gate and kind in sink.gated_kinds and kind not in self._ungated:
                self.gated_only[kind] = (*self.gated_only.get(kind, ()), (sink, sink.gate))
            else:
                self._ungated.add(kind)
                self.gated_only.pop(kind, None)
        if EventKind.REUSED in sink.kinds:
            on_reuse = sink.on_reuse if type(sink).on_reuse is not Sink.on_reuse else None
            gate = sink.gate if has_gate and EventKind.REUSED in sink.gated_kinds else None
            self.reuse = (*self.reuse, (sink, on_reuse, gate))
        if type(sink).wants_phases is not Sink.wants_phases:
            self._phases = (*self._phases, sink)
        if type(sink).folding is not Sink.folding:
            self._folding = (*self._folding, sink)
        self.keep_idle_times = self.keep_idle_times or sink.keeps_idle_times
        self.keep_use_times = self.keep_use_times or sink.keeps_use_times
        self.drain_use_times = self.drain_use_times or sink.drains_use_times

    def emit(self, event: PoolEvent) -> None:
        kind = event.kind
        if kind not in self.gated_only or self.gate_open(kind):
            self.send(self.wanted[kind], event)

    def gate_open(self, kind: EventKind) -> bool:
        """For a kind in ``gated_only``: whether some gate lets an event of it be built now."""
        for sink, gate in self.gated_only[kind]:
            try:
                if gate():
                    return True
            except Exception:
                self.failed(sink)
        return False

    def send(self, sinks: tuple[Sink, ...], event: PoolEvent) -> None:
        """Hand ``event`` to ``sinks``, those that want its kind (``wanted[event.kind]``)."""
        for sink in sinks:
            try:
                sink.handle(event)
            except Exception:
                self.failed(sink)

    def folding(self, folded: list[PoolStats]) -> None:
        for sink in self._folding:
            try:
                sink.folding(folded)
            except Exception:
                self.failed(sink)

    def folded(self, keys: list[PoolKey]) -> None:
        for sink in self.all:
            try:
                sink.folded(keys)
            except Exception:
                self.failed(sink)

    def wants_reuse(self) -> bool:
        """Whether some sink acts on each reuse now."""
        for sink in self.all:
            try:
                if sink.wants_reuse():
                    return True
            except Exception:
                self.failed(sink)
        return False

    def wants_phases(self) -> bool:
        """Whether some sink wants connects timed phase by phase (asked at every connect)."""
        for sink in self._phases:
            try:
                if sink.wants_phases():
                    return True
            except Exception:
                self.failed(sink)
        return False

    def failed(self, sink: Sink) -> None:
        """Contain a failure of ``sink`` (call it while handling the exception): said once."""
        if id(sink) not in self._failed:
            self._failed.add(id(sink))
            sink_failed(type(sink).__name__)
