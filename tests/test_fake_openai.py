"""The loopback fake of the OpenAI (and Anthropic) API, tests/support/fake_openai.py, held
against the real SDKs: their answers parse, and the server counts requests, connections and
requests in flight as the SDK's httpx2 pool made them. No poolscope here: this is the ground
truth the SDK tests compare poolscope's counts with."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from .support.fake_openai import FakeOpenAI

openai = pytest.importorskip("openai")
httpx2 = pytest.importorskip("httpx2")  # openai 3.x builds its pools with httpx2/httpcore2

MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


def test_sync_calls_reuse_one_connection() -> None:
    with FakeOpenAI() as api:
        with openai.OpenAI(api_key="x", base_url=api.url) as client:
            for _ in range(5):
                answer = client.chat.completions.create(model="gpt-fake", messages=MESSAGES)
        assert answer.choices[0].message.content == "ok"
        assert answer.model == "gpt-fake"
        assert (api.requests, api.connections) == (5, 1)


def test_concurrent_async_calls_each_open_a_connection() -> None:
    async def six_at_once(url: str) -> list[Any]:
        async with openai.AsyncOpenAI(api_key="x", base_url=url) as client:
            calls = [client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(6)]
            return await asyncio.gather(*calls)

    with FakeOpenAI(delay=0.5) as api:
        answers = asyncio.run(six_at_once(api.url))
        assert [a.choices[0].message.content for a in answers] == ["ok"] * 6
        assert (api.requests, api.connections, api.max_in_flight) == (6, 6, 6)
        assert api.in_flight == 0


def test_a_smaller_pool_makes_the_rest_wait() -> None:
    async def six_at_once(url: str) -> None:
        http_client = openai.DefaultAsyncHttpxClient(limits=httpx2.Limits(max_connections=2))
        async with openai.AsyncOpenAI(api_key="x", base_url=url, http_client=http_client) as client:
            calls = [client.chat.completions.create(model="m", messages=MESSAGES) for _ in range(6)]
            await asyncio.gather(*calls)

    with FakeOpenAI(delay=0.2) as api:
        asyncio.run(six_at_once(api.url))
        assert (api.requests, api.connections, api.max_in_flight) == (6, 2, 2)


def test_an_unknown_path_is_a_404_in_openais_error_shape() -> None:
    with FakeOpenAI() as api:
        with openai.OpenAI(api_key="x", base_url=api.url) as client:
            with pytest.raises(openai.NotFoundError, match="no route /v1/models/nope"):
                client.models.retrieve("nope")
        assert api.requests == 1  # a 404 is not retried


def test_anthropic_messages() -> None:
    anthropic = pytest.importorskip("anthropic")
    with FakeOpenAI() as api:
        with anthropic.Anthropic(api_key="x", base_url=api.anthropic_url) as client:
            for _ in range(3):
                message = client.messages.create(
                    model="claude-fake", max_tokens=8, messages=MESSAGES
                )
        assert message.content[0].text == "ok"
        assert (api.requests, api.connections) == (3, 1)
