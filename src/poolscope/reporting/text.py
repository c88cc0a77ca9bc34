"""Rendering a report as text: a table of the hosts that matter, and the advice.

It takes the report's parts (its summaries and advice), so :class:`~.report.Report`, which
calls it, stays the one place that knows the whole.
"""

from __future__ import annotations

from collections.abc import Sequence

from ..core.libraries import library
from .ranking import hosts_that_matter, the_rest
from .render import manager_label
from .summaries import Advice, ManagerSummary, OtherHosts, PoolSummary


def ms(values: dict[str, float], key: str) -> str:
    return f"{values[key] * 1000:.1f}" if key in values else "-"


def _num_pools(name: str) -> str:
    """The library's name for how many pools a manager keeps."""
    knob = library(name).num_pools
    return knob.name if knob is not None else "num_pools"


MANAGER_KINDS = 5  # kinds of manager listed under a host's row
ADVICE_SHOWN = 20  # advice items it shows by default; one line counts the rest by rule


def text(
    pools: Sequence[PoolSummary],
    managers: Sequence[ManagerSummary],
    advice: Sequence[Advice],
    processes: int = 1,
    left_out: Sequence[str] = (),
    incomplete: Sequence[str] = (),
    other: OtherHosts | None = None,
    *,
    all_hosts: bool = False,
) -> str:
    across = f" across {processes} processes" if processes > 1 else ""
    lines = [f"poolscope report: {len(pools)} pool(s){across}"]
    rest: Sequence[PoolSummary] = ()
    if not all_hosts:
        pools, rest = hosts_that_matter(pools, advice)
    header = (
        f"{'pool':<34} {'mgr':>3} {'reqs':>6} {'new':>5} {'reused':>6} {'reuse':>6} "
        f"{'drop':>4} {'disc':>4} {'evict':>5} {'wait':>4} {'conn ms p50/p99':>15} "
        f"{'idle ms p50':>11} {'peak/max':>8}"
    )
    if pools:
        lines += ["", header, "-" * len(header)]
    for p in pools:
        connect = f"{ms(p.connect_time_s, 'p50')}/{ms(p.connect_time_s, 'p99')}"
        lines.append(
            f"{p.origin:<34.34} {manager_label(p.manager):>3} {p.requests:>6} {p.created:>5} "
            f"{p.reused:>6} {p.reuse_ratio:>6.0%} {p.dropped:>4} {p.discarded:>4} {p.evictions:>5} "
            f"{p.waits:>4} {connect:>15} {ms(p.idle_time_s, 'p50'):>11} "
            f"{p.peak_in_use:>3}/{p.pool_maxsize or '-':<4}"  # 0: no limit (httpx's None)
        )
        for kind in p.manager_shares[:MANAGER_KINDS]:
            # A kind of manager that served this host: its requests, new and reused under the
            # host's columns (each, when several managers were alike), and its pool size.
            who = (
                f"mgr {kind.manager_ids[0]}"
                if kind.managers == 1
                else f"{kind.managers} mgrs, each"
            )
            lines.append(
                f"{'':<4}{who:<30} {kind.requests:>10} {kind.created:>5} {kind.reused:>6}"
                f"{'':<54} {kind.pool_maxsize:>4}"
            )
        if len(p.manager_shares) > MANAGER_KINDS:
            more = p.manager_shares[MANAGER_KINDS:]
            lines.append(
                f"{'':<4}{len(more)} more kind(s) of manager, "
                f"{sum(k.managers for k in more)} manager(s)"
            )
        for share in p.processes:
            lines.append(
                f"{'':<4}pid {share.pid:<10} {share.requests:>27} {share.created:>5} "
                f"{share.reused:>6}"
            )
        if http2 := p.http2_line():
            lines.append(f"{'':<39}{http2}")
        if p.failed:
            failed = ", ".join(f"{n} {t}" for t, n in sorted(p.failed.items()))
            lines.append(f"{'':<34}     failed to connect: {failed}")
        facts = _timeouts_and_retries(p)
        if facts:
            lines.append(f"{'':<34}     {facts}")
    if pools:
        lines.append(
            "(mgr: the manager that made the host's pools, as in the 'manager N' lines below; "
            "*: several, 0: none)"
        )
    if rest:
        lines.append(
            f"{the_rest(rest, other)} (all hosts kept: --all-hosts, or "
            "render_text(all_hosts=True); JSON has them all)"
        )
    elif other:
        lines.append(the_rest(rest, other))
    if incomplete:
        lines.append("")
        lines.append("Incomplete (the counts above miss this):")
        lines += [f"  {item}" for item in incomplete]
    if left_out:
        lines.append("")
        lines.append("Limits reached (the counts above are exact):")
        lines += [f"  {item}" for item in left_out]
    if managers:
        lines.append("")
    for m in managers:
        lines.append(
            f"manager {m.id}: {m.pools_made} pool(s) made for {len(m.hosts)} host(s), "
            f"{m.pools_evicted} evicted, {m.pools_kept} kept of {_num_pools(m.library)}="
            f"{m.pool_connections}"
        )
    lines.append("")
    if not advice:
        requests = sum(p.requests for p in pools)
        reused = sum(p.reused for p in pools)
        ratio = f"{reused / requests:.0%}" if requests else "n/a"
        lines.append(f"No problems found: {requests} request(s), {ratio} on reused connections.")
    else:
        lines.append(f"{len(advice)} thing(s) to change:")
        shown = advice
        if not all_hosts and len(advice) > ADVICE_SHOWN:
            shown = sorted(advice, key=lambda a: -a.waste)[:ADVICE_SHOWN]
        for n, a in enumerate(shown, 1):
            lines.append(f"{n}. [{a.rule}] {a.evidence}")
            lines.append(f"   -> {a.change}")
        if len(shown) < len(advice):
            by_rule: dict[str, int] = {}
            listed = {id(a) for a in shown}
            for a in advice:
                if id(a) not in listed:
                    by_rule[a.rule] = by_rule.get(a.rule, 0) + 1
            counted = ", ".join(f"{n} [{rule}]" for rule, n in sorted(by_rule.items()))
            lines.append(f"... and {len(advice) - len(shown)} more, for other hosts: {counted}.")
    return "\n".join(lines) + "\n"


def _timeouts_and_retries(p: PoolSummary) -> str:
    """One line of what the timeout and retry rules read, when there is any of it."""
    facts = []
    if p.no_read_timeout or p.no_connect_timeout:
        facts.append(
            f"no timeout: {p.no_read_timeout} request(s), {p.no_connect_timeout} connect(s)"
        )
    if p.read_timeouts or p.connect_timeouts:
        facts.append(f"timeouts fired: {p.read_timeouts} read, {p.connect_timeouts} connect")
    for label, counts in (("retried", p.retries), ("errors", p.errors)):
        if counts:
            facts.append(f"{label}: " + ", ".join(f"{n} {t}" for t, n in sorted(counts.items())))
    if not facts:
        return ""
    times = p.response_time_s
    if times:
        facts.insert(
            0,
            f"responses ms p50/p99/max {ms(times, 'p50')}/{ms(times, 'p99')}/{ms(times, 'max')}",
        )
    return "; ".join(facts)
