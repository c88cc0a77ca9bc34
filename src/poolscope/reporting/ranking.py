"""Which hosts a reader needs first, when a report covers more than a page can show.

The text report and the HTML page show the ``HOSTS_SHOWN`` hosts that matter most (those the
advice names, the most wasteful first, then the busiest) and sum up the rest in one line; the
JSON report keeps every host.
"""

from __future__ import annotations

from collections.abc import Sequence

from .summaries import Advice, PoolSummary

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


def the_rest(rest: Sequence[PoolSummary]) -> str:
    """One line for the hosts not shown: how many, and what they did in all."""
    return (
        f"{len(rest)} other host(s): {sum(p.requests for p in rest)} request(s), "
        f"{sum(p.created for p in rest)} connection(s) opened, "
        f"{sum(p.discarded for p in rest)} discarded, {sum(p.evictions for p in rest)} evicted"
    )
