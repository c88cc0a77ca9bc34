"""A short load run in the suite; scripts/soak runs the long one (64 threads x 2,000)."""

from __future__ import annotations

from typing import Any

import pytest
from opentelemetry.metrics import NoOpMeterProvider
from opentelemetry.trace import NoOpTracerProvider

from .conftest import Metrics
from .load import run_load


@pytest.mark.parametrize("sdk", [True, False], ids=["sdk", "no-sdk"])
@pytest.mark.parametrize("closes", [False, True], ids=["keep-alive", "random-server-closes"])
def test_counts_stay_consistent_under_load(metrics: Metrics, closes: bool, sdk: bool) -> None:
    providers: dict[str, Any] = (
        {"meter_provider": metrics.provider}
        if sdk
        else {"meter_provider": NoOpMeterProvider(), "tracer_provider": NoOpTracerProvider()}
    )
    result = run_load(threads=16, per_thread=150, closes=closes, **providers)
    # Every request went out on a connection poolscope counted as created or reused...
    assert result["served"] >= result["requests"]
    # ...and every connection poolscope counted as created, the servers accepted.
    assert result["created"] == result["accepted"]
