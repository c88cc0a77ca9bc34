"""Rendering a report: a text table with advice, and a self-contained HTML timeline.

It takes the report's parts (its summaries and advice), so :class:`~.report.Report`, which
calls it, stays the one place that knows the whole.
"""

from __future__ import annotations

import html as _html
import time
from collections.abc import Sequence

from ..core.libraries import library
from .summaries import Advice, ManagerSummary, PoolSummary


def _ms(values: dict[str, float], key: str) -> str:
    return f"{values[key] * 1000:.1f}" if key in values else "-"


def _num_pools(name: str) -> str:
    """The library's name for how many pools a manager keeps."""
    knob = library(name).num_pools
    return knob.name if knob is not None else "num_pools"


def _manager(manager: int | None) -> str:
    return "*" if manager is None else str(manager)  # *: several managers


def text(
    pools: Sequence[PoolSummary],
    managers: Sequence[ManagerSummary],
    advice: Sequence[Advice],
    processes: int = 1,
    left_out: Sequence[str] = (),
) -> str:
    across = f" across {processes} processes" if processes > 1 else ""
    lines = [f"poolscope report: {len(pools)} pool(s){across}"]
    header = (
        f"{'pool':<34} {'mgr':>3} {'reqs':>6} {'new':>5} {'reused':>6} {'reuse':>6} "
        f"{'drop':>4} {'disc':>4} {'evict':>5} {'wait':>4} {'conn ms p50/p99':>15} "
        f"{'idle ms p50':>11} {'peak/max':>8}"
    )
    if pools:
        lines += ["", header, "-" * len(header)]
    for p in pools:
        connect = f"{_ms(p.connect_time_s, 'p50')}/{_ms(p.connect_time_s, 'p99')}"
        lines.append(
            f"{p.origin:<34.34} {_manager(p.manager):>3} {p.requests:>6} {p.created:>5} "
            f"{p.reused:>6} {p.reuse_ratio:>6.0%} {p.dropped:>4} {p.discarded:>4} {p.evictions:>5} "
            f"{p.waits:>4} {connect:>15} {_ms(p.idle_time_s, 'p50'):>11} "
            f"{p.peak_in_use:>3}/{p.pool_maxsize:<4}"
        )
        for share in p.processes:
            lines.append(
                f"{'':<4}pid {share.pid:<10} {share.requests:>27} {share.created:>5} "
                f"{share.reused:>6}"
            )
        if p.failed:
            failed = ", ".join(f"{n} {t}" for t, n in sorted(p.failed.items()))
            lines.append(f"{'':<34}     failed to connect: {failed}")
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
        for n, a in enumerate(advice, 1):
            lines.append(f"{n}. [{a.rule}] {a.evidence}")
            lines.append(f"   -> {a.change}")
    return "\n".join(lines) + "\n"


_COLORS = {
    None: "#4c8bf5",
    "server_closed": "#8e44ad",
    "dropped": "#e67e22",
    "pool_full": "#c0392b",
    "error": "#c0392b",
    "pool_closed": "#7f8c8d",
    "garbage_collected": "#7f8c8d",
    "client_closed": "#d35400",
}


def html(
    started: float, ended: float, pools: Sequence[PoolSummary], advice: Sequence[Advice]
) -> str:
    """A page with no outside resources: per pool, one lane per connection on a time axis."""
    start = min([started] + [c.opened for p in pools for c in p.connections])
    end = max(ended, start + 0.001)
    span = end - start

    def x(t: float) -> float:
        return 100.0 * (t - start) / span

    esc = _html.escape
    sections = []
    for p in pools:
        lanes = []
        for c in p.connections:
            closed = c.closed if c.closed is not None else end
            left, width = x(c.opened), max(x(closed) - x(c.opened), 0.3)
            ticks = "".join(f'<i style="left:{x(u):.3f}%"></i>' for u in c.uses)
            title = (
                f"connection #{c.id}: {c.requests} request(s), "
                f"{'closed: ' + c.close_reason if c.close_reason else 'open at the end'}"
            )
            lanes.append(
                f'<div class="lane" data-connection="{c.id}" title="{esc(title)}">'
                f'<span class="label">#{c.id}</span>'
                f'<div class="track"><b style="left:{left:.3f}%;width:{width:.3f}%;'
                f'background:{_COLORS.get(c.close_reason, "#555")}"></b>{ticks}</div></div>'
            )
        stats = (
            f"{p.requests} requests, {p.created} new, {p.reused} reused, {p.dropped} dropped, "
            f"{p.discarded} discarded, {p.evictions} evicted, {p.waits} waited; "
            f"peak {p.peak_in_use} in use, pool_maxsize {p.pool_maxsize}"
        )
        sections.append(
            f'<section class="pool"><h2>{esc(p.origin)} '
            f"<small>manager {_manager(p.manager)}</small></h2>"
            f"<p>{esc(stats)}</p>{''.join(lanes)}</section>"
        )
    if not advice:
        advice_html = "<p class='ok'>No problems found.</p>"
    else:
        items = "".join(
            f"<li><strong>{esc(a.rule)}</strong> {esc(a.evidence)}<br>&rarr; {esc(a.change)}</li>"
            for a in advice
        )
        advice_html = f"<ol class='advice'>{items}</ol>"
    legend = "".join(
        f'<span><b style="background:{color}"></b>{esc(reason or "open")}</span>'
        for reason, color in _COLORS.items()
    )
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    return _PAGE.format(
        when=esc(when),
        seconds=f"{span:.2f}",
        advice=advice_html,
        legend=legend,
        sections="".join(sections),
    )


_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>poolscope report</title>
<style>
body {{ font: 14px/1.4 system-ui, sans-serif; margin: 24px; color: #222; }}
h1 {{ font-size: 20px; }} h2 {{ font-size: 16px; margin: 20px 0 4px; }} small {{ color: #777; }}
.lane {{ display: flex; align-items: center; height: 18px; margin: 2px 0; }}
.label {{ width: 56px; font: 11px monospace; color: #555; }}
.track {{ position: relative; flex: 1; height: 12px; background: #f1f1f1; }}
.track b {{ position: absolute; top: 2px; height: 8px; border-radius: 3px; opacity: .85; }}
.track i {{ position: absolute; top: 0; width: 2px; height: 12px; background: #111; }}
.legend span {{ margin-right: 14px; font-size: 12px; }}
.legend b {{ display: inline-block; width: 12px; height: 8px; margin-right: 4px; }}
.advice li {{ margin-bottom: 8px; }} .ok {{ color: #1e7e34; }}
</style></head><body>
<h1>poolscope report</h1>
<p>Run started {when}, {seconds} s on the time axis. One lane per connection: the bar is its
life (colour: how it ended), each tick a request it served.</p>
<div class="legend">{legend}</div>
{advice}
{sections}
</body></html>
"""
