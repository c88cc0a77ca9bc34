"""Rendering a report as a self-contained HTML timeline (the text table is :mod:`.text`).

It takes the report's parts (its summaries and advice), so :class:`~.report.Report`, which
calls it, stays the one place that knows the whole.
"""

from __future__ import annotations

import html as _html
import time
from collections.abc import Callable, Sequence

from .ranking import hosts_that_matter, the_rest
from .summaries import Advice, OtherHosts, PoolSummary


def manager_label(manager: int | None) -> str:
    return "*" if manager is None else str(manager)  # *: several managers


_COLORS = {  # how a connection ended: one colour each
    None: "#4c8bf5",
    "server_closed": "#8e44ad",
    "dropped": "#e67e22",
    "pool_full": "#c0392b",
    "error": "#e84393",
    "pool_closed": "#2d3436",
    "garbage_collected": "#b2bec3",
    "client_closed": "#16a085",
}
LANES_DRAWN = 300  # connection lanes drawn per pool key; the chart above covers them all
TICKS_DRAWN = 100  # request marks drawn per lane
_HEIGHT = 120  # the occupancy chart's height, in its own units


def _chart(p: PoolSummary, x: Callable[[float], float], end: float) -> str:
    """In use, idle and waiting over time against pool_maxsize, with discards and waits
    marked; x maps a time to 0..100 (per cent of the axis)."""
    points = p.occupancy.points
    peak = max((pt[1] for pt in points), default=0)
    top = max(peak, p.pool_maxsize, max((pt[3] for pt in points), default=0), 1) + 1

    def y(value: float) -> float:
        return _HEIGHT - _HEIGHT * value / top

    def steps(column: int) -> str:
        drawn: list[str] = []
        last: float = 0
        for pt in points:
            at = x(pt[0]) * 10  # per cent of the axis, in the chart's 1000 units
            drawn.append(f"{at:.1f},{y(last):.1f} {at:.1f},{y(pt[column]):.1f}")
            last = pt[column]
        drawn.append(f"{x(end) * 10:.1f},{y(last):.1f}")
        return " ".join(drawn)

    lines = "".join(
        f'<polyline class="{name}" points="{steps(column)}"><title>{label}</title></polyline>'
        for name, column, label in (
            ("idle", 2, "idle connections"),
            ("waiting", 3, "requests waiting for a connection"),
            ("in-use", 1, f"connections in use (peak {peak})"),
        )
    )
    marks = "".join(
        f'<line class="{name}" x1="{x(t) * 10:.1f}" x2="{x(t) * 10:.1f}" y1="0" y2="8">'
        f"<title>{label}</title></line>"
        for name, times, label in (
            ("discard", p.occupancy.discards, "a connection discarded: the pool was full"),
            ("wait", p.occupancy.waits, "a request started waiting"),
        )
        for t in times
    )
    limit = (
        f'<line class="maxsize" x1="0" x2="1000" y1="{y(p.pool_maxsize):.1f}" '
        f'y2="{y(p.pool_maxsize):.1f}"><title>pool_maxsize {p.pool_maxsize}</title></line>'
        if p.pool_maxsize
        else ""
    )
    # The y-axis: 0, pool_maxsize and the top of the scale, as connections (or requests).
    values = sorted({0, p.pool_maxsize, top})
    labels = "".join(f'<span style="bottom:{100 * v / top:.1f}%">{v}</span>' for v in values)
    return (
        f'<div class="yaxis" title="connections (or requests waiting)">{labels}</div>'
        f'<svg class="chart" viewBox="0 0 1000 {_HEIGHT}" preserveAspectRatio="none" '
        f'data-peak-drawn="{peak}" data-maxsize="{p.pool_maxsize}" '
        f'data-discards="{len(p.occupancy.discards)}" data-waits="{len(p.occupancy.waits)}">'
        f"{limit}{lines}{marks}</svg>"
    )


def _offset(seconds: float, span: float) -> str:
    """A tick's label: seconds for a short run, minutes and seconds for a long one."""
    if span < 120:
        return f"+{seconds:.2f} s"
    minutes, rest = divmod(round(seconds), 60)
    return f"+{minutes}:{rest:02d}"


def _axis(span: float) -> str:
    # The first label starts at its tick and the last ends at it: none runs off the chart.
    ticks = "".join(
        f'<span style="left:{100 * n / 5:.0f}%"{_EDGE.get(n, "")}>'
        f"{_offset(span * n / 5, span)}</span>"
        for n in range(6)
    )
    return (
        f'<div class="axis" data-span="{span:.3f}">{ticks}</div>'
        '<div class="axis-title">time since the run started</div>'
    )


_EDGE = {0: ' class="first"', 5: ' class="last"'}


def html(
    started: float,
    ended: float,
    pools: Sequence[PoolSummary],
    advice: Sequence[Advice],
    other: OtherHosts | None = None,
    *,
    all_hosts: bool = False,
) -> str:
    """A page with no outside resources: per pool, one lane per connection on a time axis (the
    hosts that matter, unless ``all_hosts``, and a line for the rest)."""
    rest: Sequence[PoolSummary] = ()
    if not all_hosts:
        pools, rest = hosts_that_matter(pools, advice)
    start = min([started] + [c.opened for p in pools for c in p.connections])
    end = max(ended, start + 0.001)
    span = end - start

    def x(t: float) -> float:
        return 100.0 * (t - start) / span

    esc = _html.escape
    sections = []
    for p in pools:
        lanes = []
        for c in p.connections[:LANES_DRAWN]:
            closed = c.closed if c.closed is not None else end
            left, width = x(c.opened), max(x(closed) - x(c.opened), 0.3)
            # At most TICKS_DRAWN request marks per lane, evenly picked: past that they
            # overlap at any width, and a long run's page would grow by the million.
            uses = c.uses[:: max(1, -(-len(c.uses) // TICKS_DRAWN))]
            ticks = "".join(f'<i style="left:{x(u):.3f}%"></i>' for u in uses)
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
        more = len(p.connections) - LANES_DRAWN
        if more > 0:
            lanes.append(f'<p class="more">{more} more connection(s) not drawn</p>')
        sections.append(
            f'<section class="pool"><h2>{esc(p.origin)} '
            f"<small>manager {manager_label(p.manager)}</small></h2>"
            f"<p>{esc(stats)}</p>"
            f"{f'<p class=http2>{esc(http2)}</p>' if (http2 := p.http2_line()) else ''}"
            f'<div class="plot">{_chart(p, x, end)}{_axis(span)}</div>'
            f"{''.join(lanes)}</section>"
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
    if rest or other:
        sections.append(f'<p class="rest">{esc(the_rest(rest, other))}</p>')
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
.plot {{ margin-left: 56px; position: relative; }}
.yaxis {{ position: absolute; left: -44px; width: 40px; height: 120px; font: 11px monospace;
  color: #555; text-align: right; }}
.yaxis span {{ position: absolute; right: 0; transform: translateY(50%); }}
.axis-title {{ font-size: 11px; color: #555; text-align: center; }}
.chart {{ display: block; width: 100%; height: 120px; background: #fafafa; }}
.chart polyline {{ fill: none; stroke-width: 2; vector-effect: non-scaling-stroke; }}
.chart .in-use {{ stroke: #4c8bf5; }} .chart .idle {{ stroke: #b2bec3; }}
.chart .waiting {{ stroke: #e67e22; }}
.chart .maxsize {{ stroke: #c0392b; stroke-dasharray: 6 4; vector-effect: non-scaling-stroke; }}
.chart .discard {{ stroke: #c0392b; stroke-width: 2; vector-effect: non-scaling-stroke; }}
.chart .wait {{ stroke: #e67e22; stroke-width: 2; vector-effect: non-scaling-stroke; }}
.axis {{ position: relative; height: 16px; font: 11px monospace; color: #555; }}
.axis span {{ position: absolute; transform: translateX(-50%); white-space: nowrap; }}
.axis span.first {{ transform: none; }} .axis span.last {{ transform: translateX(-100%); }}
.more {{ color: #777; font-size: 12px; margin-left: 56px; }}
</style></head><body>
<h1>poolscope report</h1>
<p>Run started {when}, {seconds} s on the time axis. For each host: connections in use (blue),
idle (grey) and requests waiting (orange) over time (the left axis counts them) against
pool_maxsize (dashed red), with
discards (red) and waits (orange) marked at the top; below, one lane per connection: the bar is
its life (colour: how it ended), each tick a request it served.</p>
<div class="legend">{legend}</div>
{advice}
{sections}
</body></html>
"""
