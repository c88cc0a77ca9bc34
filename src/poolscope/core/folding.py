"""How many hosts a recorder keeps counts of its own for, and how the rest are folded into one.

A crawler or a webhook sender meets hosts by the thousand, each a few times. A recorder keeps a
:class:`~poolscope.core.stats.PoolStats` per (scheme, host, port) up to ``max_hosts`` (default
500, ``POOLSCOPE_MAX_HOSTS``); past it, it folds hosts whose pools are gone (no pool object
alive, no connection open, no request waiting) into one aggregate under :data:`OTHER_HOSTS`,
so totals stay exact and memory stays flat. The least useful go first: hosts with nothing to
advise (no discard, drop, wait, error, failed connect or timeout, one pool object only), then
the least busy, the longest known first. It folds down to half the limit, so a fold (sorting
what it keeps) comes once in ``max_hosts / 2`` new hosts. docs/decisions.md,
"Ten thousand hosts", says what a user keeps and loses.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable
from itertools import chain, compress, repeat
from operator import add, attrgetter, lt, not_, or_

from .events import PoolKey
from .stats import PoolStats, add_into

log = logging.getLogger("poolscope")

# The key of the aggregate the folded hosts' counts go to; never a real pool's (no scheme).
OTHER_HOSTS = PoolKey("", "(other hosts)", 0)
MAX_HOSTS = 500
ENV = "POOLSCOPE_MAX_HOSTS"


def max_hosts_from_env() -> int:
    """``POOLSCOPE_MAX_HOSTS`` when it is a whole number of at least 1, else the default."""
    value = os.environ.get(ENV, "").strip()
    if not value:
        return MAX_HOSTS
    try:
        limit = int(value)
    except ValueError:
        limit = 0
    if limit < 1:
        log.warning(
            "poolscope: %s=%r is not a whole number of at least 1, so %d hosts are kept; set "
            "it to how many hosts should keep counts of their own (for example %s=2000).",
            ENV,
            value,
            MAX_HOSTS,
            ENV,
        )
        return MAX_HOSTS
    return limit


# What makes a host worth keeping beyond its traffic: anything the advice reads. Read in C.
_signals = attrgetter(
    "discarded",
    "dropped",
    "waits",
    "unreturned",
    "failed",
    "errors",
    "read_timeouts",
    "connect_timeouts",
)


_alive = attrgetter("live", "open", "waiting")
_key = attrgetter("key")
_pools = attrgetter("pools")
_created = attrgetter("created")
_reused = attrgetter("reused")
_idle_times = attrgetter("idle_times")
_use_pending = attrgetter("use_pending")


def to_fold(kept: Iterable[PoolStats], keep: int, count: int, new: PoolKey) -> list[PoolStats]:
    """Which of ``count`` kept hosts to fold so that ``keep`` remain (fewer when not enough of
    them can be: nothing of a folded host may be alive, no pool object, open connection or
    waiting request); never ``new``, the host just met, whose pool is being made.

    Sorted ascending: hosts with nothing to advise (no signal, one pool object: more is a host
    revisited after an eviction, or shared by several managers), then the least busy; stable,
    so among equals the longest known first. Each host is read in C (attrgetter, map): a fold
    reads hundreds of them."""
    kept = list(kept)
    candidates = list(compress(kept, map(not_, map(any, map(_alive, kept)))))
    keys = list(map(_key, candidates))
    for never in (new, OTHER_HOSTS):  # new is the only kept host whose key equals it
        if never in keys:
            at = keys.index(never)
            del keys[at], candidates[at]
    worth = map(
        or_, map(any, map(_signals, candidates)), map(lt, repeat(1), map(_pools, candidates))
    )
    order = list(
        zip(worth, map(add, map(_created, candidates), map(_reused, candidates)), strict=True)
    )
    ranked = sorted(range(len(candidates)), key=order.__getitem__)
    return list(map(candidates.__getitem__, ranked[: max(0, count - keep)]))


def fold(into: PoolStats, folded: list[PoolStats]) -> None:
    """Add the counts of ``folded`` into the aggregate ``into``, with the idle and use times a
    metrics collection has not taken yet."""
    add_into(into, folded)
    if into.idle_times is not None:
        into.idle_times.extend(chain.from_iterable(filter(None, map(_idle_times, folded))))
    if into.use_pending is not None:
        into.use_pending.extend(chain.from_iterable(filter(None, map(_use_pending, folded))))
