"""The event model: what happened in a connection pool, reported once and read by every sink."""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, NamedTuple

if TYPE_CHECKING:
    from ._phases import ConnectTiming


class PoolKey(NamedTuple):
    """The pool an event belongs to: one urllib3 connection pool per (scheme, host, port).

    ``proxy`` is ``scheme://host:port`` of the proxy the pool goes through (never its
    credentials), or None. Through an HTTPS tunnel (``CONNECT``) the pool is the target's; for
    plain HTTP forwarding the connections are the proxy's, so the pool is the proxy's too.
    """

    scheme: str
    host: str
    port: int
    proxy: str | None = None

    def attributes(self) -> dict[str, Any]:
        """The OpenTelemetry attributes naming this pool, for metrics and spans alike."""
        attrs: dict[str, Any] = {
            "url.scheme": self.scheme,
            "server.address": self.host,
            "server.port": self.port,
        }
        if self.proxy is not None:
            attrs["urllib3.pool.proxy"] = self.proxy
        return attrs

    @property
    def origin(self) -> str:
        """``scheme://host:port``, with IPv6 literals in brackets; never a path or credentials."""
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
    WAITED = "wait_ended"
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


@dataclass(slots=True)
class PoolEvent:
    """One thing that happened in a pool. Built only when a sink listens; treat as read-only.

    ``duration`` is in seconds and means, by kind: connect time (created, failed), idle time
    (reused), lifetime (dropped, discarded, closed), time waited (wait_ended, wait_timed_out).
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


def error_type(exc: BaseException) -> str:
    """The ``error.type`` of an exception: its fully qualified class name (builtins unqualified)."""
    cls = type(exc)
    if cls.__module__ == "builtins":
        return cls.__qualname__
    return f"{cls.__module__}.{cls.__qualname__}"


def records_anything(provider: object, api_package: str) -> bool:
    """Whether an OpenTelemetry provider can record: the API's own providers (the global
    proxy before an SDK is set, the no-op ones) live in the API package and record nothing."""
    module = type(provider).__module__
    return not (module == api_package or module.startswith(api_package + "."))
