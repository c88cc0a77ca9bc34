"""The OpenTelemetry tracing sink: connection spans, and links and events on request spans.

It follows the one published model for HTTP connection tracing, .NET 9's: a new connection is
an ``HTTP connection_setup`` span, its own trace root, with a child per phase (``DNS lookup``,
``socket connect``, ``TLS client handshake``); a request that waited for a free connection gets
an ``HTTP wait_for_connection`` child span; and the span current when a connection is taken
(the request span of opentelemetry-instrumentation-requests or -urllib3, or the user's own) gets,
for a new connection, a link to its ``connection_setup`` span and a ``connection_created`` event;
for a reused one, the attributes ``urllib3.pool.connection.id`` and
``urllib3.pool.connection.idle_time`` (the common case, kept cheap); and span events for the
rarer things that happened in the pool. poolscope never makes request spans of its own.
"""

from __future__ import annotations

import ipaddress
import time
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import trace
from opentelemetry.trace import SpanKind, Status, StatusCode

from .._version import __version__
from ..core.events import EventKind, PoolEvent, span_event_attributes
from ..core.sink import Sink
from .sdk import GLOBAL_TRACER_PROVIDER, SPAN_KEY, current_context, records_anything

_ROOT = otel_context.Context()  # an empty context: the setup span starts a trace of its own
# The classes of current spans that passed get_current_span()'s isinstance() test (the span is
# read from the context under SPAN_KEY, which skips that test: see poolscope.sinks.sdk).
_span_types: set[type[Any]] = set()


def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _tls_attributes(version: str | None) -> dict[str, Any]:
    # ssl reports "TLSv1.3"; semantic conventions want name "tls" and version "1.3".
    if not version:
        return {}
    name, _, number = version.partition("v")
    return {"tls.protocol.name": name.lower(), "tls.protocol.version": number or version}


class SpanSink(Sink):
    """Turns pool events into spans on one tracer; costs nothing where no span records."""

    kinds = frozenset(
        {
            EventKind.CREATED,
            EventKind.FAILED,
            EventKind.REUSED,
            EventKind.DROPPED,
            EventKind.DISCARDED,
            EventKind.EVICTED,
            EventKind.WAIT_ENDED,
            EventKind.WAIT_TIMED_OUT,
            EventKind.RETRIED,
        }
    )

    # The kinds it puts on the request's span: their events are built for it only while a span
    # that records is current (see gate()).
    gated_kinds = frozenset(
        {EventKind.DROPPED, EventKind.DISCARDED, EventKind.EVICTED, EventKind.RETRIED}
    )

    def __init__(self, tracer_provider: Any = None) -> None:
        self._provider = tracer_provider
        self._sdk = False  # a tracer provider that records spans was seen (it stays so)
        self._tracer = trace.get_tracer(
            "poolscope",
            __version__,
            tracer_provider=tracer_provider,
            schema_url="https://opentelemetry.io/schemas/1.26.0",
        )

    def wants_reuse(self) -> bool:
        """Only a tracer provider beyond the API's no-op can make a span that records."""
        if not self._sdk:
            if self._provider:
                self._sdk = records_anything(self._provider, "opentelemetry.trace")
            else:  # the global one, asked at every connect while none records
                self._sdk = GLOBAL_TRACER_PROVIDER.records()
        return self._sdk

    def wants_phases(self) -> bool:
        """Connection phases, for connection_setup's child spans, once an SDK is there."""
        return self.wants_reuse()

    def on_reuse(self, connection_id: int, idle: float | None) -> None:
        """A reuse: two attributes on the request's span, when one records (the common case
        of a traced service, so the cheapest path: see docs/decisions.md, "What a reused
        connection puts on the request span"). No span current costs one dictionary lookup."""
        span: Any = current_context().get(SPAN_KEY)
        if span is None:
            return
        if type(span) not in _span_types:  # get_current_span()'s test, once per class
            if not isinstance(span, trace.Span):
                return
            _span_types.add(type(span))
        if span.is_recording():
            span.set_attribute("urllib3.pool.connection.id", connection_id)
            if idle is not None:
                span.set_attribute("urllib3.pool.connection.idle_time", idle)

    def handle(self, event: PoolEvent) -> None:
        _HANDLERS[event.kind](self, event)  # one lookup: a new host brings two events here

    def _reuse(self, event: PoolEvent) -> None:
        # Reuses come through on_reuse; an event is taken too.
        self.on_reuse(event.connection_id or 0, event.duration)

    # -- connection_setup -------------------------------------------------------------------

    def _connection_setup(self, event: PoolEvent) -> None:
        timing = event.timing
        if timing is None or timing.end_ns is None:
            return
        key = event.key
        failed = event.kind is EventKind.FAILED
        attrs = key.attributes()
        attrs["urllib3.pool.connection.id"] = event.connection_id
        if timing.peer is not None:
            attrs["network.peer.address"], attrs["network.peer.port"] = timing.peer
        attrs.update(_tls_attributes(event.tls_version))
        span = self._tracer.start_span(
            f"HTTP connection_setup {key.host}:{key.port}",
            context=_ROOT,
            kind=SpanKind.INTERNAL,
            attributes=attrs,
            start_time=timing.start_ns,
        )
        if not span.is_recording():
            span.end(end_time=timing.end_ns)
            return
        parent = trace.set_span_in_context(span)
        # Which phase a failure happened in: the first one that did not finish.
        failed_in = None
        if failed:
            if timing.connect_start_ns is None:
                failed_in = "dns" if timing.dns_start_ns is not None else "setup"
            elif timing.connect_end_ns is None:
                failed_in = "connect"
            else:
                failed_in = "tls"
        if timing.dns_start_ns is not None and not _is_ip(key.host):
            self._phase(
                f"DNS lookup {key.host}",
                parent,
                timing.dns_start_ns,
                timing.dns_end_ns or timing.end_ns,
                {"dns.question.name": key.host},
                event.error_type if failed_in == "dns" else None,
            )
        if timing.connect_start_ns is not None:
            peer_attrs: dict[str, Any] = {}
            name = "socket connect"
            if timing.peer is not None:
                peer_attrs = {
                    "network.peer.address": timing.peer[0],
                    "network.peer.port": timing.peer[1],
                }
                name = f"socket connect {timing.peer[0]}:{timing.peer[1]}"
            self._phase(
                name,
                parent,
                timing.connect_start_ns,
                timing.connect_end_ns or timing.end_ns,
                peer_attrs,
                event.error_type if failed_in == "connect" else None,
            )
        if key.scheme == "https" and timing.connect_end_ns is not None:
            self._phase(
                f"TLS client handshake {key.host}",
                parent,
                timing.connect_end_ns,
                timing.end_ns,
                {"server.address": key.host, **_tls_attributes(event.tls_version)},
                event.error_type if failed_in == "tls" else None,
            )
        if failed:
            span.set_attribute("error.type", event.error_type or "_OTHER")
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=timing.end_ns)
        setup = span.get_span_context()
        current = trace.get_current_span()
        if current.is_recording():
            _link(current, setup, event.connection_id)
            name = "connection_failed" if failed else "connection_created"
            current.add_event(f"urllib3.pool.{name}", span_event_attributes(event))

    def _phase(
        self,
        name: str,
        parent: otel_context.Context,
        start_ns: int,
        end_ns: int,
        attrs: dict[str, Any],
        error: str | None,
    ) -> None:
        span = self._tracer.start_span(
            name, context=parent, kind=SpanKind.INTERNAL, attributes=attrs, start_time=start_ns
        )
        if error is not None:
            span.set_attribute("error.type", error)
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)

    # -- the request's own span -------------------------------------------------------------

    def _wait_span(self, event: PoolEvent) -> None:
        if not trace.get_current_span().is_recording():
            return
        key = event.key
        end_ns = time.time_ns()
        start_ns = end_ns - int((event.duration or 0.0) * 1e9)
        span = self._tracer.start_span(
            f"HTTP wait_for_connection {key.host}:{key.port}",
            kind=SpanKind.INTERNAL,
            attributes={**key.attributes(), "urllib3.pool.maxsize": event.pool_maxsize or 0},
            start_time=start_ns,
        )
        if event.kind is EventKind.WAIT_TIMED_OUT:
            span.set_attribute("error.type", event.error_type or "_OTHER")
            span.set_status(Status(StatusCode.ERROR))
        span.end(end_time=end_ns)

    def gate(self) -> bool:
        """Whether a span that records is current, for the events it would put on it: an
        eviction comes with every new host past a manager's num_pools, most often with no
        span current, and then no event is built for this sink."""
        current: Any = current_context().get(SPAN_KEY)
        return current is not None and _recording(current) is not None

    def _on_request_span(self, event: PoolEvent) -> None:
        current: Any = current_context().get(SPAN_KEY)
        if current is not None and (current := _recording(current)) is not None:
            current.add_event(f"urllib3.pool.{event.kind.value}", span_event_attributes(event))


def _recording(current: Any) -> Any:
    """What the context holds under the current span's key (not None), if a span that
    records, else None: get_current_span()'s test, read as on_reuse() does (the context's
    key, the Span test once per class)."""
    if type(current) not in _span_types:
        if not isinstance(current, trace.Span):
            return None
        _span_types.add(type(current))
    return current if current.is_recording() else None


# What handle() does with each kind it takes (SpanSink.kinds): the rest of them (dropped,
# discarded, evicted, retried) are events on the request's span.
_HANDLERS = {
    **{kind: SpanSink._on_request_span for kind in SpanSink.kinds},
    EventKind.REUSED: SpanSink._reuse,
    EventKind.CREATED: SpanSink._connection_setup,
    EventKind.FAILED: SpanSink._connection_setup,
    EventKind.WAIT_ENDED: SpanSink._wait_span,
    EventKind.WAIT_TIMED_OUT: SpanSink._wait_span,
}


def _link(span: Any, setup: trace.SpanContext, connection_id: int | None) -> None:
    add_link = getattr(span, "add_link", None)  # opentelemetry-api 1.23+
    if add_link is not None and setup.is_valid:
        add_link(setup, {"urllib3.pool.connection.id": connection_id or 0})
