"""Provides ``in_two_threads``: two requests in flight at the same time on one session, so a
pool needs a second connection."""

from __future__ import annotations

import threading

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
