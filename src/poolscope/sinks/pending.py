"""Histogram samples held back and recorded in batches: when a reader collects, or a batch fills.

An OpenTelemetry SDK's ``Histogram.record`` runs some 25 Python functions (the attributes
hashed, an exemplar offered, a lock taken). Between two HTTP requests their code has left the
processor's caches, and a new host's two records (its connection's create time and, when its
pool is evicted, its duration) cost about 21 microseconds; recorded back to back, 11. So the
metrics sink holds each sample back (a deque append) and records them together: when a reader
collects (before it reads the histograms) or when :data:`BATCH` samples wait.

A sample taken while a sampled span is current is recorded at once, so that the SDK's
trace-based exemplar filter (its default) sees that span, as it would without poolscope; the
others are recorded under an empty context, so that no exemplar names a span they were not
taken under. docs/decisions.md, "Histograms recorded in batches", says what this moves and
what it keeps.
"""

from __future__ import annotations

import os
import threading
import weakref
from collections import deque
from collections.abc import Callable
from typing import Any

from opentelemetry import context

from .sdk import SPAN_KEY, current_context

BATCH = 128  # samples that make a batch: about 0.7 ms of the request that records them

# An instrument's record(), and what it takes: the event's figure (always set for the kinds the
# metrics sink records) and the series' attributes.
Record = Callable[[float | None, dict[str, Any]], None]

_EMPTY = context.Context()  # what held-back samples are recorded under: no span, no exemplar
_every: weakref.WeakSet[PendingRecords] = weakref.WeakSet()


class PendingRecords:
    """Histogram samples not yet recorded, in order; ``failed`` is called (in an ``except``)
    when recording one raises, and the others are still recorded."""

    def __init__(self, failed: Callable[[], None], batch: int = BATCH) -> None:
        # Whole samples, (record, value, attributes): a deque, whose popleft() never misses
        # what another thread appends meanwhile.
        self._samples: deque[tuple[Record, float | None, dict[str, Any]]] = deque()
        self._batch = batch
        self._failed = failed
        self._recording = threading.Lock()
        _every.add(self)

    def add(self, record: Record, value: float | None, attributes: dict[str, Any]) -> None:
        """Record ``value`` with ``attributes`` through ``record`` (an instrument's), later."""
        span: Any = current_context().get(SPAN_KEY)
        if span is not None and span.get_span_context().trace_flags.sampled:
            record(value, attributes)  # now: its exemplar, if the SDK keeps one, names the span
            return
        samples = self._samples
        samples.append((record, value, attributes))
        if len(samples) >= self._batch:
            self.record()

    def record(self) -> None:
        """Record every sample held back. When another thread is at it, that one records them
        (its loop runs until none is left), and this returns at once."""
        if not self._recording.acquire(blocking=False):
            return
        token = context.attach(_EMPTY)
        try:
            take = self._samples.popleft
            while True:
                try:
                    record, value, attributes = take()
                except IndexError:
                    return
                try:
                    record(value, attributes)
                except Exception:
                    self._failed()
        finally:
            context.detach(token)
            self._recording.release()

    def __len__(self) -> int:
        """How many samples are held back."""
        return len(self._samples)


def _forked() -> None:
    # In a forked child: the samples held are the parent's to record, and a thread of the
    # parent may have held a lock at the fork (it would never release it here).
    for pending in list(_every):
        pending._samples.clear()
        pending._recording = threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forked)
