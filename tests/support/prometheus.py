"""A real Prometheus server for the end-to-end tests: starting one on loopback (Debian's
package), waiting for it, and querying it through its HTTP API."""

from __future__ import annotations

import json
import pathlib
import socket
import subprocess
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

from .binaries import require


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check: Any, timeout: float, what: str) -> Any:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = check()
            if last:
                return last
        except OSError:
            pass
        time.sleep(0.2)
    raise AssertionError(f"{what} did not happen within {timeout} s (last: {last!r})")


def prom_query(url: str, query: str) -> dict[tuple[str, ...], float]:
    body = urllib.request.urlopen(f"{url}/api/v1/query?query={urllib.parse.quote(query)}").read()
    result = json.loads(body)["data"]["result"]
    return {
        tuple(
            f"{k}={v}"
            for k, v in sorted(r["metric"].items())
            if k not in ("__name__", "job", "instance") and not k.startswith("otel_")
        ): float(r["value"][1])
        for r in result
    }


def run_prometheus(tmp_path: pathlib.Path) -> Iterator[tuple[str, int]]:
    """A real Prometheus server (Debian's package) on loopback; yields (its URL, scrape port)."""
    for url, (target,) in run_prometheus_fleet(tmp_path, ["poolscope"]):
        yield url, target


def run_prometheus_fleet(
    tmp_path: pathlib.Path, jobs: list[str]
) -> Iterator[tuple[str, list[int]]]:
    """The same, scraping one port per process of a fleet, each process in the job named (a
    job may be named twice); yields (its URL, the scrape ports, in that order)."""
    binary = require("prometheus", "prometheus")
    targets, listen = [free_port() for _ in jobs], free_port()
    config = tmp_path / "prometheus.yml"
    scrapes = "".join(
        f"  - job_name: {job}\n    static_configs:\n      - targets: "
        f"{[f'127.0.0.1:{t}' for t, j in zip(targets, jobs, strict=True) if j == job]}\n"
        for job in dict.fromkeys(jobs)
    )
    config.write_text(f"global:\n  scrape_interval: 1s\nscrape_configs:\n{scrapes}")
    proc = subprocess.Popen(
        [
            binary,
            f"--config.file={config}",
            f"--storage.tsdb.path={tmp_path / 'data'}",
            f"--web.listen-address=127.0.0.1:{listen}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"http://127.0.0.1:{listen}"
    try:
        wait_for(
            lambda: urllib.request.urlopen(url + "/-/ready").status == 200, 30, "Prometheus start"
        )
        yield url, targets
    finally:
        proc.terminate()
        proc.wait(10)
