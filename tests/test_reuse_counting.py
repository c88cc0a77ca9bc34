"""With no OpenTelemetry SDK behind it, poolscope runs no code of its own per reused request
beyond one test in the pool queue's: nothing would record a reuse. Everything else is counted
exactly as with an SDK, and once one is configured later (seen at the next connection any pool
makes, or at a metrics reader's first collection) every pool counts reuses and idle
connections from then on."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
import requests
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import poolscope
from poolscope.config import get_recorder
from poolscope.core.recorder import Recorder
from poolscope.instrumentation.pools import CheckoutHookMixin
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.scripted import CloseOnReuse
from .support.threads import in_two_threads

FIELDS = (
    "created",
    "reused",
    "dropped",
    "discarded",
    "closed",
    "open",
    "idle",
    "peak_in_use",
    "waits",
    "failed",
    "retries",
)


def keep_alive(s: requests.Session) -> None:
    with LoopbackServer("127.0.0.1") as srv:
        for _ in range(5):
            assert s.get(srv.url).text == "ok"
        s.close()


def stale(s: requests.Session) -> None:
    with LoopbackServer("127.0.0.1", keepalive=0.1) as srv:
        s.get(srv.url)
        time.sleep(0.4)
        s.get(srv.url)
        s.get(srv.url)
        s.close()


def pool_full(s: requests.Session) -> None:
    s.mount("http://", HTTPAdapter(pool_maxsize=1))
    poolscope.instrument_session(s, **s.poolscope_options)  # type: ignore[attr-defined]
    with LoopbackServer("127.0.0.1") as srv:
        for _ in range(2):
            in_two_threads(s, srv.url + "/together")
        s.close()


def retried_race(s: requests.Session) -> None:
    s.mount("http://", HTTPAdapter(max_retries=Retry(total=1, backoff_factor=0)))
    poolscope.instrument_session(s, **s.poolscope_options)  # type: ignore[attr-defined]
    srv = CloseOnReuse()
    # urllib3's "Retrying ..." record holds the error, whose traceback holds the pool: kept by
    # pytest's log capture, it would keep the pool's connections open past the scenario.
    urllib3_log = logging.getLogger("urllib3.connectionpool")
    urllib3_log.disabled = True
    try:
        s.get(srv.url)
        s.get(srv.url)  # the server closes as the connection is reused; urllib3 retries
        s.get(srv.url)
        s.close()
    finally:
        urllib3_log.disabled = False
        srv.close()


def read_timeout(s: requests.Session) -> None:
    with LoopbackServer("127.0.0.1") as srv:
        s.get(srv.url)
        with pytest.raises(requests.ReadTimeout):
            s.get(srv.url + "/hold", timeout=0.2)
        srv.release()
        s.get(srv.url)
        s.close()


def server_closes_and_unread_stream(s: requests.Session) -> None:
    with LoopbackServer("127.0.0.1") as srv:
        s.get(srv.url)
        s.get(srv.url + "/close")
        s.get(srv.url)
        r = s.get(srv.url, stream=True)
        r.close()
        s.get(srv.url)
        s.close()


SCENARIOS: list[Callable[[requests.Session], None]] = [
    keep_alive,
    stale,
    pool_full,
    retried_race,
    read_timeout,
    server_closes_and_unread_stream,
]


def run(
    scenario: Callable[[requests.Session], None], **options: Any
) -> tuple[dict[str, Any], bool]:
    """The scenario's counters, summed over its pools once all is closed, and whether its
    pools had the checkout hook. Each run has providers of its own, hence a recorder."""
    recorder = get_recorder("otel", options.get("meter_provider"), options.get("tracer_provider"))
    hooked = _play(scenario, options)
    gc.collect()  # urllib3 2 closes a cleared pool's connections when the pool is collected
    totals: dict[str, Any] = {}
    for stats in recorder.all_stats():
        for field in FIELDS:
            value = getattr(stats, field)
            if isinstance(value, dict):
                merged = totals.setdefault(field, {})
                for k, v in value.items():
                    merged[k] = merged.get(k, 0) + v
            else:
                totals[field] = totals.get(field, 0) + value
    assert len(hooked) == 1, hooked
    return totals, hooked.pop()


def _play(scenario: Callable[[requests.Session], None], options: dict[str, Any]) -> set[bool]:
    s = requests.Session()
    s.poolscope_options = options  # type: ignore[attr-defined]
    poolscope.instrument_session(s, **options)
    hooked: set[bool] = set()
    original = s.get

    def get(url: str, **kw: Any) -> Any:
        response = original(url, **kw)
        pools = s.get_adapter(url).poolmanager.pools
        hooked.update(isinstance(p, CheckoutHookMixin) for p in pools._container.values())
        return response

    s.get = get  # type: ignore[method-assign]
    scenario(s)
    return hooked


# What a pool counts on its rare paths (connects, closes, waits, retries), whether or not some
# sink acts on reuses; reuses, idle connections and the peak in use are counted in the queue.
RARE_PATH = ("created", "dropped", "discarded", "closed", "open", "waits", "failed", "retries")


def api_only() -> dict[str, Any]:
    """OpenTelemetry's API with nothing behind it: what a process without an SDK has."""
    return {"meter_provider": NoOpMeterProvider(), "tracer_provider": NoOpTracerProvider()}


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_with_nothing_acting_on_reuses_pools_count_all_but_reuses_and_idle_connections(
    scenario: Callable[[requests.Session], None],
) -> None:
    quiet, quiet_hooked = run(scenario, **api_only())
    counting, counting_hooked = run(scenario, meter_provider=Metrics().provider)
    assert not quiet_hooked and counting_hooked
    assert {f: quiet[f] for f in RARE_PATH} == {f: counting[f] for f in RARE_PATH}
    assert quiet["reused"] == quiet["idle"] == quiet["peak_in_use"] == 0
    assert counting["reused"] > 0 and counting["peak_in_use"] > 0
    assert quiet["open"] == counting["open"] == counting["idle"] == 0
    assert quiet["created"] == quiet["closed"]


def test_expected_counts_with_nothing_acting_on_reuses() -> None:
    quiet, _ = run(stale, **api_only())
    assert (quiet["created"], quiet["dropped"], quiet["closed"], quiet["reused"]) == (2, 1, 2, 0)
    quiet, _ = run(retried_race, **api_only())
    assert quiet["retries"] == {"http.client.RemoteDisconnected": 1}
    assert (quiet["created"], quiet["closed"]) == (2, 2)
    counting, _ = run(stale, meter_provider=Metrics().provider)
    assert (counting["created"], counting["dropped"], counting["reused"]) == (2, 1, 1)


LATE_SDK = textwrap.dedent(
    """
    import requests
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import poolscope
    from poolscope.loopback import LoopbackServer
    from poolscope.instrumentation.pools import CheckoutHookMixin
    from poolscope.instrumentation import phases as _phases

    s = poolscope.instrument_session(requests.Session())
    with LoopbackServer("127.0.0.1") as a, LoopbackServer("127.0.0.2") as b:
        s.get(a.url); s.get(a.url)
        pool_a = s.get_adapter(a.url).poolmanager.connection_from_url(a.url)
        print("before", isinstance(pool_a, CheckoutHookMixin), _phases._installed)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("test")
        with tracer.start_as_current_span("first"):
            s.get(b.url)
        with tracer.start_as_current_span("second"):
            s.get(b.url)
        pool_b = s.get_adapter(b.url).poolmanager.connection_from_url(b.url)
        names = sorted(sp.name for sp in exporter.get_finished_spans())
        second = [sp for sp in exporter.get_finished_spans() if sp.name == "second"][0]
        print("after", isinstance(pool_b, CheckoutHookMixin), _phases._installed)
        print("spans", names)
        print("reused", second.attributes.get("urllib3.pool.connection.id") is not None)
    """
)


def test_an_sdk_configured_later_gets_the_hook_for_new_connections() -> None:
    lines = run_without_otel_environment(LATE_SDK)
    assert lines[0] == "before False False"  # no SDK: no hook, no audit hook either
    assert lines[1] == "after True True"
    assert "'HTTP connection_setup 127.0.0.2:" in lines[2]  # with its phases, from the hook
    assert "'socket connect 127.0.0.2:" in lines[2]
    assert lines[3] == "reused True"  # the reuse, on the request span, from the hook


LATE_SDK_SAME_POOL = textwrap.dedent(
    """
    import requests
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import poolscope
    from poolscope.loopback import LoopbackServer

    s = poolscope.instrument_session(requests.Session())
    with LoopbackServer("127.0.0.1") as a:
        s.get(a.url); s.get(a.url)
        (pool,) = s.get_adapter(a.url).poolmanager.pools._container.values()
        first = pool.pool.queue[-1]
        print("unstamped", first._poolscope.idle_since)
        exporter = InMemorySpanExporter()
        provider = TracerProvider()
        provider.add_span_processor(SimpleSpanProcessor(exporter))
        trace.set_tracer_provider(provider)
        tracer = trace.get_tracer("test")
        # What urllib3 calls when the queue has no idle connection for a request: the pool
        # takes its hook now, while the first connection still sits idle, untimed.
        pool._new_conn().close()
        for name in ("went idle before", "went idle after"):
            with tracer.start_as_current_span(name):
                s.get(a.url)
        for span in exporter.get_finished_spans():
            if span.name.startswith("went"):
                attrs = dict(span.attributes)
                print(
                    span.name,
                    "urllib3.pool.connection.id" in attrs,
                    "urllib3.pool.connection.idle_time" in attrs,
                )
    """
)


def test_a_reuse_after_an_sdk_appears_has_an_idle_time_only_once_its_return_was_timed() -> None:
    # Without a sink acting on reuses, returns are not timed (that clock call is most of a
    # return's cost); a connection that went idle before the SDK appeared reports its reuse
    # without an idle time rather than one measured from nothing.
    lines = run_without_otel_environment(LATE_SDK_SAME_POOL)
    assert lines[0] == "unstamped 0.0"
    before = [ln for ln in lines if ln.startswith("went idle before")]
    after = [ln for ln in lines if ln.startswith("went idle after")]
    assert before and after, lines
    # Both reuses name their connection; only the one timed going idle has an idle time.
    assert before == ["went idle before True False"]
    assert after == ["went idle after True True"]


LATE_METER = textwrap.dedent(
    """
    import requests
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import poolscope
    from poolscope.loopback import LoopbackServer
    from poolscope.instrumentation.pools import CheckoutHookMixin

    def read(reader):
        out = {}
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    for p in m.data.data_points:
                        name = m.name
                        state = p.attributes.get("http.connection.state")
                        if state:
                            name += "." + state
                        out[name] = p.count if hasattr(p, "bucket_counts") else p.value
        return out

    s = poolscope.instrument_session(requests.Session())
    with LoopbackServer("127.0.0.1") as a:
        for _ in range(3):
            s.get(a.url)
        (pool,) = s.get_adapter(a.url).poolmanager.pools._container.values()
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        print("hooked before", isinstance(pool, CheckoutHookMixin))
        first = read(reader)
        print("hooked after", isinstance(pool, CheckoutHookMixin))
        for _ in range(2):
            s.get(a.url)
        second = read(reader)
        for name in ("created", "reused"):
            key = "urllib3.pool.connections." + name
            print(name, first.get(key), second.get(key))
        for state in ("idle", "active"):
            key = "http.client.open_connections." + state
            print(state, first.get(key), second.get(key))
        print("idle_time", second.get("urllib3.pool.connection.idle_time"))
    """
)


def test_a_meter_provider_set_later_counts_reuses_from_its_first_collection() -> None:
    # No new connection is made after the SDK appears: its first collection is what starts
    # the counting. The connection already idle is counted idle; reuses count from then on,
    # the first without an idle time (how long it sat before is not known).
    assert run_without_otel_environment(LATE_METER) == [
        "hooked before False",
        "hooked after True",
        "created 1 1",
        "reused 0 2",
        "idle 1 1",
        "active 0 0",
        "idle_time 1",
    ]


REPORT_THEN_METER = textwrap.dedent(
    """
    import requests
    from opentelemetry import metrics
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    import poolscope
    from poolscope.config import get_recorder
    from poolscope.loopback import LoopbackServer

    def idle_time_count(reader):
        for rm in reader.get_metrics_data().resource_metrics:
            for sm in rm.scope_metrics:
                for m in sm.metrics:
                    if m.name == "urllib3.pool.connection.idle_time":
                        return sum(p.count for p in m.data.data_points)
        return 0

    s = poolscope.instrument_session(requests.Session(), report=True)
    with LoopbackServer("127.0.0.1") as a:
        for _ in range(50):
            s.get(a.url)
        (stats,) = get_recorder("otel").all_stats()
        print("kept without an SDK", stats.idle_times, poolscope.report().pools[0].reused)
        reader = InMemoryMetricReader()
        metrics.set_meter_provider(MeterProvider(metric_readers=[reader]))
        first = idle_time_count(reader)
        for _ in range(5):
            s.get(a.url)
        print("idle times recorded", first, idle_time_count(reader))
    """
)


def test_idle_times_are_kept_for_the_metrics_only_once_a_meter_provider_records() -> None:
    # The report counts reuses from the start, but with no SDK nothing would ever read the
    # metrics' buffered idle times: none are kept (they were, up to 4,096 a host, for good).
    # A provider set later gets the idle times of the reuses after its first collection.
    assert run_without_otel_environment(REPORT_THEN_METER) == [
        "kept without an SDK None 49",
        "idle times recorded 0 5",
    ]


def test_idle_times_can_be_started_under_the_recorders_own_lock() -> None:
    # The collector may run a connection's callback at any allocation claim() makes under the
    # recorder's lock, and that callback may bring a metrics sink its first event since an SDK
    # appeared: keep_idle_times() then takes the lock again, which must not hang.
    recorder = Recorder()
    done = threading.Event()

    def under_the_lock() -> None:
        with recorder._lock:
            recorder.keep_idle_times()
        done.set()

    threading.Thread(target=under_the_lock, daemon=True).start()
    assert done.wait(10)


def run_without_otel_environment(script: str) -> list[str]:
    """The lines ``script`` prints, run in a Python of its own with no OTEL_ variable set."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.splitlines()
