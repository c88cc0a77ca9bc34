"""The event model: what happened in a connection pool, reported once and read by every sink.

It owns the pool's identity (:class:`PoolKey`), the event names (:class:`EventKind`), close
reasons, the event itself (:class:`PoolEvent`, with the :class:`ConnectTiming` of a connect) and
the one table that names each event field in OpenTelemetry attributes and in log records
(:data:`EVENT_FIELDS`), which the spans and logging sinks both read.
"""

from __future__ import annotations

import enum
import time
from dataclasses import dataclass
from typing import Any, NamedTuple


class PoolKey(NamedTuple):
    """The pool an event belongs to: one urllib3 connection pool per (scheme, host, port).

    ``proxy`` is ``scheme://host:port`` of the proxy the pool goes through (never its
    credentials), or None. Through an HTTPS tunnel (``CONNECT``) the pool is the target's; for
    plain HTTP forwarding the connections are the proxy's, so the pool is the proxy's too.
    ``transport`` is ``"unix"`` for a pool over a unix socket (docker's): ``host`` is then the
    socket's path and ``port`` 0, reported as OpenTelemetry's semantic conventions say
    (``server.address`` the path, ``network.transport`` ``unix``, no ``server.port``).
    """

    scheme: str
    host: str
    port: int
    proxy: str | None = None
    transport: str | None = None  # None: TCP

    def attributes(self) -> dict[str, Any]:
        """The OpenTelemetry attributes naming this pool, for metrics and spans alike."""
        attrs = {
            otel: value
            for name, otel, _ in KEY_FIELDS
            if (value := getattr(self, name)) is not None and otel is not None
        }
        if self.transport == "unix":
            del attrs["server.port"]
        return attrs

    @property
    def origin(self) -> str:
        """``scheme://host:port``, with IPv6 literals in brackets; never a path or credentials.
        A unix socket's is ``unix:`` and its path."""
        if self.transport == "unix":
            return f"unix:{self.host}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{self.scheme}://{host}:{self.port}"


class EventKind(str, enum.Enum):
    """Stable event names, shared by log records (``poolscope_event``) and span events."""

    CREATED = "connection_created"
    REUSED = "connection_reused"
    DROPPED = "connection_dropped"
    DISCARDED = "connection_discarded"
    FAILED = "connection_failed"
    CLOSED = "connection_closed"
    EVICTED = "pool_evicted"
    WAIT_STARTED = "wait_started"
    WAIT_ENDED = "wait_ended"
    WAITED = "wait_ended"  # the name before 0.2, kept as an alias of WAIT_ENDED
    WAIT_TIMED_OUT = "wait_timed_out"
    RETRIED = "request_retried"


class CloseReason(str, enum.Enum):
    """Why a connection that was open got closed."""

    SERVER_CLOSED = "server_closed"  # the response said Connection: close (or HTTP/1.0)
    DROPPED = "dropped"  # found closed by the server when taken from the pool
    POOL_FULL = "pool_full"  # returned to a full pool and discarded
    ERROR = "error"  # closed because a request on it failed
    POOL_CLOSED = "pool_closed"  # the pool was closed (Session.close, PoolManager.clear)
    GARBAGE_COLLECTED = "garbage_collected"  # its pool, or the connection itself, was collected
    CLIENT_CLOSED = "client_closed"  # closed by the client, e.g. a response closed unread
    IDLE_EXPIRED = "idle_expired"  # idle past the client's own keep-alive limit (httpx's)


class ConnectTiming:
    """Wall-clock nanoseconds (``time.time_ns``) of one connection attempt's phases."""

    __slots__ = (
        "connect_end_ns",
        "connect_start_ns",
        "dns_end_ns",
        "dns_start_ns",
        "end_ns",
        "peer",
        "start_ns",
    )

    def __init__(self) -> None:
        self.start_ns = time.time_ns()
        self.dns_start_ns: int | None = None
        self.dns_end_ns: int | None = None
        self.connect_start_ns: int | None = None
        self.connect_end_ns: int | None = None  # the TCP connection is up (TLS follows)
        self.end_ns: int | None = None
        self.peer: tuple[str, int] | None = None  # the address the socket connected to


@dataclass(slots=True)
class PoolEvent:
    """One thing that happened in a pool. Built only when a sink listens; treat as read-only.

    ``duration`` is in seconds and means, by kind: connect time (created, failed), idle time
    (reused, dropped), lifetime (discarded, closed), time waited (wait_ended, wait_timed_out).
    """

    kind: EventKind
    key: PoolKey
    connection_id: int | None = None
    duration: float | None = None
    tls_duration: float | None = None
    requests: int | None = None
    reason: CloseReason | None = None
    error_type: str | None = None
    pool_maxsize: int | None = None
    num_pools: int | None = None
    in_use: int | None = None
    timeout: float | None = None
    timing: ConnectTiming | None = None  # created, failed: when each phase happened
    tls_version: str | None = None  # created (https): e.g. "TLSv1.3"
    checked_out: bool | None = None  # closed: it was not in its pool (a request still had it)
    pool_id: int = 0  # which pool object (several can share a key, one per manager)
    manager_id: int = 0  # which PoolManager made the pool; 0 for a pool on its own
    library: str = "urllib3"  # which library built the pool (see poolscope.core.libraries)


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its fully qualified class name (builtins unqualified)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


# -- how each field is named: OpenTelemetry attribute, log record field ---------------------
# One row per field: (PoolKey or PoolEvent attribute, OpenTelemetry attribute or None when
# spans leave it out, log field or None). Enum values are written as their string value.

KEY_FIELDS: tuple[tuple[str, str | None, str | None], ...] = (
    ("scheme", "url.scheme", "url_scheme"),
    ("host", "server.address", "server_address"),
    ("port", "server.port", "server_port"),
    ("proxy", "urllib3.pool.proxy", "proxy"),
    ("transport", "network.transport", "network_transport"),
)

EVENT_FIELDS: tuple[tuple[str, str | None, str | None], ...] = (
    ("connection_id", "urllib3.pool.connection.id", "connection_id"),
    ("tls_duration", None, "tls_time_s"),
    ("requests", "urllib3.pool.connection.requests", "requests_served"),
    ("reason", None, "close_reason"),
    ("error_type", "error.type", "error_type"),
    ("pool_maxsize", "urllib3.pool.maxsize", "pool_maxsize"),
    ("num_pools", "urllib3.pool.num_pools", "pool_connections"),
    # Not an OpenTelemetry attribute: it would split every series of an existing dashboard by
    # a label that is, in practice, the same for all of one host's pools.
    ("library", None, "client_library"),
)

# ``duration`` means something else per kind (see PoolEvent), so it is named per kind.
DURATION_FIELDS: dict[EventKind, tuple[str | None, str]] = {
    EventKind.CREATED: ("urllib3.pool.connection.create_time", "connect_time_s"),
    EventKind.FAILED: ("urllib3.pool.connection.create_time", "connect_time_s"),
    EventKind.REUSED: ("urllib3.pool.connection.idle_time", "idle_time_s"),
    EventKind.DROPPED: ("urllib3.pool.connection.idle_time", "idle_time_s"),
    EventKind.DISCARDED: (None, "lifetime_s"),
    EventKind.CLOSED: (None, "lifetime_s"),
    EventKind.WAIT_ENDED: (None, "wait_time_s"),
    EventKind.WAIT_TIMED_OUT: (None, "wait_time_s"),
}


def _plain(value: Any) -> Any:
    return value.value if isinstance(value, enum.Enum) else value


def span_event_attributes(event: PoolEvent) -> dict[str, Any]:
    """An event's OpenTelemetry attributes, for a span event on the request's span."""
    attrs = event.key.attributes()
    for name, otel, _ in EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None and otel is not None:
            attrs[otel] = _plain(value)
    otel_duration = DURATION_FIELDS.get(event.kind, (None, ""))[0]
    if otel_duration is not None:
        if event.duration is not None:
            attrs[otel_duration] = event.duration
        elif event.kind is EventKind.CREATED or event.kind is EventKind.FAILED:
            attrs[otel_duration] = 0.0  # a connect is always timed; 0.0 if it was not
    return attrs


def log_fields(event: PoolEvent) -> dict[str, Any]:
    """An event's structured log fields, for a record's ``extra``; only those that apply."""
    key = event.key
    extra: dict[str, Any] = {"poolscope_event": event.kind.value}
    for name, _, log_name in KEY_FIELDS:
        value = getattr(key, name)
        if value is not None and log_name is not None:
            extra[log_name] = value
    for name, _, log_name in EVENT_FIELDS:
        value = getattr(event, name)
        if value is not None and log_name is not None:
            extra[log_name] = _plain(value)
    if event.duration is not None:
        extra[DURATION_FIELDS.get(event.kind, (None, "duration_s"))[1]] = event.duration
    if event.kind is EventKind.WAIT_STARTED:
        extra["pool_timeout_s"] = event.timeout  # None: no timeout, which is worth saying
    return extra
