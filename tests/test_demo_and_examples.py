"""The README's demo command and the examples run, and show the counts they promise."""

from __future__ import annotations

import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent


def run(*args: str) -> str:
    out = subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=120, cwd=ROOT
    )
    assert out.returncode == 0, out.stderr
    return out.stdout + out.stderr


def test_demo_replays_every_scenario_with_its_counts() -> None:
    text = run("-m", "poolscope", "demo")
    summaries = [line for line in text.splitlines() if line.startswith("  => ")]
    assert summaries == [
        "  => 5 created, 0 reused, 0 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 5 connection(s)",
        "  => 1 created, 2 reused, 0 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 1 connection(s)",
        "  => 3 created, 0 reused, 0 dropped, 0 discarded, 2 evictions, 0 waits; "
        "the servers accepted 3 connection(s)",
        "  => 2 created, 1 reused, 0 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 2 connection(s)",
        "  => 2 created, 2 reused, 0 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 2 connection(s)",
        "  => 3 created, 1 reused, 0 dropped, 2 discarded, 0 evictions, 0 waits; "
        "the servers accepted 3 connection(s)",
        "  => 2 created, 0 reused, 1 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 2 connection(s)",
        "  => 1 created, 1 reused, 0 dropped, 0 discarded, 0 evictions, 1 waits; "
        "the servers accepted 1 connection(s)",
        "  => 1 created, 3 reused, 0 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 1 connection(s)",
        "  => 1 created, 3 reused, 0 dropped, 0 discarded, 0 evictions, 0 waits; "
        "the servers accepted 1 connection(s)",
    ]
    assert "raise pool_maxsize (now 1) to 2" in text
    advice = [line.strip() for line in text.splitlines() if line.startswith("          -> ")]
    assert advice == [
        "-> Make one requests.Session() and send every request through it, so its connections"
        " are reused.",
        "-> Raise pool_connections to 2: HTTPAdapter(pool_connections=2)"
        " (urllib3: PoolManager(num_pools=2)).",
        "-> Raise pool_maxsize to 2: HTTPAdapter(pool_maxsize=2)"
        " (urllib3: PoolManager(maxsize=2)).",
        advice[3],
        "-> Raise pool_maxsize to 2: HTTPAdapter(pool_maxsize=2, pool_block=True); or run at most"
        " 1 request(s) at once (fewer worker threads, or an asyncio.Semaphore(1) around the"
        " tasks).",
        # /slow takes 0.1 s: four times the p99, rounded up.
        "-> Set a timeout (4 times the p99, above the slowest):"
        " session.get(url, timeout=(3.05, 1)).",
        advice[6],
    ]
    assert advice[3].startswith("-> Retry idempotent requests on connection errors")
    assert advice[6].startswith("-> Keep the timeout and look at the server's slow requests")
    # ... under a title that says the same: the server stalls, the timeout is not too short.
    assert "[10/10] a server that stalls on one request in four" in text
    assert "shorter than the server takes" not in text
    assert "1 read timeout(s) fired on requests to http://127.0.0.1:" in text
    assert text.count("  report: no problems found") == 3


@pytest.mark.parametrize(
    ("script", "expected"),
    [
        ("pool_connections.py", "servers accepted 5 connections in all"),
        ("pool_maxsize.py", "raise pool_maxsize (now 1) to 2"),
        ("session_reuse.py", "server accepted 4 connections"),
        ("otel_metrics.py", "urllib3.pool.connections.reused          5 "),
        ("raw_urllib3.py", "was evicted from a PoolManager that keeps 1 pool(s)"),
    ],
)
def test_example_runs(script: str, expected: str) -> None:
    assert expected in run(str(ROOT / "examples" / script))
