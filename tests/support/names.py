"""Many hosts on one loopback server: host names ending in ``.hosts.test`` resolve to
127.0.0.1 (the ``many_names`` fixture of tests/conftest.py installs :func:`resolving`), each a
pool of its own; the URL of the n-th, and a counter's series by their attributes."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from poolscope.loopback import LoopbackServer


def resolving(real: Callable[..., Any]) -> Callable[..., Any]:
    """``socket.getaddrinfo`` that answers 127.0.0.1 for names ending in .hosts.test."""

    def resolve(host: Any, *args: Any, **kwargs: Any) -> Any:
        if isinstance(host, str) and host.endswith(".hosts.test"):
            host = "127.0.0.1"
        return real(host, *args, **kwargs)

    return resolve


def url(server: LoopbackServer, n: int) -> str:
    return f"http://h{n}.hosts.test:{server.port}/"


def series(points: dict[str, list[Any]], name: str) -> dict[tuple[Any, ...], int]:
    """The points of counter ``name``, by their attributes (sorted)."""
    return {tuple(sorted(p.attributes.items())): p.value for p in points.get(name, [])}
