"""The public surface: what instrument_session accepts, refuses, covers and gives back."""

from __future__ import annotations

import logging
import subprocess
import sys
import types
from typing import Any

import pytest
import requests
import urllib3
import urllib3.poolmanager
from requests.adapters import BaseAdapter, HTTPAdapter
from urllib3.connection import HTTPConnection
from urllib3.connectionpool import HTTPConnectionPool

import poolscope
from poolscope.config import get_recorder
from poolscope.core.sink import Sink
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics


def test_exported_names_are_exactly_the_public_surface() -> None:
    assert sorted(poolscope.__all__) == poolscope.__all__
    # Submodules (poolscope.core, poolscope.loopback, ...) are attributes too, not exports.
    public = {
        n
        for n, v in vars(poolscope).items()
        if not n.startswith("_") and not isinstance(v, types.ModuleType)
    } - {"annotations"}
    assert public | {"__version__"} == set(poolscope.__all__)


def test_returns_the_session_and_is_idempotent(metrics: Metrics, server: LoopbackServer) -> None:
    s = requests.Session()
    assert poolscope.instrument_session(s, meter_provider=metrics.provider) is s
    assert poolscope.instrument_session(s, meter_provider=metrics.provider) is s
    s.get(server.url)
    s.get(server.url)
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connections.created") == 1
    assert metrics.value(points, "urllib3.pool.connections.reused") == 1


@pytest.mark.parametrize(
    ("kwargs", "error", "words"),
    [
        ({"mode": "bogus"}, ValueError, "mode must be 'otel'"),
        ({"meter_provider": "nope"}, TypeError, "meter_provider must be an opentelemetry"),
        ({"tracer_provider": 3}, TypeError, "tracer_provider must be an opentelemetry"),
        (
            {"mode": "logging", "meter_provider": None, "tracer_provider": object()},
            ValueError,
            "takes no",
        ),
    ],
)
def test_bad_options_raise_and_change_nothing(
    kwargs: dict[str, Any], error: type, words: str
) -> None:
    s = requests.Session()
    with pytest.raises(error, match=words) as info:
        poolscope.instrument_session(s, **kwargs)
    assert str(info.value).endswith(".")
    assert type(s.get_adapter("http://x").poolmanager) is urllib3.PoolManager
    assert "_poolscope" not in vars(s)


def test_not_a_session_is_refused() -> None:
    with pytest.raises(TypeError, match=r"takes a requests\.Session, not PoolManager"):
        poolscope.instrument_session(urllib3.PoolManager())  # type: ignore[type-var]


def test_other_options_on_an_instrumented_session_are_refused(metrics: Metrics) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    with pytest.raises(ValueError, match="uninstrument_session"):
        poolscope.instrument_session(s, mode="logging")


class CustomTransport(BaseAdapter):
    def send(self, *args: Any, **kwargs: Any) -> Any:
        raise NotImplementedError

    def close(self) -> None:
        pass


def test_a_custom_transport_is_left_alone_and_named_once(
    metrics: Metrics, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="poolscope")
    s = requests.Session()
    s.mount("mock://", CustomTransport())
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    (record,) = caplog.records
    assert "'mock://' (CustomTransport)" in record.getMessage()
    assert "not a requests HTTPAdapter" in record.getMessage()


def test_adapters_mounted_later_are_covered_by_calling_again(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    s.mount(server.url, HTTPAdapter())
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    s.get(server.url)
    assert metrics.value(metrics.collect(), "urllib3.pool.connections.created") == 1


def test_pools_made_before_instrumenting_are_observed(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = requests.Session()
    s.get(server.url)  # a pool and an idle connection exist before poolscope
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    s.get(server.url)
    s.get(server.url)
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connections.created") == 0
    assert metrics.value(points, "urllib3.pool.connections.reused") == 2
    assert (
        metrics.value(points, "http.client.open_connections", http__connection__state="idle") == 1
    )
    assert server.connections == 1


def test_uninstrument_gives_back_exactly_what_was_there(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = requests.Session()
    s.get(server.url)
    adapter = s.get_adapter(server.url)
    pm = adapter.poolmanager
    (pool,) = [pm.pools[k] for k in pm.pools.keys()]
    queue_cls = type(pool.pool)
    (conn,) = [c for c in pool.pool.queue if c is not None]
    before = (
        type(pm),
        pm.pool_classes_by_scheme,
        pm.pools.dispose_func,
        type(pool),
        queue_cls,
        type(conn),
    )

    poolscope.instrument_session(s, meter_provider=metrics.provider)
    s.get(server.url)
    s.get(server.url + "/close")
    s.get(server.url)  # reconnects the same connection object
    assert type(pool) is not before[3] and pm.pool_classes_by_scheme is not before[1]
    poolscope.uninstrument_session(s)

    assert (
        type(pm),
        pm.pool_classes_by_scheme,
        pm.pools.dispose_func,
        type(pool),
        type(pool.pool),
        type(conn),
    ) == before
    assert pm.pool_classes_by_scheme is urllib3.poolmanager.pool_classes_by_scheme
    assert type(conn) is HTTPConnection and type(pool) is HTTPConnectionPool
    assert (
        "_poolscope" not in vars(s)
        and "_poolscope" not in vars(pm)
        and "_new_pool" not in vars(pm)
        and "_poolscope" not in vars(conn)
    )
    points = metrics.collect()
    reused = metrics.value(points, "urllib3.pool.connections.reused")
    s.get(server.url)  # still works, reports nothing
    assert metrics.value(metrics.collect(), "urllib3.pool.connections.reused") == reused
    assert metrics.value(metrics.collect(), "http.client.open_connections") == 0


def test_public_classes_take_exactly_their_parents_arguments(server: LoopbackServer) -> None:
    # No SDK configured: they report to the global (no-op) providers and work as urllib3's.
    pool = poolscope.InstrumentedHTTPConnectionPool(
        "127.0.0.1", server.port, maxsize=2, block=False
    )
    assert pool.request("GET", "/").data == b"ok"
    assert str(pool) == f"HTTPConnectionPool(host='127.0.0.1', port={server.port})"
    pm = poolscope.InstrumentedPoolManager(num_pools=2, maxsize=3)
    assert pm.request("GET", server.url).status == 200
    assert isinstance(pm.connection_from_url(server.url), poolscope.InstrumentedHTTPConnectionPool)
    stats = get_recorder("otel").kept(poolscope.PoolKey("http", "127.0.0.1", server.port))
    assert stats is not None and stats.created == 2


def test_instrumented_adapter_is_a_drop_in(metrics: Metrics, server: LoopbackServer) -> None:
    s = requests.Session()
    s.mount(
        "http://",
        poolscope.InstrumentedHTTPAdapter(pool_maxsize=4, meter_provider=metrics.provider),
    )
    s.get(server.url)
    s.get(server.url)
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connections.created") == 1
    assert metrics.value(points, "urllib3.pool.connections.reused") == 1


def test_a_failing_sink_never_breaks_a_request(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer, metrics: Metrics
) -> None:
    class Broken(Sink):
        kinds = frozenset(poolscope.EventKind)

        def handle(self, event: Any) -> None:
            raise RuntimeError("sink is broken")

    caplog.set_level(logging.WARNING, logger="poolscope")
    recorder = get_recorder("otel", metrics.provider)
    recorder.add_sink(Broken())
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    assert [s.get(server.url).text for _ in range(3)] == ["ok"] * 3
    warnings = [r for r in caplog.records if "Broken raised" in r.getMessage()]
    assert len(warnings) == 1  # reported once, not per request
    assert metrics.value(metrics.collect(), "urllib3.pool.connections.reused") == 2


def test_an_event_only_gated_sinks_want_is_handed_over_only_while_a_gate_opens(
    server: LoopbackServer, server_b: LoopbackServer, metrics: Metrics
) -> None:
    # The span sink's case (evictions, with no span current): such an event is not built.
    class Gated(Sink):
        kinds = frozenset({poolscope.EventKind.EVICTED, poolscope.EventKind.CREATED})
        gated_kinds = frozenset({poolscope.EventKind.EVICTED})

        def __init__(self) -> None:
            self.open = False
            self.seen: list[str] = []

        def gate(self) -> bool:
            return self.open

        def handle(self, event: Any) -> None:
            self.seen.append(event.kind.value)

    gated = Gated()
    get_recorder("otel", metrics.provider).add_sink(gated)
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_connections=1))
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    for url in (server.url, server_b.url):  # the second evicts the first's pool
        s.get(url)
    gated.open = True
    s.get(server.url)  # evicts the second's
    assert gated.seen == [
        "connection_created",
        "connection_created",
        "pool_evicted",
        "connection_created",
    ]
    assert metrics.value(metrics.collect(), "urllib3.pool.evictions") == 2


def test_a_failing_tracer_never_breaks_a_request(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer, metrics: Metrics
) -> None:
    from opentelemetry.sdk.trace import TracerProvider

    class BrokenTracerProvider(TracerProvider):
        def get_tracer(self, *args: Any, **kwargs: Any) -> Any:
            tracer = super().get_tracer(*args, **kwargs)

            class Broken(type(tracer)):  # type: ignore[misc]
                def start_span(self, *a: Any, **k: Any) -> Any:
                    raise RuntimeError("tracer is broken")

            tracer.__class__ = Broken
            return tracer

    caplog.set_level(logging.WARNING, logger="poolscope")
    provider = BrokenTracerProvider()
    s = poolscope.instrument_session(
        requests.Session(), meter_provider=metrics.provider, tracer_provider=provider
    )
    tracer = provider.get_tracer("app")
    assert [s.get(server.url).text for _ in range(3)] == ["ok"] * 3
    with pytest.raises(RuntimeError):
        tracer.start_span("x")
    warnings = [r for r in caplog.records if "SpanSink raised" in r.getMessage()]
    assert len(warnings) == 1
    assert metrics.value(metrics.collect(), "urllib3.pool.connections.reused") == 2


def test_a_failing_meter_or_exporter_never_breaks_a_request(
    caplog: pytest.LogCaptureFixture, server: LoopbackServer
) -> None:
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor, SpanExporter

    class BrokenMeterProvider(MeterProvider):
        def get_meter(self, *args: Any, **kwargs: Any) -> Any:
            meter = super().get_meter(*args, **kwargs)
            original = meter.create_histogram

            def create_histogram(*a: Any, **k: Any) -> Any:
                histogram = original(*a, **k)

                def record(*_: Any, **__: Any) -> None:
                    raise RuntimeError("meter is broken")

                histogram.record = record
                return histogram

            meter.create_histogram = create_histogram
            return meter

    class BrokenExporter(SpanExporter):
        def export(self, spans: Any) -> Any:
            raise RuntimeError("exporter is broken")

    caplog.set_level(logging.WARNING)
    reader = InMemoryMetricReader()
    meters = BrokenMeterProvider(metric_readers=[reader])
    tracers = TracerProvider()
    tracers.add_span_processor(SimpleSpanProcessor(BrokenExporter()))
    s = poolscope.instrument_session(
        requests.Session(), meter_provider=meters, tracer_provider=tracers
    )
    url = server.url
    assert [s.get(url).text for _ in range(3)] + [s.get(url + "/close").text] == ["ok"] * 4
    # The histograms' samples are recorded when a reader collects (poolscope.sinks.pending):
    # that is where the broken meter raises, and a collection is not a request either.
    data = reader.get_metrics_data()
    assert data is not None  # counters still read at collection time
    names = {m.name for rm in data.resource_metrics for sm in rm.scope_metrics for m in sm.metrics}
    assert "urllib3.pool.connections.reused" in names
    assert s.get(url).text == "ok" and reader.get_metrics_data() is not None
    ours = [r for r in caplog.records if r.name == "poolscope"]
    assert len(ours) == 1 and "MetricsSink raised" in ours[0].getMessage()  # once, not per call
    meters.shutdown()
    tracers.shutdown()


def test_a_failing_log_handler_never_breaks_a_request(server: LoopbackServer) -> None:
    # logging.Handler.handle() calls emit() unguarded: a handler written without
    # handleError() raises into whoever logs. In logging mode that is poolscope's sink.
    class BrokenHandler(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            raise RuntimeError("handler is broken")

    class Collect(logging.Handler):
        def __init__(self) -> None:
            super().__init__(logging.WARNING)
            self.records: list[logging.LogRecord] = []

        def emit(self, record: logging.LogRecord) -> None:
            self.records.append(record)

    pool_log, ours = logging.getLogger("poolscope.pool"), logging.getLogger("poolscope")
    broken, collect = BrokenHandler(logging.DEBUG), Collect()
    pool_log.addHandler(broken)
    pool_log.setLevel(logging.DEBUG)
    ours.addHandler(collect)
    try:
        with pytest.raises(RuntimeError):  # the handler does raise when called directly
            pool_log.info("x")
        s = poolscope.instrument_session(requests.Session(), mode="logging")
        texts = [s.get(server.url).text for _ in range(3)] + [s.get(server.url + "/close").text]
        assert texts == ["ok"] * 4
        warnings = [r for r in collect.records if r.name == "poolscope"]
        assert len(warnings) == 1 and "LoggingSink raised" in warnings[0].getMessage()
    finally:
        pool_log.removeHandler(broken)
        pool_log.setLevel(logging.NOTSET)
        ours.removeHandler(collect)


def test_every_entry_point_takes_report(server: LoopbackServer) -> None:
    s = requests.Session()
    s.mount("http://", poolscope.InstrumentedHTTPAdapter(mode="logging", report=True))
    assert s.get(server.url).text == "ok"
    pm = poolscope.InstrumentedPoolManager(mode="logging", report=True)
    assert pm.request("GET", server.url).status == 200
    mine = [p for p in poolscope.report().pools if p.port == server.port]
    assert [(p.requests, p.created) for p in mine] == [(2, 2)]


def test_a_pickled_or_copied_adapter_keeps_its_mode(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    import copy
    import pickle

    caplog.set_level(logging.DEBUG, logger="poolscope.pool")
    adapter = poolscope.InstrumentedHTTPAdapter(mode="logging", pool_maxsize=3)
    for again in (pickle.loads(pickle.dumps(adapter)), copy.deepcopy(adapter)):
        s = requests.Session()
        s.mount("http://", again)
        caplog.clear()
        assert s.get(server.url).text == "ok"
        created = [r for r in caplog.records if r.poolscope_event == "connection_created"]
        assert len(created) == 1 and created[0].server_port == server.port
        assert again.poolmanager.connection_pool_kw["maxsize"] == 3


def test_a_pickled_or_copied_session_is_instrumented_again_with_its_mode(
    server: LoopbackServer, caplog: pytest.LogCaptureFixture
) -> None:
    import copy
    import pickle

    caplog.set_level(logging.DEBUG, logger="poolscope.pool")
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=3))
    s.headers["X-Kept"] = "yes"
    s = poolscope.instrument_session(s, mode="logging")
    copies = [pickle.loads(pickle.dumps(s)), copy.copy(s), copy.deepcopy(s)]
    for again in copies:
        assert again is not s and again.headers["X-Kept"] == "yes"
        caplog.clear()
        assert again.get(server.url).text == "ok"
        assert again.get(server.url).text == "ok"
        events = [r.poolscope_event for r in caplog.records if r.server_port == server.port]
        assert events.count("connection_reused") == 1, events
        assert again.get_adapter(server.url).poolmanager.connection_pool_kw["maxsize"] == 3
        # The copy says how it reports, as the original does: instrumenting it otherwise
        # names both configurations.
        with pytest.raises(ValueError, match="mode='logging'"):
            poolscope.instrument_session(again)
    poolscope.uninstrument_session(s)
    assert "__reduce_ex__" not in vars(s)
    plain = pickle.loads(pickle.dumps(s))
    assert not hasattr(plain, "_poolscope")


def test_a_copied_session_keeps_its_providers(metrics: Metrics, server: LoopbackServer) -> None:
    import copy

    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    for again in (copy.copy(s), copy.deepcopy(s)):
        assert again.get(server.url).text == "ok"
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connections.created", server__port=server.port) == 2


def test_an_adapter_mounted_after_instrument_session_is_covered(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    s.mount("http://", HTTPAdapter(pool_maxsize=3))
    for _ in range(3):
        s.get(server.url)
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connections.created") == 1
    assert metrics.value(points, "urllib3.pool.connections.reused") == 2
    poolscope.uninstrument_session(s)
    assert "mount" not in vars(s)


def test_report_without_asking_for_it_says_how_to() -> None:
    # The suite asks for the report elsewhere: a fresh interpreter has never been asked.
    out = subprocess.run(
        [sys.executable, "-c", "import poolscope; poolscope.report()"],
        capture_output=True,
        text=True,
    )
    assert out.returncode == 1
    assert "RuntimeError: poolscope.report() has nothing to report: the report was never" in (
        out.stderr
    )
    assert "poolscope.instrument(report=True)" in out.stderr


def test_loopback_servers_in_a_row_never_share_an_origin() -> None:
    # The kernel hands a closed port out again now and then (about one bind in fifteen here over
    # 2,000); a report keyed by origin would then add one test's server to the last one's.
    ports = []
    for _ in range(2000):
        server = LoopbackServer("127.0.0.1")
        ports.append(server.port)
        server.stop()  # never started: closes at once
    assert len(set(ports)) == len(ports)
