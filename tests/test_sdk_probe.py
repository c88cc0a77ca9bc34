"""Whether the global OpenTelemetry providers record, answered without asking the API while none
is set (poolscope.sinks.sdk): the same answer as the API's get_*_provider() in every state, and
the private names it reads are where it reads them (this fails when the API or Python moves
them; poolscope then asks the API every time, correct but slower)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from poolscope.sinks.sdk import GLOBAL_METER_PROVIDER, GLOBAL_TRACER_PROVIDER


def test_the_names_it_reads_are_where_it_reads_them() -> None:
    import opentelemetry.metrics._internal as metrics_api
    import opentelemetry.trace as trace_api

    assert "_METER_PROVIDER" in vars(metrics_api)
    assert "_TRACER_PROVIDER" in vars(trace_api)
    assert isinstance(os.environ._data, dict)  # type: ignore[attr-defined]
    for probe in (GLOBAL_METER_PROVIDER, GLOBAL_TRACER_PROVIDER):
        assert probe._environ is os.environ._data  # type: ignore[attr-defined]  # the fast path


STATES = textwrap.dedent(
    """
    import os
    from opentelemetry import metrics, trace
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.trace import TracerProvider
    from poolscope.sinks.sdk import GLOBAL_METER_PROVIDER, GLOBAL_TRACER_PROVIDER, records_anything

    def both(probe, get, package):
        fast = probe.records()
        public = records_anything(get(), package)  # may load the provider the variable names
        return f"{fast} {public}"

    meter = (GLOBAL_METER_PROVIDER, metrics.get_meter_provider, "opentelemetry.metrics")
    tracer = (GLOBAL_TRACER_PROVIDER, trace.get_tracer_provider, "opentelemetry.trace")
    print("none", both(*meter), both(*tracer))
    # Named in the environment after import: the API loads it at its next call, and so do we.
    os.environ["OTEL_PYTHON_METER_PROVIDER"] = "sdk_meter_provider"
    print("meter named", both(*meter), both(*tracer))
    trace.set_tracer_provider(TracerProvider())
    print("tracer set", both(*meter), both(*tracer))
    """
)


def test_it_answers_as_the_api_does_in_every_state() -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("OTEL_")}
    out = subprocess.run(
        [sys.executable, "-c", STATES], capture_output=True, text=True, env=env, timeout=60
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.splitlines() == [
        "none False False False False",
        "meter named True True False False",
        "tracer set True True True True",
    ]
