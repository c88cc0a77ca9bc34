"""Provides ``in_two_threads``: two requests in flight at the same time on one session, so a
pool needs a second connection; ``wait_for_waiters``: until threads wait on a condition; and
``switch_at``: another thread runs at a chosen line of a function, as a thread switch would
have it (with ``lines_of``, every line in turn)."""

from __future__ import annotations

import contextlib
import sys
import threading
import time
from collections.abc import Callable, Iterator
from types import CodeType
from typing import Any

import requests


def in_two_threads(session: requests.Session, url: str) -> None:
    """Two requests that are in flight at the same time (the server answers both together)."""
    errors: list[BaseException] = []

    def get() -> None:
        try:
            session.get(url).raise_for_status()
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=get) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert not errors


def wait_for_waiters(condition: threading.Condition, count: int) -> None:
    """Until ``count`` threads wait on ``condition`` (CPython's Condition lists them)."""
    deadline = time.monotonic() + 10
    while len(condition._waiters) < count:  # type: ignore[attr-defined]
        assert time.monotonic() < deadline, "the threads never waited"
        time.sleep(0.005)


def lines_of(code: CodeType) -> list[int]:
    """The lines of a function's body, for ``switch_at``."""
    return sorted({n for _, _, n in code.co_lines() if n is not None and n > code.co_firstlineno})


@contextlib.contextmanager
def switch_at(code: CodeType, line: int, action: Callable[[], object]) -> Iterator[None]:
    """Within the block, when this thread first reaches ``line`` of ``code``, another thread
    runs ``action`` first: to its end, or as far as a lock this thread holds (then, after
    0.2 s, both go on). A line never reached runs it after the block. What it raises is raised
    here."""
    raised: list[BaseException] = []

    def run() -> None:
        try:
            action()
        except BaseException as exc:
            raised.append(exc)

    other = threading.Thread(target=run, daemon=True)

    def on_line(frame: Any, event: str, arg: Any) -> Any:
        if event == "line" and frame.f_lineno == line and other.ident is None:
            other.start()
            other.join(0.2)
        return on_line

    previous = sys.gettrace()
    sys.settrace(lambda frame, event, arg: on_line if frame.f_code is code else None)
    try:
        yield
    finally:
        sys.settrace(previous)
        if other.ident is None:
            other.start()
        other.join(10)
    assert not other.is_alive(), "the other thread did not finish"
    if raised:
        raise raised[0]
