"""SDKs built on httpx's fork httpx2 (#30): the real ``openai`` and ``anthropic`` packages
against a loopback fake of their APIs, instrumented process-wide. Their pools are seen and
counted as the server counts them, named by the SDK, and advised in its words (its client
takes an ``http_client=``, made with its defaults by its ``DefaultHttpxClient``) with a number
that, applied, leaves nothing to advise."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

import poolscope

from .support.fake_openai import FakeOpenAI
from .support.metrics import Metrics

openai = pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def row(url: str) -> Any:
    (pool,) = [p for p in poolscope.report().pools if url.startswith(p.origin)]
    return pool


def advice(url: str) -> dict[str, Any]:
    return {a.rule: a for a in poolscope.report().advice if url.startswith(a.origin)}


def test_an_openai_client_is_seen_counted_and_named(instrumented: Metrics) -> None:
    with FakeOpenAI() as api:
        with openai.OpenAI(api_key="x", base_url=api.url, max_retries=0) as client:
            for _ in range(5):
                client.chat.completions.create(model="m", messages=MESSAGES)
        counted = api.requests, api.connections
    pool = row(api.url)
    assert (pool.requests, pool.created) == counted == (5, 1)
    assert pool.library == "openai" and pool.reused == 4 and advice(api.url) == {}


def test_an_openai_client_that_waits_is_advised_in_openais_words(instrumented: Metrics) -> None:
    def run(most: int) -> FakeOpenAI:
        async def six_at_once(url: str) -> None:
            limits = httpx2.Limits(max_connections=most, max_keepalive_connections=most)
            http_client = openai.DefaultAsyncHttpxClient(limits=limits)
            async with openai.AsyncOpenAI(
                api_key="x", base_url=url, http_client=http_client, max_retries=0
            ) as client:
                calls = [
                    client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(6)
                ]
                await asyncio.gather(*calls)

        with FakeOpenAI(delay=0.2) as api:
            asyncio.run(six_at_once(api.url))
            assert (row(api.url).requests, row(api.url).created) == (api.requests, api.connections)
        return api

    small = run(2)
    pool, said = row(small.url), advice(small.url)
    assert pool.library == "openai" and pool.created == 2 and pool.waits >= 4
    assert said["pool_block"].change.startswith(
        "Raise max_connections to 6: openai.OpenAI(http_client=openai.DefaultHttpxClient("
        "limits=httpx2.Limits(max_connections=6, max_keepalive_connections=6)))"
    )
    enough = run(6)
    assert row(enough.url).waits == 0 and advice(enough.url) == {}


def test_an_anthropic_client_is_seen_and_named() -> None:
    anthropic = pytest.importorskip("anthropic")
    poolscope.instrument(report=True, meter_provider=Metrics().provider)
    try:
        with FakeOpenAI() as api:
            with anthropic.Anthropic(api_key="x", base_url=api.anthropic_url) as client:
                for _ in range(3):
                    client.messages.create(model="m", max_tokens=1, messages=MESSAGES)
            counted = api.requests, api.connections
        pool = row(api.anthropic_url)
        assert (pool.requests, pool.created) == counted == (3, 1)
        assert pool.library == "anthropic"
    finally:
        poolscope.uninstrument()
