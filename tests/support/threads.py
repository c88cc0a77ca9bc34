"""Provides ``in_two_threads``: two requests in flight at the same time on one session, so a
pool needs a second connection; and ``wait_for_waiters``: until threads wait on a condition."""

from __future__ import annotations

import threading
import time

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
