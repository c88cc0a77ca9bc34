"""Histogram samples held back and recorded in batches: when a reader collects, or a batch fills.

An OpenTelemetry SDK's ``Histogram.record`` runs some 25 Python functions (the attributes
hashed, an exemplar offered, a lock taken). Between two HTTP requests their code has left the
processor's caches, and a new host's two records (its connection's create time and, when its
pool is evicted, its duration) cost about 21 microseconds; recorded back to back, 11. So the
metrics sink holds each sample back (a deque append) and records them together: when a reader
collects (before it reads the histograms, so they are in that collection) or when
:data:`BATCH` samples wait. Nothing is dropped and the memory held stays small.

A sample taken while a sampled span is current is recorded at once, so that the SDK's
trace-based exemplar filter (its default) sees that span, as it would without poolscope.
docs/decisions.md, "Histograms recorded in batches", says what this moves and what it keeps.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable
from typing import Any

from .sdk import SPAN_KEY, current_context

BATCH = 128  # samples a batch records at most: about 0.7 ms of one request, once in 64 hosts

# An instrument's record(), and what it takes: the event's figure (always set for the kinds the
# metrics sink records) and the series' attributes.
Record = Callable[[float | None, dict[str, Any]], None]


class PendingRecords:
    """Histogram samples not yet recorded: (record, value, attributes), in order."""

    def __init__(self, batch: int = BATCH) -> None:
        # Each sample is three entries, added by one extend(): a whole sample at once, whatever
        # other threads add. A deque: its popleft() never misses what another thread appends.
        self._entries: deque[Any] = deque()
        self._full = 3 * batch
        self._recording = threading.Lock()

    def add(self, record: Record, value: float | None, attributes: dict[str, Any]) -> None:
        """Record ``value`` with ``attributes`` through ``record`` (an instrument's), later."""
        span: Any = current_context().get(SPAN_KEY)
        if span is not None and span.get_span_context().trace_flags.sampled:
            record(value, attributes)  # now: its exemplar, if the SDK keeps one, names the span
            return
        entries = self._entries
        entries.extend((record, value, attributes))
        if len(entries) >= self._full:
            self.record()

    def record(self) -> None:
        """Record every sample held back. When another thread is at it, that one records them
        (its loop runs until none is left), and this returns at once."""
        if not self._recording.acquire(blocking=False):
            return
        try:
            take = self._entries.popleft
            while True:
                try:
                    record = take()
                except IndexError:
                    return
                record(take(), take())
        finally:
            self._recording.release()

    def __len__(self) -> int:
        """How many samples are held back."""
        return len(self._entries) // 3
