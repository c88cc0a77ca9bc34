"""What the report's limits set aside: the hosts folded together (past ``POOLSCOPE_MAX_HOSTS``,
see :mod:`poolscope.core.folding`) and what the records' and samples' caps left out, in words.
The report's counts stay exact whatever these say."""

from __future__ import annotations

from ..core.folding import OTHER_HOSTS
from ..core.stats import combined
from .advice import Evidence
from .records import LANES, USES, PoolRecord
from .seen import Seen
from .summaries import OtherHosts


def other_hosts(parts: list[Seen]) -> OtherHosts | None:
    """The hosts folded together, in all (None when no process folded any)."""
    of_other = [stats for p in parts if (stats := p.stats.get(OTHER_HOSTS)) is not None]
    hosts = sum(p.folded for p in parts)
    if not hosts:
        return None
    total = combined(OTHER_HOSTS, of_other)
    return OtherHosts(
        hosts=hosts,
        requests=total.created + total.reused,
        created=total.created,
        reused=total.reused,
        dropped=total.dropped,
        discarded=total.discarded,
        evictions=total.evictions,
        waits=total.waits,
        errors=sum(total.errors.values()),
    )


def left_out_by_limits(
    evidence: list[Evidence], records: list[PoolRecord], other: OtherHosts | None
) -> tuple[str, ...]:
    """What the report's limits left out, in words; its counts are exact whatever they say."""
    said = []
    if other is not None:
        said.append(
            f"hosts: {other.hosts} folded together into one line past the hosts kept one by "
            "one (POOLSCOPE_MAX_HOSTS); their pool objects and samples are not kept"
        )
    made = sum(ev.stats.pools for ev in evidence)
    if made > len(records):
        said.append(
            f"pool objects: {len(records)} of {made} kept for the manager lines and the "
            f"timeline ({made - len(records)} left out)"
        )
    for name, seen, kept in (
        ("connect times", sum(ev.samples.connects_seen for ev in evidence), "connect_times"),
        ("idle times", sum(ev.samples.idles_seen for ev in evidence), "idle_times"),
    ):
        sampled = sum(len(getattr(ev.samples, kept)) for ev in evidence)
        if seen > sampled:
            said.append(f"{name}: percentiles from a uniform sample of {sampled} of {seen}")
    lanes = sum(r.lanes_left_out for r in records)
    if lanes:
        said.append(f"timeline: {lanes} connection(s) beyond {LANES} per pool object not drawn")
    marks = sum(r.marks_left_out for r in records)
    if marks:
        said.append(f"timeline: {marks} request mark(s) beyond {USES} per connection not drawn")
    return tuple(said)
