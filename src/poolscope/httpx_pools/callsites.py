"""Which library makes the requests of an httpcore pool, read from the call stack once per pool
and origin, as its first connection is made: httpx's pools are built deep inside the SDKs that
use them (openai's, anthropic's), and advice in httpx's words names a class their users never
touch. And, once as a pool is made, whether an installed library the table lacks builds the
httpx client (:func:`building_library`). The one module of this package that reads frames, as
:mod:`poolscope.instrumentation.callsites` is for urllib3."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from types import FrameType

from ..core.libraries import library_of_module
from ..core.unknown import Site, unknown_library

# Packages walked past: the clients themselves, their protocol and async libraries, poolscope.
_PASSED = frozenset(
    "httpx httpcore httpx2 httpcore2 h11 h2 anyio asyncio sniffio poolscope contextlib "
    "threading concurrent".split()
)
_PASSED_PACKAGES = tuple(_PASSED)
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


def building_library() -> str | None:
    """The installed library the table lacks that is building an httpx client (so its pool)
    right now, named with where and the program's line that led there (see
    :func:`poolscope.core.unknown.unknown_library`); None when the program builds it (a client
    it may hand to a library: then it is the user's to size, in httpx's words) or a library of
    the table does (named as its requests go out, by :func:`requesting_library`)."""
    return unknown_library(_sites(sys._getframe(1)), _PASSED_PACKAGES, "httpx")


def _sites(frame: FrameType | None) -> Iterator[Site]:
    """The call sites from ``frame`` outward, up to the first of a library of the table."""
    for _ in range(_DEPTH):
        if frame is None:
            return
        module: str = frame.f_globals.get("__name__") or ""
        if module.partition(".")[0] not in _PASSED and library_of_module(module) is not None:
            return
        code = frame.f_code
        function = getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
        yield Site(module, code.co_filename, frame.f_lineno, function)
        frame = frame.f_back
