"""The HTML report renders in a real browser (Debian's headless Chromium): one lane per
connection, and a screenshot that shows them."""

from __future__ import annotations

import json
import pathlib
import re
import subprocess
import sys
import time

import pytest
import requests

import poolscope
from poolscope.loopback import LoopbackServer

from .support.binaries import CHROMIUM_FLAGS, require

SCRIPT = """
import sys, threading, requests
from requests.adapters import HTTPAdapter
url = sys.argv[1]
s = requests.Session()
s.mount("http://", HTTPAdapter(pool_maxsize=1))
for _ in range(3):
    ts = [threading.Thread(target=s.get, args=(url + "/together",)) for _ in range(2)]
    for t in ts: t.start()
    for t in ts: t.join()
s.get(url + "/close")
"""

# Run in the browser on a copy of the page: where each axis label was laid out.
MEASURE = """<script>
const width = document.documentElement.clientWidth;
const inside = (e, box) => {
  const r = e.getBoundingClientRect();
  return r.left >= box.left && r.right <= box.right;
};
const page = {left: 0, right: width};
const outside = [
  ...[...document.querySelectorAll(".axis span")]
    .filter(e => !inside(e, e.closest(".plot").getBoundingClientRect())),
  ...[...document.querySelectorAll(".yaxis span")].filter(e => !inside(e, page)),
].map(e => e.textContent);
const y = [...document.querySelectorAll(".yaxis span")].map(e => e.textContent);
document.body.dataset.layout = JSON.stringify(
  {width, scrollbar: window.innerWidth - width, outside, y});
</script>"""


@pytest.fixture
def chromium() -> str:
    return require("chromium", "chromium")


def test_html_timeline_renders_one_lane_per_connection(
    chromium: str, tmp_path: pathlib.Path
) -> None:
    script = tmp_path / "app.py"
    script.write_text(SCRIPT)
    page = tmp_path / "report.html"
    with LoopbackServer("127.0.0.1", together=2) as server:
        out = subprocess.run(
            [
                sys.executable,
                "-m",
                "poolscope",
                "run",
                "--format",
                "json",
                "--html",
                str(page),
                "-o",
                str(tmp_path / "report.json"),
                "--",
                sys.executable,
                str(script),
                server.url,
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    assert out.returncode == 0, out.stderr
    assert out.stdout == "" and out.stderr == ""  # the report went to the files asked for
    report = json.loads((tmp_path / "report.json").read_text())
    (pool,) = report["pools"]
    connections = {c["id"] for c in pool["connections"]}
    assert len(connections) == pool["created"] == 4  # 3 rounds, 2 discards, 1 Connection: close

    profile = tmp_path / "profile"
    common = [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}"]
    dom = subprocess.run(
        [*common, "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    rendered = dom.stdout
    lanes = {int(part.split('"', 1)[0]) for part in rendered.split('data-connection="')[1:]}
    assert lanes == connections
    assert "Raise pool_maxsize to 2" in rendered
    # The occupancy chart, as drawn, agrees with the counts; the axis has its ticks.
    chart = rendered[rendered.index("<svg") :]
    assert f'data-peak-drawn="{pool["peak_in_use"]}"' in chart
    assert pool["peak_in_use"] == 2 and pool["pool_maxsize"] == 1
    assert f'data-discards="{pool["discarded"]}"' in chart and pool["discarded"] >= 2
    assert chart.count('class="discard"') == pool["discarded"]
    assert 'class="in-use"' in chart and 'class="maxsize"' in chart
    axis = rendered[rendered.index('<div class="axis"') :]
    assert axis.split("</div>", 1)[0].count("<span") == 6
    colours = re.findall(r'<span><b style="background:(#[0-9a-f]{6})"></b>', rendered)
    assert len(colours) == len(set(colours)) == 8  # a colour for each way a connection ends

    # Laid out by the browser at 1400 pixels: every axis label is inside the page, the time
    # labels under the chart within its width, the y-axis
    # counts 0, pool_maxsize and the top of the scale, and both axes are named.
    measured = tmp_path / "measured.html"
    measured.write_text(page.read_text().replace("</body>", MEASURE + "</body>"))
    laid = subprocess.run(
        [*common, "--window-size=1400,900", "--dump-dom", measured.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    layout = json.loads(re.search(r'data-layout="([^"]*)"', laid.stdout)[1].replace("&quot;", '"'))
    assert layout["width"] == 1400 - layout["scrollbar"]
    assert layout["outside"] == [], layout
    assert layout["y"] == ["0", "1", "3"]  # 0, pool_maxsize, the top (peak 2, plus one)
    assert "time since the run started" in laid.stdout

    shot = tmp_path / "report.png"
    subprocess.run(
        [*common, f"--screenshot={shot}", "--window-size=1200,800", page.as_uri()],
        capture_output=True,
        timeout=120,
        check=True,
    )
    data = shot.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")
    assert (width, height) == (1200, 800)
    assert len(data) > 20_000  # a page with text and coloured lanes, not a blank one


# Ten minutes in a few seconds: the clock the report reads (time.time) runs 100 times faster
# while a few thousand throwaway sessions each open a connection, besides one Session that
# reuses its connection for every other request.
def test_a_long_run_with_thousands_of_connections_stays_readable(
    chromium: str, tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real, start = time.time, time.time()
    monkeypatch.setattr(time, "time", lambda: start + (real() - start) * 100)
    with LoopbackServer("127.0.0.1") as server:
        s = poolscope.instrument_session(requests.Session(), mode="logging", report=True)
        n = 0
        while time.time() - start < 600 or n < 2000:
            n += 1
            with poolscope.instrument_session(
                requests.Session(), mode="logging", report=True
            ) as throwaway:
                throwaway.get(server.url, timeout=(3.05, 10))
            for _ in range(3):
                s.get(server.url, timeout=(3.05, 10))
        accepted = server.connections
    report = poolscope.report()
    (pool,) = [p for p in report.pools if p.port == server.port]
    assert pool.created == accepted == n + 1 > 2000
    assert pool.reused == 3 * n - 1
    page = tmp_path / "report.html"
    page.write_text(report.render_html())
    assert len(page.read_text()) < 3_000_000  # a page a browser opens at once, not 10s of MB
    text = _section(page.read_text(), server.port)  # this host's (earlier tests' may be there)
    assert f"{pool.created - 300} more connection(s) not drawn" in text
    axis = text[text.index('<div class="axis"') :].split("</div>", 1)[0]
    span = float(re.search(r'data-span="([\d.]+)"', axis).group(1))  # type: ignore[union-attr]
    minutes, seconds = divmod(round(span), 60)
    assert span >= 600 and axis.endswith(f">+{minutes}:{seconds:02d}</span>")  # in minutes
    lanes = text.split('<div class="lane"')[1:]
    busiest = max(lanes, key=lambda lane: lane.count("<i "))
    assert f"{3 * n} request(s)" in busiest  # the Session's connection, all its requests...
    assert busiest.count("<i ") <= 100  # ...marked at most 100 times
    profile = tmp_path / "profile"
    dom = subprocess.run(
        [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", page.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert _section(dom.stdout, server.port).count('class="lane"') == 300


def _section(page: str, port: int) -> str:
    """The part of a report page about the pool of the server on ``port``."""
    sections = page.split('<section class="pool">')[1:]
    (mine,) = [part for part in sections if f":{port} " in part.split("</h2>", 1)[0]]
    return mine
