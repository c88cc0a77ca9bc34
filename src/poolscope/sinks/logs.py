"""The logging sink: one record per pool event on the ``poolscope.pool`` logger.

Each record reads as a sentence and carries its fields in ``extra`` (``poolscope_event``,
``url_scheme``, ``server_address``, ``server_port``, ``connection_id`` and the durations, named
by the core's field table, :func:`poolscope.core.events.log_fields`), so JSON and structlog
formatters can render them. Discards, evictions and wait timeouts are
warnings that say what to change. No OpenTelemetry import, no OpenTelemetry call.
"""

from __future__ import annotations

import logging

from ..core.events import EventKind, PoolEvent, log_fields
from ..core.libraries import library
from ..core.sink import Sink

logger = logging.getLogger("poolscope.pool")

_LEVELS = {
    EventKind.CREATED: logging.INFO,
    EventKind.REUSED: logging.DEBUG,
    EventKind.DROPPED: logging.INFO,
    EventKind.DISCARDED: logging.WARNING,
    EventKind.FAILED: logging.WARNING,
    EventKind.CLOSED: logging.DEBUG,
    EventKind.EVICTED: logging.WARNING,
    EventKind.WAIT_STARTED: logging.INFO,
    EventKind.WAIT_ENDED: logging.INFO,
    EventKind.WAIT_TIMED_OUT: logging.WARNING,
    EventKind.RETRIED: logging.INFO,
}


def _ms(seconds: float | None) -> str:
    return f"{(seconds or 0.0) * 1000:.1f} ms"


def message(event: PoolEvent) -> str:
    """The sentence a log record says for an event; no path, query, credentials or headers."""
    origin = event.key.origin
    conn = f"connection #{event.connection_id}"
    kind = event.kind
    if kind is EventKind.CREATED:
        tls = (
            f" (TLS handshake {_ms(event.tls_duration)})" if event.tls_duration is not None else ""
        )
        return f"Opened {conn} to {origin} in {_ms(event.duration)}{tls}."
    if kind is EventKind.REUSED:
        idle = f" after {event.duration:.3f} s idle" if event.duration is not None else ""
        return f"Reused {conn} to {origin}{idle}; it had served {event.requests} request(s)."
    if kind is EventKind.DROPPED:
        idle = f" after {event.duration:.1f} s" if event.duration is not None else ""
        return (
            f"Found {conn} to {origin} closed by the server{idle} idle; reconnecting. If this "
            f"repeats, the server's keep-alive timeout is shorter than your idle time."
        )
    lib = library(event.library)  # warnings say the change in the words of its library
    if kind is EventKind.DISCARDED:
        need = event.in_use or 0
        knob = lib.maxsize
        return (
            f"Connection pool for {origin} is full ({knob.name}={event.pool_maxsize}): closed "
            f"{conn} instead of keeping it. Up to {need} connections were in use at once; "
            f"raise {knob.name} (now {event.pool_maxsize}) to {need}, for example "
            f"{knob.words(need)}."
        )
    if kind is EventKind.FAILED:
        elapsed = _ms(event.duration)
        return f"Could not open a connection to {origin} after {elapsed}: {event.error_type}."
    if kind is EventKind.CLOSED:
        why = event.reason.value if event.reason is not None else "closed"
        if event.error_type:
            why = f"{why}: {event.error_type}"
        return (
            f"Closed {conn} to {origin} ({why}) after {event.duration or 0.0:.3f} s "
            f"and {event.requests} request(s)."
        )
    if kind is EventKind.EVICTED:
        evicted = (
            f"Connection pool for {origin} was evicted from a PoolManager that keeps "
            f"{event.num_pools} pool(s); its connections can no longer be reused. "
        )
        if lib.num_pools is None:
            return evicted + f"{lib.missing[:1].upper()}{lib.missing[1:]}."
        return evicted + (
            f"Raise {lib.num_pools.name} (now {event.num_pools}) to the number of hosts you "
            f"call in turn: {lib.num_pools.words('<hosts>')}."
        )
    # The connections a request waits for: a pool's maxsize (urllib3's, with block=True), or,
    # where the limit on open connections is a setting of its own (httpx's max_connections),
    # those in use as it waits.
    block = lib.block or lib.maxsize
    own_limit = block.name != lib.maxsize.name
    busy = event.in_use if own_limit else event.pool_maxsize
    if kind is EventKind.WAIT_STARTED:
        if event.timeout is not None:
            limit = f"for up to {event.timeout:g} s"
        elif lib.pool_timeout is None:
            limit = "with no timeout (requests passes no pool_timeout), so until one is returned"
        else:
            limit = f"with no timeout ({lib.pool_timeout.name}=None), so until one is returned"
        full = f"{block.name}={busy}" if own_limit else "pool_block=True"
        return f"All {busy} connection(s) to {origin} are in use ({full}): waiting {limit}."
    if kind is EventKind.RETRIED:
        return (
            f"urllib3 retried a request to {origin} after {event.error_type} on its connection; "
            "if this repeats after idle gaps, the server closes keep-alive connections early."
        )
    if kind is EventKind.WAIT_ENDED:
        return f"Waited {_ms(event.duration)} for a free connection to {origin}."
    return (
        f"Gave up waiting for a free connection to {origin} after {event.duration or 0.0:.3f} s "
        f"({lib.gave_up}); raise {block.name} (now {busy}) or run fewer requests at once."
    )


class LoggingSink(Sink):
    """Writes each pool event as one log record; costs an ``isEnabledFor`` check otherwise."""

    kinds = frozenset(EventKind)

    def __init__(self, target: logging.Logger = logger) -> None:
        self._logger = target

    def gate(self) -> bool:
        """A reuse is logged at DEBUG: no event is built for it while that is off."""
        return self._logger.isEnabledFor(logging.DEBUG)

    def handle(self, event: PoolEvent) -> None:
        level = _LEVELS[event.kind]
        if self._logger.isEnabledFor(level):
            self._logger.log(level, "%s", message(event), extra=log_fields(event))
