"""With no OpenTelemetry SDK behind it, poolscope runs no code of its own per reused request
beyond the pool queue's; its counters must still be exactly those of a pool with the
checkout hook, and the hook must arrive once an SDK is configured later."""

from __future__ import annotations

import gc
import logging
import os
import subprocess
import sys
import textwrap
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
from poolscope._config import get_recorder
from poolscope._loopback import LoopbackServer
from poolscope._pools import CheckoutHookMixin

from .conftest import Metrics, in_two_threads
from .scripted import CloseOnReuse

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


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_counts_without_the_checkout_hook_equal_those_with_it(
    scenario: Callable[[requests.Session], None],
) -> None:
    lean, lean_hooked = run(
        scenario, meter_provider=NoOpMeterProvider(), tracer_provider=NoOpTracerProvider()
    )
    hooked, hooked_hooked = run(scenario, meter_provider=Metrics().provider)
    assert not lean_hooked and hooked_hooked
    assert lean == hooked
    assert lean["open"] == lean["idle"] == 0 and lean["created"] == lean["closed"]


def test_expected_counts_without_the_hook() -> None:
    lean, _ = run(stale, meter_provider=NoOpMeterProvider(), tracer_provider=NoOpTracerProvider())
    assert (lean["created"], lean["reused"], lean["dropped"], lean["closed"]) == (2, 1, 1, 2)
    lean, _ = run(
        retried_race, meter_provider=NoOpMeterProvider(), tracer_provider=NoOpTracerProvider()
    )
    assert lean["retries"] == {"http.client.RemoteDisconnected": 1}
    assert (lean["created"], lean["reused"]) == (2, 2)


LATE_SDK = textwrap.dedent(
    """
    import requests
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import poolscope
    from poolscope._loopback import LoopbackServer
    from poolscope._pools import CheckoutHookMixin
    from poolscope import _phases

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
        print("events", [e.name for e in second.events])
    """
)


def test_an_sdk_configured_later_gets_the_hook_for_new_connections() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", LATE_SDK], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "before False False"  # no SDK: no hook, no audit hook either
    assert lines[1] == "after True True"
    assert "'HTTP connection_setup 127.0.0.2:" in lines[2]  # with its phases, from the hook
    assert "'socket connect 127.0.0.2:" in lines[2]
    assert lines[3] == "events ['urllib3.pool.connection_reused']"


LATE_SDK_SAME_POOL = textwrap.dedent(
    """
    import requests
    from opentelemetry import trace
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    import poolscope
    from poolscope._loopback import LoopbackServer

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
                attrs = [dict(e.attributes) for e in span.events]
                timed = ["urllib3.pool.connection.idle_time" in a for a in attrs]
                print(span.name, [sorted(a) for a in attrs], timed)
    """
)


def test_a_reuse_after_an_sdk_appears_has_an_idle_time_only_once_its_return_was_timed() -> None:
    # Without a sink acting on reuses, returns are not timed (that clock call is most of a
    # return's cost); a connection that went idle before the SDK appeared reports its reuse
    # without an idle time rather than one measured from nothing.
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", LATE_SDK_SAME_POOL],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "unstamped 0.0"
    before = [ln for ln in lines if ln.startswith("went idle before")]
    after = [ln for ln in lines if ln.startswith("went idle after")]
    assert before and after, lines
    assert "'urllib3.pool.connection.idle_time'" not in before[0]
    assert before[0].endswith("[False]")
    assert after[0].endswith("[True]")
