"""Provides ``outcome``: what a user sees from a call (the response, or the exception's type,
message and cause chain), to compare runs with and without poolscope."""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any

ADDRESS = re.compile(r" at 0x[0-9a-fA-F]+")


def outcome(call: Callable[[], Any]) -> tuple[Any, ...]:
    """What a user sees: the response, or the exception's type, message and cause chain."""
    try:
        r = call()
    except Exception as exc:
        chain = []
        e: BaseException | None = exc
        while e is not None:
            chain.append((type(e), ADDRESS.sub(" at 0x?", str(e))))
            e = e.__cause__ or e.__context__
        return ("raised", tuple(chain))
    headers = {k: v for k, v in r.headers.items() if k.lower() != "date"}
    return ("response", r.status_code, r.content, headers, len(r.history))
