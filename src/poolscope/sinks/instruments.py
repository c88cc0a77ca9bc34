"""The metrics' instruments as data: the observable counters (name, PoolStats field, unit,
description), the other observable instruments (kind, name, the method of
:class:`poolscope.sinks.meter.PoolMeter` that observes each, unit, description), the histograms'
bucket advice, and how a histogram is made on any opentelemetry-api. The README's metrics table
lists the same names."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

SHORT_BUCKETS = (
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
)
IDLE_BUCKETS = (0.001, 0.01, 0.1, 0.5, 1.0, 2.0, 5.0, 10.0, 15.0, 30.0, 60.0, 120.0, 300.0, 600.0)
# The buckets OpenTelemetry's semantic conventions advise for http.client.connection.duration.
DURATION_BUCKETS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)

# Each observable counter: its name, the PoolStats field it reads, its unit, its description.
COUNTERS: Sequence[tuple[str, str, str, str]] = (
    (
        "urllib3.pool.connections.created",
        "created",
        "{connection}",
        "Connections established (TCP, plus TLS for https), reconnects included.",
    ),
    (
        "urllib3.pool.connections.reused",
        "reused",
        "{connection}",
        "Requests sent on an already open pooled connection.",
    ),
    (
        "urllib3.pool.connections.dropped",
        "dropped",
        "{connection}",
        "Pooled connections found closed by the server when taken from the pool.",
    ),
    (
        "urllib3.pool.connections.discarded",
        "discarded",
        "{connection}",
        "Connections closed because they were returned to a full pool.",
    ),
    (
        "urllib3.pool.evictions",
        "evictions",
        "{pool}",
        "Pools pushed out of a PoolManager's cache of pool_connections pools.",
    ),
    (
        "urllib3.pool.wait.timeouts",
        "wait_timeouts",
        "{request}",
        "Requests that gave up waiting for a free connection (EmptyPoolError).",
    ),
    (
        "urllib3.pool.http2.stream_waits",
        "stream_waits",
        "{request}",
        "HTTP/2 requests (httpx) that waited for a free stream: every stream the server allows "
        "on their connection was in use.",
    ),
    (
        "urllib3.pool.requests.without_timeout",
        "no_read_timeout",
        "{request}",
        "Requests sent with no read timeout: a server that stops answering holds them.",
    ),
    (
        "urllib3.pool.connections.without_timeout",
        "no_connect_timeout",
        "{connection}",
        "Connections opened with no connect timeout.",
    ),
    (
        "urllib3.pool.timeouts.read",
        "read_timeouts",
        "{request}",
        "Read timeouts that fired (ReadTimeoutError), retried or not.",
    ),
    (
        "urllib3.pool.timeouts.connect",
        "connect_timeouts",
        "{connection}",
        "Connect timeouts that fired (ConnectTimeoutError), retried or not.",
    ),
)

# Each observable instrument with a callback of its own: its kind (create_observable_<kind>),
# name, the PoolMeter method that observes it, its unit and its description.
OBSERVED: Sequence[tuple[str, str, str, str, str]] = (
    (
        "counter",
        "urllib3.pool.connections.failed",
        "_observe_failed",
        "{connection}",
        "Connection attempts that failed, by error.type.",
    ),
    (
        "counter",
        "urllib3.pool.retries",
        "_observe_retries",
        "{request}",
        "Requests urllib3 retried after a connection error, by error.type.",
    ),
    (
        "counter",
        "urllib3.pool.errors",
        "_observe_errors",
        "{request}",
        "Errors that reached the program (no retry left or allowed), by error.type.",
    ),
    (
        "up_down_counter",
        "http.client.open_connections",
        "_observe_open",
        "{connection}",
        "Number of outbound HTTP connections that are currently active or idle.",
    ),
    (
        "gauge",
        "urllib3.pool.connections.max",
        "_observe_maxsize",
        "{connection}",
        "The most connections a pool of this host keeps (urllib3's maxsize, requests' "
        "pool_maxsize).",
    ),
    (
        "gauge",
        "urllib3.pool.connections.peak",
        "_observe_peak",
        "{connection}",
        "The most connections in use at once since the previous collection: a "
        "high-water mark, so that no peak between two scrapes is missed.",
    ),
    (
        "gauge",
        "urllib3.pool.library",
        "_observe_library",
        "{library}",
        "1 for the library that built a host's pools, named in poolscope.library (an "
        "info-style series: join it to the host's others on its host attributes).",
    ),
    (
        "up_down_counter",
        "urllib3.pool.wait.pending",
        "_observe_waiting",
        "{request}",
        "Requests waiting for a free connection right now (pool_block=True).",
    ),
)


def histogram(meter: Any, name: str, description: str, buckets: tuple[float, ...]) -> Any:
    try:
        return meter.create_histogram(
            name, unit="s", description=description, explicit_bucket_boundaries_advisory=buckets
        )
    except TypeError:  # opentelemetry-api before 1.23 has no bucket advice
        return meter.create_histogram(name, unit="s", description=description)
