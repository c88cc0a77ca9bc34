"""Connection spans, and links and events on the request's span, from a real SDK."""

from __future__ import annotations

import concurrent.futures
import itertools
import threading
import time

import pytest
import requests
import urllib3
from opentelemetry.trace import SpanKind, StatusCode
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.spans import Spans
from .support.threads import wait_for_waiters


def session(metrics: Metrics, spans: Spans, **adapter_kw: object) -> requests.Session:
    s = requests.Session()
    if adapter_kw:
        s.mount("http://", HTTPAdapter(**adapter_kw))  # type: ignore[arg-type]
    return poolscope.instrument_session(
        s, meter_provider=metrics.provider, tracer_provider=spans.provider
    )


def links_of(span: object) -> list[tuple[int, int]]:
    return [
        (link.context.span_id, link.attributes["urllib3.pool.connection.id"]) for link in span.links
    ]  # type: ignore[attr-defined]


def test_first_https_request_has_a_setup_span_with_three_phases(
    metrics: Metrics, spans: Spans, tls_server: LoopbackServer, ca_bundle: str
) -> None:
    s = session(metrics, spans)
    url = f"https://localhost:{tls_server.port}/"
    with spans.tracer.start_as_current_span("GET") as request_span:
        assert s.get(url, verify=ca_bundle).text == "ok"
    (setup,) = spans.named("HTTP connection_setup")
    assert setup.name == f"HTTP connection_setup localhost:{tls_server.port}"
    assert setup.parent is None  # a trace of its own
    assert setup.kind is SpanKind.INTERNAL
    assert setup.attributes["server.address"] == "localhost"
    assert setup.attributes["server.port"] == tls_server.port
    assert setup.attributes["network.peer.address"] == "127.0.0.1"
    assert setup.attributes["tls.protocol.version"] in ("1.2", "1.3")
    phases = spans.children(setup)
    assert [p.name for p in phases] == [
        "DNS lookup localhost",
        f"socket connect 127.0.0.1:{tls_server.port}",
        "TLS client handshake localhost",
    ]
    for before, after in itertools.pairwise(phases):
        assert before.end_time <= after.start_time
    assert setup.start_time <= phases[0].start_time and phases[-1].end_time <= setup.end_time
    assert all(p.status.status_code is StatusCode.UNSET for p in [setup, *phases])
    (request,) = [sp for sp in spans.finished() if sp.name == "GET"]
    assert request.context.span_id == request_span.get_span_context().span_id
    (conn_id,) = [setup.attributes["urllib3.pool.connection.id"]]
    assert links_of(request) == [(setup.context.span_id, conn_id)]


def test_reuse_names_the_connection_and_its_idle_time_on_the_request_span(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    s = session(metrics, spans)
    with spans.tracer.start_as_current_span("first"):
        s.get(server.url)
    time.sleep(0.05)
    with spans.tracer.start_as_current_span("second"):
        s.get(server.url)
    (setup,) = spans.named("HTTP connection_setup")
    assert [p.name for p in spans.children(setup)] == [f"socket connect 127.0.0.1:{server.port}"]
    first, second = (sp for sp in spans.finished() if sp.name in ("first", "second"))
    conn_id = setup.attributes["urllib3.pool.connection.id"]
    # The request that opened the connection links to its setup span and says so in an event;
    # the one that reused it carries two attributes (cheaper than a link or an event).
    assert links_of(first) == [(setup.context.span_id, conn_id)]
    assert [e.name for e in first.events] == ["urllib3.pool.connection_created"]
    assert "urllib3.pool.connection.idle_time" not in first.attributes
    assert second.links == () or list(second.links) == []
    assert second.events == () or list(second.events) == []
    assert second.attributes["urllib3.pool.connection.id"] == conn_id
    assert second.attributes["urllib3.pool.connection.idle_time"] >= 0.05


def test_reuse_with_no_real_span_current_sets_nothing_and_fails_nothing(
    metrics: Metrics, spans: Spans, server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    # The span sink reads the current span from the context by the key the API files it under
    # (learnt through set_span_in_context): something else stored under that key, or a span
    # that does not record, is nothing to act on, as get_current_span() would say.
    from opentelemetry import context, trace

    s = session(metrics, spans)
    s.get(server.url)  # the connection, opened outside any span
    key = next(iter(trace.set_span_in_context(trace.INVALID_SPAN, context.Context())))
    token = context.attach(context.set_value(key, "not a span"))
    try:
        assert s.get(server.url).text == "ok"
    finally:
        context.detach(token)
    with spans.tracer.start_as_current_span("outer"):
        unsampled = trace.NonRecordingSpan(trace.get_current_span().get_span_context())
        with trace.use_span(unsampled):
            assert s.get(server.url).text == "ok"
    with spans.tracer.start_as_current_span("traced"):
        assert s.get(server.url).text == "ok"
    outer, traced = (sp for sp in spans.finished() if sp.name in ("outer", "traced"))
    assert "urllib3.pool.connection.id" not in outer.attributes
    assert traced.attributes["urllib3.pool.connection.id"] >= 1
    assert metrics.value(metrics.collect(), "urllib3.pool.connections.reused") == 3
    assert "poolscope" not in caplog.text  # no sink failure reported


def test_stale_connection_is_a_dropped_event_and_a_new_setup_span(
    metrics: Metrics, spans: Spans
) -> None:
    with LoopbackServer("127.0.0.1", keepalive=0.1) as server:
        s = session(metrics, spans)
        s.get(server.url)
        time.sleep(0.4)
        with spans.tracer.start_as_current_span("after idle"):
            s.get(server.url)
    old, new = sorted(spans.named("HTTP connection_setup"), key=lambda sp: sp.start_time)
    (request,) = [sp for sp in spans.finished() if sp.name == "after idle"]
    assert [e.name for e in request.events] == [
        "urllib3.pool.connection_dropped",
        "urllib3.pool.connection_created",
    ]
    assert (
        request.events[0].attributes["urllib3.pool.connection.id"]
        == old.attributes["urllib3.pool.connection.id"]
    )
    assert request.events[0].attributes["urllib3.pool.connection.idle_time"] >= 0.3
    assert links_of(request) == [
        (new.context.span_id, new.attributes["urllib3.pool.connection.id"])
    ]


def test_a_busy_blocking_pool_gives_a_wait_span_covering_the_wait(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    s = session(metrics, spans, pool_maxsize=1, pool_block=True)
    holder = threading.Thread(target=s.get, args=(server.url + "/hold",))
    holder.start()
    while server.connections < 1:
        time.sleep(0.005)

    def waiter() -> None:
        with spans.tracer.start_as_current_span("waiter"):
            s.get(server.url)

    t = threading.Thread(target=waiter)
    t.start()
    pools = s.get_adapter(server.url).poolmanager.pools
    (pool,) = [pools[key] for key in pools.keys()]  # the holder's
    wait_for_waiters(pool.pool.not_empty, 1)  # waiting for the pool's one connection
    time.sleep(0.3)
    server.release()
    holder.join(10)
    t.join(10)
    (wait,) = spans.named("HTTP wait_for_connection")
    (request,) = [sp for sp in spans.finished() if sp.name == "waiter"]
    assert wait.name == f"HTTP wait_for_connection 127.0.0.1:{server.port}"
    assert wait.parent.span_id == request.context.span_id
    assert (wait.end_time - wait.start_time) / 1e9 >= 0.25
    assert request.start_time <= wait.start_time and wait.end_time <= request.end_time


def test_connect_failure_sets_error_status_and_type(
    metrics: Metrics, spans: Spans, refused_port: int
) -> None:
    s = session(metrics, spans)
    with spans.tracer.start_as_current_span("GET"), pytest.raises(requests.ConnectionError):
        s.get(f"http://127.0.0.1:{refused_port}/")
    (setup,) = spans.named("HTTP connection_setup")
    assert setup.status.status_code is StatusCode.ERROR
    assert setup.attributes["error.type"] == "urllib3.exceptions.NewConnectionError"
    (connect,) = spans.children(setup)
    assert connect.name == f"socket connect 127.0.0.1:{refused_port}"
    assert connect.status.status_code is StatusCode.ERROR


def test_threads_keep_their_own_request_spans(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    s = session(metrics, spans, pool_maxsize=4)

    def task(i: int) -> None:
        with spans.tracer.start_as_current_span(f"task-{i}"):
            s.get(server.url)

    with concurrent.futures.ThreadPoolExecutor(4) as pool:
        list(pool.map(task, range(40)))
    setups = {sp.context.span_id for sp in spans.named("HTTP connection_setup")}
    tasks = [sp for sp in spans.finished() if sp.name.startswith("task-")]
    assert len(tasks) == 40
    ids = {
        sp.attributes["urllib3.pool.connection.id"] for sp in spans.named("HTTP connection_setup")
    }
    # Every request span names exactly its own connection: a link to its setup span when it
    # opened it, the connection's id (with its idle time) when it reused it.
    opened = [sp for sp in tasks if sp.links]
    for sp in opened:
        assert len(sp.links) == 1 and sp.links[0].context.span_id in setups
    reused = [sp for sp in tasks if not sp.links]
    for sp in reused:
        assert sp.attributes["urllib3.pool.connection.id"] in ids
        assert sp.attributes["urllib3.pool.connection.idle_time"] >= 0
    assert len(opened) == len(setups) and len(reused) == 40 - len(setups)


def test_a_context_with_baggage_but_no_span_gets_nothing(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    from opentelemetry import baggage
    from opentelemetry import context as otel_context

    s = session(metrics, spans)
    s.get(server.url)  # the connection, outside any context
    token = otel_context.attach(baggage.set_baggage("tenant", "a"))
    try:
        assert s.get(server.url).text == "ok"  # a reuse in a context with no span
        with spans.tracer.start_as_current_span("inside"):  # and one with a span, and baggage
            s.get(server.url)
    finally:
        otel_context.detach(token)
    (inside,) = [sp for sp in spans.finished() if sp.name == "inside"]
    assert inside.attributes["urllib3.pool.connection.idle_time"] >= 0
    assert [sp.name for sp in spans.finished()] == [
        f"socket connect 127.0.0.1:{server.port}",
        f"HTTP connection_setup 127.0.0.1:{server.port}",
        "inside",
    ]


def test_nothing_is_recorded_when_no_span_records(metrics: Metrics, server: LoopbackServer) -> None:
    from opentelemetry.sdk.trace.sampling import ALWAYS_OFF

    off = Spans(sampler=ALWAYS_OFF)
    s = session(metrics, off)
    for _ in range(3):
        assert s.get(server.url).text == "ok"
    assert off.finished() == []
    off.provider.shutdown()


def test_with_the_requests_and_urllib3_instrumentations(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    from opentelemetry.instrumentation.requests import RequestsInstrumentor
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    RequestsInstrumentor().instrument(tracer_provider=spans.provider)
    URLLib3Instrumentor().instrument(tracer_provider=spans.provider)
    try:
        s = session(metrics, spans)
        s.get(server.url)
        s.get(server.url)
    finally:
        URLLib3Instrumentor().uninstrument()
        RequestsInstrumentor().uninstrument()
    ours = [sp for sp in spans.finished() if sp.instrumentation_scope.name == "poolscope"]
    assert [sp.name for sp in ours] == [
        f"socket connect 127.0.0.1:{server.port}",
        f"HTTP connection_setup 127.0.0.1:{server.port}",
    ]
    # The requests instrumentation's span per request (it suppresses urllib3's nested one);
    # none of them ours, and each links to the connection that served it.
    clients = [sp for sp in spans.finished() if sp.kind is SpanKind.CLIENT]
    assert [sp.instrumentation_scope.name for sp in clients] == [
        "opentelemetry.instrumentation.requests"
    ] * 2
    (setup,) = spans.named("HTTP connection_setup")
    conn_id = setup.attributes["urllib3.pool.connection.id"]
    assert links_of(clients[0]) == [(setup.context.span_id, conn_id)]
    assert links_of(clients[1]) == []
    assert clients[1].attributes["urllib3.pool.connection.id"] == conn_id
    assert clients[1].attributes["urllib3.pool.connection.idle_time"] >= 0


def test_with_the_urllib3_instrumentation_alone(
    metrics: Metrics, spans: Spans, server: LoopbackServer
) -> None:
    from opentelemetry.instrumentation.urllib3 import URLLib3Instrumentor

    URLLib3Instrumentor().instrument(tracer_provider=spans.provider)
    try:
        pm = poolscope.instrument_pool_manager(
            urllib3.PoolManager(), meter_provider=metrics.provider, tracer_provider=spans.provider
        )
        pm.request("GET", server.url)
        pm.request("GET", server.url)
    finally:
        URLLib3Instrumentor().uninstrument()
    clients = [sp for sp in spans.finished() if sp.kind is SpanKind.CLIENT]
    assert [sp.instrumentation_scope.name for sp in clients] == [
        "opentelemetry.instrumentation.urllib3"
    ] * 2
    (setup,) = spans.named("HTTP connection_setup")
    assert [link[0] for sp in clients for link in links_of(sp)] == [setup.context.span_id]
    assert (
        clients[1].attributes["urllib3.pool.connection.id"]
        == (setup.attributes["urllib3.pool.connection.id"])
    )


def test_discard_and_eviction_are_events_on_the_request_span(
    metrics: Metrics, spans: Spans, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    s = session(metrics, spans, pool_connections=1, pool_maxsize=1)

    def get(name: str, url: str) -> None:
        with spans.tracer.start_as_current_span(name):
            s.get(url)

    pair = [
        threading.Thread(target=get, args=(f"t{i}", server.url + "/together")) for i in range(2)
    ]
    for t in pair:
        t.start()
    for t in pair:
        t.join(10)
    get("other host", server_b.url)
    names = {sp.name: [e.name for e in sp.events] for sp in spans.finished()}
    # Whichever thread returned its connection second found the pool full.
    assert sorted([names["t0"], names["t1"]]) == [
        ["urllib3.pool.connection_created"],
        ["urllib3.pool.connection_created", "urllib3.pool.connection_discarded"],
    ]
    assert names["other host"] == ["urllib3.pool.pool_evicted", "urllib3.pool.connection_created"]
    (evicted,) = [
        e
        for sp in spans.finished()
        if sp.name == "other host"
        for e in sp.events
        if "evicted" in e.name
    ]
    assert evicted.attributes["server.address"] == "127.0.0.1"
    assert evicted.attributes["urllib3.pool.num_pools"] == 1
