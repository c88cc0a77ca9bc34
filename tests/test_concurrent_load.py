"""A short load run in the suite; scripts/soak runs the long one (64 threads x 2,000)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider

from .support.load import run_load
from .support.metrics import Metrics


@pytest.mark.parametrize("sdk", ["sdk", "no-sdk", "sdk-midway"])
@pytest.mark.parametrize("closes", [False, True], ids=["keep-alive", "random-server-closes"])
def test_counts_stay_consistent_under_load(metrics: Metrics, closes: bool, sdk: str) -> None:
    providers: dict[str, Any] = (
        {"meter_provider": metrics.provider}
        if sdk == "sdk"
        else {"meter_provider": NoOpMeterProvider(), "tracer_provider": NoOpTracerProvider()}
    )
    result = run_load(
        threads=16, per_thread=150, closes=closes, count_midway=sdk == "sdk-midway", **providers
    )
    # Every connection poolscope counted as created, the servers accepted...
    assert result["created"] == result["accepted"]
    if sdk == "sdk":
        # ...and every request went out on a connection it counted as created or reused.
        assert result["served"] >= result["requests"]
    elif sdk == "no-sdk":
        assert result["reused"] == 0  # nothing would record a reuse: none is counted
    else:
        # Counting started midway: some reuses counted, not all (and the idle and open
        # counts stayed consistent throughout, which run_load checks).
        assert 0 < result["reused"] < result["requests"] - result["created"]
