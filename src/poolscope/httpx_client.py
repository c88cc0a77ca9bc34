"""httpx integration, one client at a time: :func:`instrument_httpx_client` makes the pools
behind an ``httpx.Client`` or ``AsyncClient`` report, :func:`uninstrument_httpx_client` gives
them back. httpx is not imported here: poolscope works without it."""

from __future__ import annotations

import logging
from typing import Any, TypeVar

from .config import get_recorder
from .httpx_pools.clients import attach_client, detach_client, reporting_to

log = logging.getLogger("poolscope")

ClientT = TypeVar("ClientT")


def instrument_httpx_client(
    client: ClientT,
    *,
    mode: str = "otel",
    meter_provider: Any = None,
    tracer_provider: Any = None,
    report: bool = False,
) -> ClientT:
    """Make the connection pools behind ``client`` (an ``httpx.Client`` or
    ``httpx.AsyncClient``: its transport's and its mounts') report what they do; returns the
    client. The options are :func:`poolscope.instrument_session`'s. Connections the client
    opened before are not counted; calling it again with the same options is harmless, with
    others a ValueError (uninstrument it first)::

        client = poolscope.instrument_httpx_client(httpx.Client())
        client.get("https://example.org/")
    """
    if not _is_httpx_client(client):
        raise TypeError(
            "instrument_httpx_client() takes an httpx.Client or httpx.AsyncClient, not "
            f"{type(client).__name__}; for a requests.Session use instrument_session()."
        )
    recorder = get_recorder(mode, meter_provider, tracer_provider, report)
    other = reporting_to(client)
    if other is not None and other is not recorder:
        raise ValueError(
            f"This client is already instrumented with other options ({other.config}, not "
            f"{recorder.config}); call poolscope.uninstrument_httpx_client(client) first to "
            "change how it reports."
        )
    if not attach_client(client, recorder):
        log.warning(
            "poolscope: %s has no httpcore pool poolscope can instrument (a transport of "
            "its own, or httpcore older than 1.0.3); its requests are not counted.",
            type(client).__name__,
        )
    return client


def uninstrument_httpx_client(client: Any) -> None:
    """Give the pools behind ``client`` back: they stop reporting. A client that was never
    instrumented is left as it is."""
    if not _is_httpx_client(client):
        raise TypeError(
            "uninstrument_httpx_client() takes an httpx.Client or httpx.AsyncClient, not "
            f"{type(client).__name__}."
        )
    detach_client(client)


def _is_httpx_client(client: Any) -> bool:
    return any(
        cls.__module__.partition(".")[0] in ("httpx", "httpx2") and cls.__name__ == "BaseClient"
        for cls in type(client).__mro__
    )
