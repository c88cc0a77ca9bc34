"""examples/prometheus/: the alerting rules pass promtool's unit tests, the dashboard queries only
metrics poolscope exports (as the OpenTelemetry Prometheus exporter names them) and the rules
record, and the pool-full alert's expression returns data in a real Prometheus fed a discard."""

from __future__ import annotations

import json
import os
import pathlib
import re
import shutil
import subprocess
import threading

import pytest
import requests
from requests.adapters import HTTPAdapter

import poolscope
from poolscope.loopback import LoopbackServer

from .support.prometheus import prom_query, wait_for

EXAMPLES = pathlib.Path(__file__).resolve().parent.parent / "examples" / "prometheus"
RULES = EXAMPLES / "poolscope-rules.yml"
RULE_TESTS = EXAMPLES / "poolscope-rules.test.yml"
DASHBOARD = EXAMPLES / "poolscope-dashboard.json"

# What opentelemetry-exporter-prometheus makes of poolscope's instruments (tests/test_backends.py
# scrapes them from a real Prometheus): dots become underscores, counters end in _total,
# histograms in seconds in _seconds_bucket/_sum/_count.
_HISTOGRAMS = (
    "http_client_connection_duration_seconds",
    "urllib3_pool_connection_create_time_seconds",
    "urllib3_pool_connection_tls_time_seconds",
    "urllib3_pool_connection_idle_time_seconds",
    "urllib3_pool_connection_wait_time_seconds",
)
EXPORTED = {
    "http_client_open_connections",
    "urllib3_pool_wait_pending",
    "urllib3_pool_connections_created_total",
    "urllib3_pool_connections_reused_total",
    "urllib3_pool_connections_dropped_total",
    "urllib3_pool_connections_discarded_total",
    "urllib3_pool_connections_failed_total",
    "urllib3_pool_evictions_total",
    "urllib3_pool_retries_total",
    "urllib3_pool_wait_timeouts_total",
} | {f"{h}_{suffix}" for h in _HISTOGRAMS for suffix in ("bucket", "sum", "count")}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def promtool() -> str:
    binary = shutil.which("promtool")
    if binary is None:
        if os.environ.get("CI"):
            pytest.fail("CI must install Debian's prometheus package (it has promtool).")
        pytest.skip("promtool (Debian's prometheus package) is not installed.")
    return binary


def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (not functions, labels or keywords)."""
    expr = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)  # quoted strings (label values)
    expr = re.sub(r"\{[^}]*\}", "", expr)  # label matchers
    expr = re.sub(r"\[[^\]]*\]", "", expr)  # range and subquery durations
    expr = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", expr)
    names = set()
    for m in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", expr):
        rest = expr[m.end() :].lstrip()
        if m.group(0).lower() in _KEYWORDS or rest.startswith("("):
            continue
        names.add(m.group(0))
    return names


def rules() -> list[dict[str, str]]:
    """The rules file's rules, each {"record" or "alert": name, "expr": its folded expression}.

    No YAML library is among the test dependencies: the file keeps one shape, `- record:` or
    `- alert:` then `expr: >-` and the expression's lines, indented deeper."""
    out: list[dict[str, str]] = []
    lines = RULES.read_text().splitlines()
    for i, line in enumerate(lines):
        m = re.match(r"\s*- (record|alert): (\S+)$", line)
        if m:
            out.append({m.group(1): m.group(2)})
        elif line.strip() == "expr: >-":
            indent = len(line) - len(line.lstrip())
            body = []
            for more in lines[i + 1 :]:
                if more.strip() and len(more) - len(more.lstrip()) <= indent:
                    break
                body.append(more.strip())
            out[-1]["expr"] = " ".join(body).strip()
    assert out and all("expr" in r for r in out), out
    return out


def rule_tests() -> list[tuple[str, bool]]:
    """(alertname, whether the case expects it firing) for each alert_rule_test case."""
    found = re.findall(
        r"alertname: (\S+)\n\s+eval_time: \S+\n\s+exp_alerts:( \[\])?", RULE_TESTS.read_text()
    )
    assert found
    return [(name, not empty) for name, empty in found]


def dashboard_exprs() -> list[str]:
    dash = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p.get("targets", [])]
    exprs += [
        v["query"]["query"].split("(", 1)[1].rsplit(",", 1)[0]  # label_values(<selector>, label)
        for v in dash["templating"]["list"]
        if v["type"] == "query"
    ]
    return exprs


def test_promtool_checks_the_rules_and_runs_their_unit_tests() -> None:
    binary = promtool()
    for args in (["check", "rules", RULES.name], ["test", "rules", RULE_TESTS.name]):
        out = subprocess.run(
            [binary, *args], cwd=EXAMPLES, capture_output=True, text=True, timeout=120
        )
        assert out.returncode == 0, out.stdout + out.stderr
        assert "SUCCESS" in out.stdout


def test_every_alert_has_a_unit_test_that_fires_it_and_one_that_stays_silent() -> None:
    alerts = {r["alert"] for r in rules() if "alert" in r}
    fired = {name for name, firing in rule_tests() if firing}
    silent = {name for name, firing in rule_tests() if not firing}
    assert fired == alerts and silent == alerts


def test_the_rules_use_only_exported_metric_names() -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    used = set().union(*(metric_names(r["expr"]) for r in rules()))
    assert used - recorded <= EXPORTED, used - recorded - EXPORTED
    assert "poolscope_host:urllib3_pool_connection_reuse:ratio_rate5m" in recorded
    assert "urllib3_pool_connections_discarded_total" in used


def test_the_dashboard_queries_only_exported_or_recorded_names(tmp_path: pathlib.Path) -> None:
    recorded = {r["record"] for r in rules() if "record" in r}
    exprs = dashboard_exprs()
    assert len(exprs) >= 10
    used = set().union(*(metric_names(e) for e in exprs))
    assert used <= EXPORTED | recorded, used - EXPORTED - recorded
    for name in (
        "urllib3_pool_connections_created_total",
        "urllib3_pool_connections_reused_total",
        "http_client_open_connections",
        "urllib3_pool_connections_discarded_total",
        "urllib3_pool_evictions_total",
        "urllib3_pool_connections_dropped_total",
        "urllib3_pool_wait_pending",
        "urllib3_pool_connection_create_time_seconds_bucket",
        "urllib3_pool_connection_idle_time_seconds_bucket",
    ):
        assert name in used, name
    assert any("histogram_quantile(0.99" in e for e in exprs)
    if shutil.which("promtool") is None:
        return
    # promtool parses each query (Grafana's variables replaced) as a recording rule.
    grafana = {"$__rate_interval": "5m", "$job": ".*", "$host": ".*"}
    checked = []
    for i, e in enumerate(exprs):
        for var, value in grafana.items():
            e = e.replace(var, value)
        checked.append({"record": f"dashboard:expr{i}", "expr": e})
    path = tmp_path / "dashboard-exprs.yml"
    path.write_text(
        json.dumps({"groups": [{"name": "dashboard", "rules": checked}]})
    )  # JSON is YAML
    out = subprocess.run(
        [promtool(), "check", "rules", str(path)], capture_output=True, text=True, timeout=60
    )
    assert out.returncode == 0, out.stdout + out.stderr


def test_the_pool_full_alert_expression_sees_a_real_discard(
    prometheus: tuple[str, int],
    server_b: LoopbackServer,
) -> None:
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    url, port = prometheus
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exposition = start_http_server(port, addr="127.0.0.1")
    (expr,) = [
        r["expr"] for r in rules() if r.get("alert") == "PoolscopeConnectionsDiscardedPoolFull"
    ]
    try:
        with LoopbackServer("127.0.0.1", together=2) as full:
            s = requests.Session()
            s.mount("http://", HTTPAdapter(pool_connections=2, pool_maxsize=1))
            poolscope.instrument_session(s, meter_provider=provider)
            s.get(full.url)  # both hosts' series exist, at 0 discards, before the discards
            s.get(server_b.url)
            discarded = "urllib3_pool_connections_discarded_total"
            wait_for(lambda: len(prom_query(url, discarded)) == 2, 30, "the first scrape")
            for _ in range(30):  # two requests at once into a pool of one: one discard each
                threads = [
                    threading.Thread(target=s.get, args=(full.url + "/together",)) for _ in range(2)
                ]
                for t in threads:
                    t.start()
                for t in threads:
                    t.join()
                s.get(server_b.url)  # one at a time: reused, never discarded
            total = f'sum({discarded}{{server_address="127.0.0.1"}})'
            wait_for(lambda: prom_query(url, total) == {(): 30.0}, 30, "30 discards scraped")
            firing = wait_for(lambda: prom_query(url, expr), 30, "the alert expression")
        assert list(firing) == [
            ("server_address=127.0.0.1", f"server_port={full.port}", "url_scheme=http")
        ]
        assert next(iter(firing.values())) > 0.1  # the share of new connections discarded
    finally:
        exposition[0].shutdown()
        exposition[0].server_close()
        provider.shutdown()
