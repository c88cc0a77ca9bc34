"""No URL userinfo, path, query, fragment or proxy credentials in any telemetry, whatever the
URL looks like (property-based, over odd URLs, IPv6 literals and IDNA hosts)."""

from __future__ import annotations

from typing import Any

import urllib3
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from poolscope.core.events import (
    CloseReason,
    EventKind,
    PoolEvent,
    log_fields,
    span_event_attributes,
)
from poolscope.instrumentation.pools import pool_key
from poolscope.sinks.logs import message

SECRET = "Zq7SECRETx"  # never a host, scheme or port: any sighting is a leak

hosts = st.one_of(
    st.tuples(st.integers(0, 255), st.integers(0, 255), st.integers(1, 254)).map(
        lambda t: f"127.{t[0]}.{t[1]}.{t[2]}"
    ),
    st.sampled_from(["[::1]", "[::ffff:127.0.0.1]", "[fe80::1]", "[2001:db8::7]"]),
    st.sampled_from(
        ["bücher.example", "xn--bcher-kva.example", "ÉXAMPLE.org", "例え.テスト", "localhost"]
    ),
)
texts = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=("Cs", "Cc")), max_size=12)


def _quote(text: str) -> str:
    from urllib.parse import quote

    return quote(text, safe="")


@st.composite
def urls(draw: Any) -> str:
    scheme = draw(st.sampled_from(["http", "https"]))
    user = _quote(draw(texts)) + SECRET
    password = _quote(draw(texts)) + SECRET
    host = draw(hosts)
    port = draw(st.one_of(st.just(""), st.integers(1, 65535).map(lambda p: f":{p}")))
    path = "/" + _quote(draw(texts)) + SECRET
    query = f"?token={SECRET}&q=" + _quote(draw(texts))
    fragment = "#" + SECRET + _quote(draw(texts))
    userinfo = draw(st.sampled_from([f"{user}:{password}@", f"{user}@", ""]))
    return f"{scheme}://{userinfo}{host}{port}{path}{query}{fragment}"


def every_event(key: Any) -> list[PoolEvent]:
    events = []
    for kind in EventKind:
        events.append(
            PoolEvent(
                kind,
                key,
                7,
                duration=0.5,
                tls_duration=0.1,
                requests=2,
                reason=CloseReason.ERROR,
                error_type="urllib3.exceptions.ProtocolError",
                pool_maxsize=1,
                num_pools=1,
                in_use=2,
                timeout=None,
            )
        )
    return events


def assert_clean(*texts_: object) -> None:
    for text in texts_:
        assert SECRET not in str(text)
        assert SECRET.lower() not in str(text).lower()


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(urls(), urls())
def test_no_secret_reaches_any_telemetry(url: str, proxy_url: str) -> None:
    direct = urllib3.PoolManager()
    proxy_url = proxy_url.split("/", 3)
    proxy = "/".join(proxy_url[:3])  # scheme://userinfo@host:port of a proxy
    via = urllib3.ProxyManager(proxy.replace("https://", "http://", 1))
    made = 0
    for pm in (direct, via):
        try:
            pool = pm.connection_from_url(url)
        except (urllib3.exceptions.LocationParseError, ValueError):
            continue  # urllib3 refuses the URL: nothing to report
        made += 1
        key = pool_key(pool)
        assert_clean(key, key.origin, key.attributes())
        for event in every_event(key):
            assert_clean(message(event), log_fields(event), span_event_attributes(event))
        pool.close()
    assert made >= 1  # urllib3 takes these URLs: the property is never checked vacuously
    direct.clear()
    via.clear()
