"""The histograms' samples held back and recorded in batches (poolscope.sinks.pending): none
lost, few held, in the collection after they were taken, recorded at once under a sampled span
so that the SDK's exemplars still name it (and never naming a span they were not taken under),
one failing sample costing only itself, and a forked child starting afresh. Real loopback
servers, a real SDK, a real fork."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
from typing import Any

import requests
from opentelemetry.sdk.trace import TracerProvider

import poolscope
from poolscope.config import get_recorder
from poolscope.loopback import LoopbackServer
from poolscope.sinks.metrics import MetricsSink
from poolscope.sinks.pending import BATCH, PendingRecords

from .support.metrics import Metrics


def metrics_sink(metrics: Metrics, tracer_provider: Any = None) -> MetricsSink:
    recorder = get_recorder("otel", metrics.provider, tracer_provider)
    (sink,) = [sink for sink in recorder.sinks.all if isinstance(sink, MetricsSink)]
    return sink


def test_every_connection_is_in_the_histograms_and_few_wait(
    metrics: Metrics, server: LoopbackServer
) -> None:
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    pending = metrics_sink(metrics).pending
    held = []
    connections = 3 * BATCH + 5  # each answer closes its connection: a new one each time
    for _ in range(connections):
        assert s.get(server.url + "/close").text == "ok"
        held.append(len(pending))
    assert max(held) < BATCH  # recorded a batch at a time: fewer than a batch ever wait
    assert held[-1] > 0  # the last ones wait for the collection
    points = metrics.collect()
    assert len(pending) == 0
    assert server.connections == connections
    assert metrics.value(points, "urllib3.pool.connections.created") == connections
    assert metrics.value(points, "urllib3.pool.connection.create_time") == connections
    # Every connection closed has its duration: all but those still open.
    still_open = metrics.value(points, "http.client.open_connections")
    assert still_open <= 1
    duration = metrics.value(points, "http.client.connection.duration")
    assert duration == connections - still_open
    s.close()
    points = metrics.collect()
    assert metrics.value(points, "http.client.connection.duration") == connections


def test_a_connection_made_under_a_sampled_span_is_recorded_with_its_exemplar(
    metrics: Metrics, server: LoopbackServer
) -> None:
    tracers = TracerProvider()
    tracer = tracers.get_tracer("test")
    s = poolscope.instrument_session(
        requests.Session(), meter_provider=metrics.provider, tracer_provider=tracers
    )
    pending = metrics_sink(metrics, tracers).pending
    with tracer.start_as_current_span("request") as span:
        assert s.get(server.url + "/close").text == "ok"
    assert len(pending) == 0  # recorded then and there, with the span current
    assert s.get(server.url + "/close").text == "ok"  # no span: held back
    assert len(pending) >= 1
    (create,) = metrics.collect()["urllib3.pool.connection.create_time"]
    assert create.count == 2
    (exemplar,) = create.exemplars
    assert exemplar.trace_id == span.get_span_context().trace_id
    assert exemplar.span_id == span.get_span_context().span_id
    tracers.shutdown()


def test_a_collection_under_a_sampled_span_gives_no_held_back_sample_its_exemplar(
    metrics: Metrics, server: LoopbackServer
) -> None:
    # A /metrics handler in a traced web app collects under its own span: the samples held
    # back until then were not taken under it.
    tracers = TracerProvider()
    s = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    assert s.get(server.url).text == "ok"  # no span current: its create time is held back
    with tracers.get_tracer("test").start_as_current_span("GET /metrics"):
        (create,) = metrics.collect()["urllib3.pool.connection.create_time"]
    assert create.count == 1
    assert list(create.exemplars) == []
    tracers.shutdown()


def test_a_second_recorder_on_the_same_meter_provider_has_its_samples_collected(
    metrics: Metrics, server: LoopbackServer, server_b: LoopbackServer
) -> None:
    # Two recorders (the second also traces) on one meter provider share its instruments
    # (sinks/meter.py): a collection records the second's held-back samples too.
    tracers = TracerProvider()
    first = poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
    second = poolscope.instrument_session(
        requests.Session(), meter_provider=metrics.provider, tracer_provider=tracers
    )
    assert first.get(server.url).text == "ok" and second.get(server_b.url).text == "ok"
    assert len(metrics_sink(metrics, tracers).pending) == 1
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.connection.create_time") == 2
    assert len(metrics_sink(metrics, tracers).pending) == 0
    tracers.shutdown()


def test_a_sample_that_fails_to_record_costs_only_itself() -> None:
    recorded: list[float] = []
    failures: list[str] = []

    def record(value: float, attributes: dict[str, Any]) -> None:
        if value == 3.0:
            raise RuntimeError("meter is broken")
        recorded.append(value)

    def failed() -> None:
        failures.append(str(sys.exc_info()[1]))

    pending = PendingRecords(failed, batch=5)
    for value in range(7):  # the fifth fills the batch: recorded in the adding thread
        pending.add(record, float(value), {})
    assert recorded == [0.0, 1.0, 2.0, 4.0] and failures == ["meter is broken"]
    pending.record()
    assert recorded == [0.0, 1.0, 2.0, 4.0, 5.0, 6.0] and len(pending) == 0


FORKED = textwrap.dedent(
    """
    import os
    from poolscope.sinks.pending import PendingRecords

    recorded = []
    pending = PendingRecords(lambda: None)
    pending.add(lambda value, attributes: recorded.append(value), 1.0, {})
    pending._recording.acquire()  # as a thread of the parent recording them at the fork
    pid = os.fork()
    if pid == 0:  # the child: the parent's sample is not its to record, and it records its own
        held = len(pending)
        pending.add(lambda value, attributes: recorded.append(value), 2.0, {})
        pending.record()
        os._exit(0 if (held, recorded) == (0, [2.0]) else 1)
    _, status = os.waitpid(pid, 0)
    pending._recording.release()
    pending.record()
    print(os.waitstatus_to_exitcode(status), recorded)
    """
)


def test_a_forked_child_starts_with_no_sample_and_a_lock_of_its_own() -> None:
    out = subprocess.run(
        [sys.executable, "-c", FORKED], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split("\n")[0] == "0 [1.0]"


def test_samples_added_from_many_threads_are_each_recorded_once() -> None:
    recorded: list[float] = []
    lock = threading.Lock()

    def record(value: float, attributes: dict[str, Any]) -> None:
        with lock:
            recorded.append(value)

    pending = PendingRecords(lambda: None, batch=7)
    per_thread, threads = 5_000, 8
    collecting = threading.Event()

    def add(first: int) -> None:
        for i in range(first, first + per_thread):
            pending.add(record, float(i), {})

    def collect() -> None:  # a reader's collections, while the threads add
        while not collecting.is_set():
            pending.record()

    interval = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads take turns often: between any two bytecodes
    try:
        collector = threading.Thread(target=collect)
        collector.start()
        adders = [threading.Thread(target=add, args=(n * per_thread,)) for n in range(threads)]
        for thread in adders:
            thread.start()
        for thread in adders:
            thread.join()
        collecting.set()
        collector.join()
    finally:
        sys.setswitchinterval(interval)
    pending.record()
    assert sorted(recorded) == [float(i) for i in range(per_thread * threads)]
    assert len(pending) == 0
