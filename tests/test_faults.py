"""Faults on real loopback sockets: each counted once, under the right event and error.type,
with the exception the user sees identical to the uninstrumented run."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest
import requests
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import poolscope

from .support.metrics import Metrics
from .support.outcome import outcome
from .support.scripted import CloseOnReuse, full_backlog


@pytest.fixture
def close_on_reuse() -> Iterator[CloseOnReuse]:
    srv = CloseOnReuse()
    yield srv
    srv.close()


def test_server_closing_as_the_connection_is_reused_is_a_counted_retry(
    metrics: Metrics, close_on_reuse: CloseOnReuse, caplog: pytest.LogCaptureFixture
) -> None:
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=Retry(total=1, backoff_factor=0)))
    poolscope.instrument_session(s, meter_provider=metrics.provider)
    assert s.get(close_on_reuse.url).text == "ok"
    assert s.get(close_on_reuse.url).text == "ok"  # fails on the reused connection, retried
    points = metrics.collect()
    etype = "http.client.RemoteDisconnected"
    assert metrics.value(points, "urllib3.pool.retries", error__type=etype) == 1
    assert metrics.value(points, "urllib3.pool.retries") == 1
    assert metrics.value(points, "urllib3.pool.connections.created") == 2
    assert metrics.value(points, "urllib3.pool.connections.reused") == 1
    assert metrics.value(points, "urllib3.pool.connections.dropped") == 0
    assert close_on_reuse.connections == 2


def test_without_retries_the_race_error_is_unchanged(metrics: Metrics) -> None:
    def scenario(s: requests.Session) -> Any:
        srv = CloseOnReuse()
        try:
            s.get(srv.url)
            return s.get(srv.url)
        finally:
            srv.close()

    plain = outcome(lambda: scenario(requests.Session()))
    observed = outcome(
        lambda: scenario(
            poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
        )
    )
    assert plain[0] == "raised" and plain[1][0][0] is requests.ConnectionError
    # The port differs between the two runs; everything else must not.
    assert _portless(plain) == _portless(observed)
    points = metrics.collect()
    assert metrics.value(points, "urllib3.pool.retries") == 0
    assert metrics.value(points, "http.client.connection.duration") == 1  # closed: error


def _portless(result: Any) -> Any:
    import re

    return re.sub(r"port=\d+|:\d{4,5}/", "PORT", repr(result))


def test_retry_is_logged_and_a_span_event(
    caplog: pytest.LogCaptureFixture, close_on_reuse: CloseOnReuse
) -> None:
    caplog.set_level(logging.INFO, logger="poolscope")
    s = requests.Session()
    s.mount("http://", HTTPAdapter(max_retries=Retry(total=1, backoff_factor=0)))
    poolscope.instrument_session(s, mode="logging")
    s.get(close_on_reuse.url)
    s.get(close_on_reuse.url)
    retried = [r for r in caplog.records if getattr(r, "poolscope_event", "") == "request_retried"]
    assert len(retried) == 1
    assert retried[0].error_type == "http.client.RemoteDisconnected"
    assert retried[0].server_port == close_on_reuse.port


def test_connect_timeout_on_a_full_backlog(metrics: Metrics) -> None:
    """A loopback listener that never accepts and whose backlog is full: connects hang."""
    with full_backlog() as port:
        url = f"http://127.0.0.1:{port}/"

        def call(s: requests.Session) -> Any:
            return s.get(url, timeout=(0.3, 1))

        plain = outcome(lambda: call(requests.Session()))
        observed = outcome(
            lambda: call(
                poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
            )
        )
    assert plain[0] == "raised" and plain[1][0][0] is requests.ConnectTimeout
    assert plain == observed
    etype = "urllib3.exceptions.ConnectTimeoutError"
    assert (
        metrics.value(metrics.collect(), "urllib3.pool.connections.failed", error__type=etype) == 1
    )


def test_tls_wrong_hostname_is_a_failed_connection(
    metrics: Metrics, ca: Any, ca_bundle: str
) -> None:
    import ssl

    from poolscope.loopback import LoopbackServer

    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("other.example").configure_cert(ctx)  # not 127.0.0.1
    with LoopbackServer("127.0.0.1", ssl_context=ctx) as srv:

        def call(s: requests.Session) -> Any:
            return s.get(srv.url, verify=ca_bundle)

        plain = outcome(lambda: call(requests.Session()))
        observed = outcome(
            lambda: call(
                poolscope.instrument_session(requests.Session(), meter_provider=metrics.provider)
            )
        )
    assert plain[0] == "raised" and plain[1][0][0] is requests.exceptions.SSLError
    assert "127.0.0.1" in plain[1][0][1]  # the mismatch is named
    assert plain == observed
    points = metrics.collect()
    # urllib3 2.x leaves the hostname to ssl; 1.26 checks it itself after the handshake.
    etype = (
        "ssl.SSLCertVerificationError"
        if urllib3.__version__.startswith("2.")
        else "urllib3.util.ssl_match_hostname.CertificateError"
    )
    assert metrics.value(points, "urllib3.pool.connections.failed", error__type=etype) == 1
    assert metrics.value(points, "urllib3.pool.connections.failed") == 1
    assert metrics.value(points, "urllib3.pool.connections.created") == 0
