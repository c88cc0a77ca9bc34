"""One httpx client at a time: the httpcore pools behind an ``httpx.Client`` or
``AsyncClient`` (its transport's and its mounts'), made to report to a recorder, and given back."""

from __future__ import annotations

from typing import Any

from ..core.recorder import Recorder
from .hooks import hook, unhook_if_unused
from .scope import attach, detach


def client_pools(client: Any) -> list[Any]:
    """The httpcore pools behind ``client``: its transport's and each mounted transport's
    (``HTTPTransport._pool``); a transport of another kind has none poolscope can see."""
    transports = [getattr(client, "_transport", None), *getattr(client, "_mounts", {}).values()]
    pools = [getattr(transport, "_pool", None) for transport in transports]
    return [pool for pool in pools if pool is not None and hasattr(pool, "_connections")]


def reporting_to(client: Any) -> Recorder | None:
    """The recorder the pools behind ``client`` report to already (this client's, or the
    process's), if any."""
    for pool in client_pools(client):
        scope = getattr(pool, "_poolscope", None)
        if scope is not None:
            recorder: Recorder = scope.recorder
            return recorder
    return None


def attach_client(client: Any, recorder: Recorder) -> list[Any]:
    """Make the pools behind ``client`` report to ``recorder``; returns them (those of an
    httpcore poolscope does not know are left alone)."""
    attached = []
    for pool in client_pools(client):
        if hook(type(pool).__module__.partition(".")[0]):
            attach(pool, recorder)
            attached.append(pool)
    return attached


def detach_client(client: Any) -> None:
    for pool in client_pools(client):
        detach(pool)
    unhook_if_unused()
