"""Which hosts a reader needs first, when a report covers more than a page can show.

The text report and the HTML page show the ``HOSTS_SHOWN`` hosts that matter most (those the
advice names, the most wasteful first, then the busiest) and sum up the rest in one line; the
JSON report keeps every host.
"""

from __future__ import annotations

from collections.abc import Sequence

from .summaries import Advice, OtherHosts, PoolSummary

HOSTS_SHOWN = 40


def hosts_that_matter(
    pools: Sequence[PoolSummary], advice: Sequence[Advice]
) -> tuple[Sequence[PoolSummary], Sequence[PoolSummary]]:
    """The hosts to show and the rest: all of them, in their order, when they fit."""
    if len(pools) <= HOSTS_SHOWN:
        return pools, ()
    waste: dict[str, int] = {}
    for a in advice:
        for origin in a.origin.split(", "):
            waste[origin] = waste.get(origin, 0) + a.waste
    ranked = sorted(
        pools, key=lambda p: (p.origin not in waste, -waste.get(p.origin, 0), -p.requests)
    )
    return ranked[:HOSTS_SHOWN], ranked[HOSTS_SHOWN:]


def the_rest(rest: Sequence[PoolSummary], other: OtherHosts | None = None) -> str:
    """One line for the hosts not shown and the hosts folded: how many, what they did in all."""
    folded = other.hosts if other else 0

    def total(name: str) -> int:
        not_shown: int = sum(getattr(p, name) for p in rest)
        in_other: int = getattr(other, name) if other else 0
        return not_shown + in_other

    how = f" ({folded} of them folded together: POOLSCOPE_MAX_HOSTS)" if folded else ""
    return (
        f"{len(rest) + folded} other host(s){how}: {total('requests')} request(s), "
        f"{total('created')} connection(s) opened, {total('discarded')} discarded, "
        f"{total('evictions')} evicted"
    )
