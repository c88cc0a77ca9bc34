"""What requests report to a recorder beyond their connections: retries, errors that reach
the program, and waits for a free connection. A part of the recorder
(:class:`~poolscope.core.recorder.Recorder` derives from :class:`RequestReports`), in a module
of its own to keep each short."""

from __future__ import annotations

from .events import EventKind, PoolEvent
from .sink import Sink, Sinks
from .state import PoolState, described
from .stats import PoolStats

# A timeout that fired: which one ("read" or "connect") and the read timeout in force.
FiredTimeout = tuple[str, float] | None


class RequestReports:
    """The recorder's methods for what requests report (see Recorder)."""

    sinks: Sinks
    _wanted: dict[EventKind, tuple[Sink, ...]]

    def request_retried(self, pool: PoolState, error_type: str, timeout: FiredTimeout) -> None:
        """urllib3 retries a request after ``error_type`` (``timeout``: one that fired)."""
        stats = pool.stats
        _count_timeout(stats, timeout)
        retries = stats.retries
        retries[error_type] = retries.get(error_type, 0) + 1
        if self._wanted[EventKind.RETRIED]:
            self.sinks.emit(
                described(pool, PoolEvent(EventKind.RETRIED, pool.key, error_type=error_type))
            )

    def request_failed(
        self, pool: PoolState, error_type: str, timeout: FiredTimeout, retry: str
    ) -> None:
        """An error reached the program from a request on this pool; ``retry``: the Retry in
        force when it reached it only because that Retry allowed no retry (else empty)."""
        stats = pool.stats
        _count_timeout(stats, timeout)
        errors = stats.errors
        errors[error_type] = errors.get(error_type, 0) + 1
        if retry:
            unretried = stats.unretried
            unretried[error_type] = unretried.get(error_type, 0) + 1
            stats.retry_setting = retry

    def wait_started(self, pool: PoolState, timeout: float | None) -> None:
        stats = pool.stats
        stats.waiting += 1
        pool.waiting += 1
        if pool.waiting > stats.peak_waiting:  # the most waiting at once on one pool object
            stats.peak_waiting = pool.waiting
        if self._wanted[EventKind.WAIT_STARTED]:
            event = PoolEvent(EventKind.WAIT_STARTED, pool.key, timeout=timeout)
            event.in_use = stats.open - stats.idle  # all a pool that limits them may open
            self.sinks.emit(described(pool, event))

    def wait_ended(self, pool: PoolState, waited: float, gave_up: str | None = None) -> None:
        """A wait for a free connection ended, with one, or with the error ``gave_up`` (the
        ``error.type`` of what the request got: urllib3's EmptyPoolError, httpcore's
        PoolTimeout)."""
        stats = pool.stats
        stats.waiting -= 1
        pool.waiting -= 1
        stats.waits += 1
        if waited > stats.max_wait:
            stats.max_wait = waited
        if gave_up is not None:
            stats.wait_timeouts += 1
        kind = EventKind.WAIT_ENDED if gave_up is None else EventKind.WAIT_TIMED_OUT
        if self._wanted[kind]:
            event = PoolEvent(kind, pool.key, duration=waited, error_type=gave_up)
            event.in_use = stats.open - stats.idle
            self.sinks.emit(described(pool, event))


def _count_timeout(stats: PoolStats, timeout: FiredTimeout) -> None:
    if timeout is None:
        return
    which, read_timeout = timeout
    if which == "read":
        stats.read_timeouts += 1
        if read_timeout > stats.read_timeout:
            stats.read_timeout = read_timeout
    else:
        stats.connect_timeouts += 1
