"""Which library makes the requests of an httpcore pool, read from the call stack once per pool
and origin, as its first connection is made: httpx's pools are built deep inside the SDKs that
use them (openai's, anthropic's), and advice in httpx's words names a class their users never
touch. The one module of this package that reads frames, as
:mod:`poolscope.instrumentation.callsites` is for urllib3."""

from __future__ import annotations

import sys
from types import FrameType

from ..core.libraries import library_of_module

# Packages walked past: the clients themselves, their protocol and async libraries, poolscope.
_PASSED = frozenset(
    "httpx httpcore httpx2 httpcore2 h11 h2 anyio asyncio sniffio poolscope contextlib "
    "threading concurrent".split()
)
_DEPTH = 40  # frames looked at: the SDK is near the pool, the program far out


def requesting_library(default: str) -> str:
    """The first library of :mod:`poolscope.core.libraries` whose frame is on the stack, from
    the caller outward past httpx's own; ``default`` (httpx) when the program calls httpx
    itself, or through a library the table does not have."""
    frame: FrameType | None = sys._getframe(1)
    for _ in range(_DEPTH):
        if frame is None:
            break
        module: str = frame.f_globals.get("__name__") or ""
        if module.partition(".")[0] not in _PASSED:
            lib = library_of_module(module)
            if lib is not None:
                return lib.name
        frame = frame.f_back
    return default
