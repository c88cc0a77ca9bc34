"""Containing poolscope's own failures: telemetry never breaks a request.

A failing sink (meter, exporter, log handler) or a bug in poolscope's bookkeeping is logged
once, on the ``poolscope`` logger, and the request goes on unaffected.
"""

from __future__ import annotations

import logging
import sys

log = logging.getLogger("poolscope")

_reported: set[str] = set()


def internal_error(where: str) -> None:
    """Report, once per place, a bug in poolscope's own bookkeeping; never raises."""
    if where in _reported:
        return
    _reported.add(where)
    _warn(
        "poolscope failed in %s; the request went on unaffected, but telemetry for it may "
        "be incomplete. Please report this with the traceback. This is reported once.",
        where,
    )


def sink_failed(name: str) -> None:
    """Say, with the traceback being handled, that a sink raised; the caller says it once."""
    _warn(
        "poolscope's %s raised while handling a pool event; requests are unaffected, but its "
        "telemetry may be incomplete. This is reported once.",
        name,
    )


def _warn(message: str, arg: str) -> None:
    try:
        log.warning(message, arg, exc_info=sys.exc_info())
    except Exception:  # a broken log handler must not break the request either
        pass
