"""A short load run in the suite; scripts/soak runs the long one (64 threads x 2,000)."""

from __future__ import annotations

import pytest

from .conftest import Metrics
from .load import run_load


@pytest.mark.parametrize("closes", [False, True], ids=["keep-alive", "random-server-closes"])
def test_counts_stay_consistent_under_load(metrics: Metrics, closes: bool) -> None:
    result = run_load(threads=16, per_thread=150, meter_provider=metrics.provider, closes=closes)
    # Every request went out on a connection poolscope counted as created or reused...
    assert result["served"] >= result["requests"]
    # ...and every connection poolscope counted as created, the servers accepted.
    assert result["created"] == result["accepted"]
