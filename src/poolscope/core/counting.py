"""The counting switch: whether a recorder's pools count reuses and idle connections.

A reused request is the one thing poolscope can see only on the hot path, in the pool's queue.
With no sink acting on it (OpenTelemetry's API alone: no SDK, nothing would record or export)
the pools do not look. Once one does, every pool of the recorder starts counting, for good, from
that moment, as measurements made through OpenTelemetry's API before an SDK is set are not kept
either. The switch knows its pools only as listeners: the instrumentation registers, per pool,
the function that makes that pool count, and the switch calls it once.
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Callable
from typing import Any

from .errors import internal_error

Listener = Callable[[Any], None]


class CountingSwitch:
    """Off until some sink acts on reuses, then on for good; tells every watched pool once."""

    def __init__(self) -> None:
        self.on = False
        self._lock = threading.Lock()  # pools register from any thread
        self._pools: weakref.WeakKeyDictionary[Any, Listener] = weakref.WeakKeyDictionary()

    def watch(self, pool: Any, start: Listener) -> None:
        """Call ``start(pool)`` when counting starts (the caller checks ``on`` itself after).
        ``start`` must not refer to ``pool``, which is held weakly: a module-level function."""
        with self._lock:
            self._pools[pool] = start

    def forget(self, pool: Any) -> None:
        with self._lock:
            self._pools.pop(pool, None)

    def turn_on(self) -> None:
        """Start counting in every watched pool (a no-op once on)."""
        with self._lock:
            if self.on:
                return
            self.on = True
            pools = list(self._pools.items())
        for pool, start in pools:
            try:
                start(pool)
            except Exception:
                internal_error("start counting")
