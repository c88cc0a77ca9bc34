"""The same scenarios with and without poolscope give the same responses, errors and retries."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
import requests
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import poolscope
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.outcome import outcome


def both(
    make: Callable[[], requests.Session],
    scenario: Callable[[requests.Session], Any],
    metrics: Metrics,
) -> tuple[Any, Any]:
    plain = outcome(lambda: scenario(make()))
    observed = outcome(
        lambda: scenario(poolscope.instrument_session(make(), meter_provider=metrics.provider))
    )
    return plain, observed


def test_responses_are_identical(metrics: Metrics, server: LoopbackServer) -> None:
    def scenario(s: requests.Session) -> Any:
        s.get(server.url)
        s.get(server.url + "/close")
        return s.get(server.url + "/?q=1")

    plain, observed = both(requests.Session, scenario, metrics)
    assert plain[0] == "response"
    assert plain == observed


def test_connection_refused_is_identical(metrics: Metrics, refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    plain, observed = both(requests.Session, lambda s: s.get(url), metrics)
    assert plain[0] == "raised"
    assert plain[1][0][0] is requests.ConnectionError
    assert plain == observed


def test_retries_are_identical(metrics: Metrics, refused_port: int) -> None:
    url = f"http://127.0.0.1:{refused_port}/"
    counts: list[int] = []

    class CountingRetry(Retry):
        def increment(self, *args: Any, **kwargs: Any) -> Retry:
            counts.append(1)
            return super().increment(*args, **kwargs)

    def make() -> requests.Session:
        s = requests.Session()
        s.mount("http://", HTTPAdapter(max_retries=CountingRetry(total=2, backoff_factor=0)))
        return s

    plain, observed = both(make, lambda s: s.get(url), metrics)
    assert plain == observed
    assert "Max retries exceeded" in plain[1][0][1]
    assert len(counts) == 6  # three attempts each, both runs
    assert metrics.value(metrics.collect(), "urllib3.pool.connections.failed") == 3


def test_tls_verification_failure_is_identical(
    metrics: Metrics, tls_server: LoopbackServer
) -> None:
    plain, observed = both(requests.Session, lambda s: s.get(tls_server.url), metrics)  # no CA
    assert plain[0] == "raised" and plain[1][0][0] is requests.exceptions.SSLError
    assert plain == observed
    etype = "ssl.SSLCertVerificationError"
    assert (
        metrics.value(metrics.collect(), "urllib3.pool.connections.failed", error__type=etype) == 1
    )


@pytest.mark.parametrize("instrument", [False, True])
def test_pool_block_semantics_are_unchanged(
    instrument: bool, metrics: Metrics, server: LoopbackServer
) -> None:
    """maxsize=1, pool_block=True: threads wait their turn; one connection serves them all."""
    s = requests.Session()
    s.mount("http://", HTTPAdapter(pool_maxsize=1, pool_block=True))
    if instrument:
        poolscope.instrument_session(s, meter_provider=metrics.provider)
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(s.get(server.url).status_code))
        for _ in range(4)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert results == [200] * 4
    assert server.connections == 1
