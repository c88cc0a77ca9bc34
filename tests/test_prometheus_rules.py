"""examples/prometheus/: the alerting rules pass promtool's unit tests, the dashboard queries only
metrics poolscope exports (as the OpenTelemetry Prometheus exporter names them) and the rules
record, and in a real Prometheus fed one scenario per alert each alert's expression returns
exactly its scenario's hosts (never a healthy one's) and each dashboard query returns data."""

from __future__ import annotations

import contextlib
import json
import pathlib
import re
import shutil
import ssl
import subprocess
import threading
import time
from typing import Any

import pytest
import requests
import trustme
import urllib3
from requests.adapters import HTTPAdapter
from urllib3.util.retry import Retry

import poolscope
from poolscope.loopback import LoopbackServer

from .support.binaries import require
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
    "urllib3_pool_connection_dropped_idle_time_seconds",
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
    "urllib3_pool_connections_max",
    "urllib3_pool_connections_peak",
    "urllib3_pool_library",
} | {f"{h}_{suffix}" for h in _HISTOGRAMS for suffix in ("bucket", "sum", "count")}

_KEYWORDS = {
    "by", "without", "on", "ignoring", "group_left", "group_right", "and", "or", "unless",
    "bool", "offset", "inf", "nan",
}  # fmt: skip


def promtool() -> str:
    return require("promtool", "prometheus")


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


def _host(srv: LoopbackServer | str, port: int | None = None) -> tuple[str, ...]:
    """An alert's series key (prom_query's) for one host: its labels less job and instance."""
    address = srv if isinstance(srv, str) else srv.host
    scheme = "http" if isinstance(srv, str) else srv.scheme
    port = port if port is not None else srv.port  # type: ignore[union-attr]
    return (f"server_address={address}", f"server_port={port}", f"url_scheme={scheme}")


def _hosts(result: dict[tuple[str, ...], float]) -> set[tuple[str, ...]]:
    """The hosts (_host's keys) in a query's result: other labels (error_type) dropped."""
    host_labels = ("server_address=", "server_port=", "url_scheme=")
    return {tuple(label for label in k if label.startswith(host_labels)) for k in result}


def _together(n: int, target: object, *args: object) -> None:
    threads = [threading.Thread(target=target, args=args) for _ in range(n)]  # type: ignore[arg-type]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_every_alert_expression_and_dashboard_query_sees_its_scenario_in_prometheus(
    prometheus: tuple[str, int], ca: trustme.CA, ca_bundle: str, refused_port: int
) -> None:
    """One scenario per alert, each on its own host, plus a healthy host over TLS, fed to a real
    Prometheus: each alert's expression (its `for:` aside) returns exactly its scenario's hosts,
    so never another scenario's or the healthy one, and every dashboard query returns data."""
    from opentelemetry.exporter.prometheus import PrometheusMetricReader
    from opentelemetry.sdk.metrics import MeterProvider
    from prometheus_client import start_http_server

    url, port = prometheus
    reader = PrometheusMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    exposition = start_http_server(port, addr="127.0.0.1")
    alerts = {r["alert"]: r["expr"] for r in rules() if "alert" in r}
    tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.2").configure_cert(tls)

    def session(**adapter: Any) -> requests.Session:
        s = requests.Session()
        s.mount("http://", HTTPAdapter(**adapter))
        return poolscope.instrument_session(s, meter_provider=provider)

    try:
        with contextlib.ExitStack() as stack:
            full, evict_a, evict_b, dropped, waits, never, timeouts, healthy = (
                stack.enter_context(srv)
                for srv in (
                    LoopbackServer("127.0.0.1", together=2),
                    LoopbackServer("127.0.0.2"),
                    LoopbackServer("127.0.0.2"),
                    LoopbackServer("127.0.0.3", keepalive=0.2),
                    LoopbackServer("127.0.0.4"),
                    LoopbackServer("127.0.0.1"),
                    LoopbackServer("127.0.0.4"),
                    LoopbackServer("127.0.0.2", ssl_context=tls),
                )
            )
            s_full = session(pool_maxsize=1)
            s_evict = session(pool_connections=1)
            s_dropped = session()
            s_waits = session(pool_maxsize=1, pool_block=True)
            s_never = session()
            s_retry = session(max_retries=Retry(total=3, connect=3, backoff_factor=0))
            s_healthy = session()
            pool = poolscope.InstrumentedHTTPConnectionPool(
                timeouts.host, timeouts.port, maxsize=1, block=True, meter_provider=provider
            )
            refused = f"http://127.0.0.1:{refused_port}/"

            def refuse() -> None:
                with pytest.raises(requests.ConnectionError):
                    s_retry.get(refused)

            def time_out() -> None:
                held = pool.urlopen("GET", "/", preload_content=False, release_conn=False)
                with pytest.raises(urllib3.exceptions.EmptyPoolError):
                    pool.urlopen("GET", "/", pool_timeout=0.05)
                # Read before release: urllib3 would find an unread body's socket readable and
                # reset the connection as dropped (PoolscopeIdleConnectionsDroppedByServer).
                held.drain_conn()
                held.release_conn()

            # Every series exists, and is scraped, before the scenarios make it grow: a rate
            # counts only the increase after a series' first sample.
            s_full.get(full.url)
            s_evict.get(evict_a.url)
            s_evict.get(evict_b.url)
            s_dropped.get(dropped.url)
            _together(2, s_waits.get, waits.url + "/slow")  # one waits: the wait histogram
            s_never.get(never.url + "/close")
            refuse()
            time_out()
            for _ in range(2):
                s_healthy.get(healthy.url, verify=ca_bundle)
            keys = [
                _host(srv)
                for srv in (full, evict_a, evict_b, dropped, waits, never, timeouts, healthy)
            ] + [_host("127.0.0.1", refused_port)]
            created = "urllib3_pool_connections_created_total"
            wait_for(lambda: set(keys) <= set(prom_query(url, created)), 30, "the first scrape")
            wait_sum = "urllib3_pool_connection_wait_time_seconds_sum"
            wait_for(lambda: _host(waits) in prom_query(url, wait_sum), 30, "the first wait")

            for _ in range(30):  # two requests at once into a pool of one: one discard each
                _together(2, s_full.get, full.url + "/together")
            for _ in range(20):  # two hosts take turns in one pool: evicted, rebuilt
                s_evict.get(evict_a.url)
                s_evict.get(evict_b.url)
            for _ in range(4):  # idle longer than the server's keep-alive: dropped
                time.sleep(0.5)
                s_dropped.get(dropped.url)
            for _ in range(150):  # Connection: close: each request opens a new connection
                s_never.get(never.url + "/close")
            for _ in range(10):  # refused, retried three times
                refuse()
            for _ in range(3):
                time_out()

            def slow() -> None:
                for _ in range(5):
                    s_waits.get(waits.url + "/slow")

            _together(12, slow)  # twelve workers, one connection: about 11 waiting
            for _ in range(20):
                s_healthy.get(healthy.url, verify=ca_bundle)

            scenario = {  # each alert's exact set of hosts
                "PoolscopeConnectionsDiscardedPoolFull": {_host(full)},
                # Both hosts take turns in the one pool: each is evicted and rebuilt.
                "PoolscopePoolsEvictedAndRebuilt": {_host(evict_a), _host(evict_b)},
                "PoolscopeIdleConnectionsDroppedByServer": {_host(dropped)},
                "PoolscopeConnectionRetries": {_host("127.0.0.1", refused_port)},
                "PoolscopeRequestsWaitingForConnection": {_host(waits)},
                "PoolscopeWaitForConnectionTimeouts": {_host(timeouts)},
                "PoolscopeConnectionsNeverReused": {_host(never)},
            }
            assert set(scenario) == set(alerts)
            assert not any(_host(healthy) in hosts for hosts in scenario.values())
            for name, hosts in scenario.items():

                def exact(expr: str = alerts[name], hosts: set[tuple[str, ...]] = hosts) -> bool:
                    return _hosts(prom_query(url, expr)) == hosts

                with contextlib.suppress(AssertionError):  # asserted below, with the result
                    wait_for(exact, 30, f"{name} on exactly {hosts}")
                assert exact(), (name, prom_query(url, alerts[name]))
            # The fixture's Prometheus loads no rule files: a recorded name is replaced by its
            # expression (the matchers, all ".*" here, dropped with it).
            grafana = {"$__rate_interval": "5m", "$job": ".*", "$host": ".*"}
            recorded = {r["record"]: r["expr"] for r in rules() if "record" in r}
            for e in dashboard_exprs():
                for var, value in grafana.items():
                    e = e.replace(var, value)
                while metric_names(e) & set(recorded):
                    for name, rule in recorded.items():
                        e = re.sub(rf"{re.escape(name)}(\{{[^}}]*\}})?", f"({rule})", e)
                wait_for(lambda e=e: prom_query(url, e), 30, f"data for {e}")
            for name, hosts in scenario.items():  # after the other waits: more samples
                result = prom_query(url, alerts[name])
                assert _hosts(result) == hosts, (name, result)
        discards = prom_query(url, alerts["PoolscopeConnectionsDiscardedPoolFull"])
        assert list(discards) == [_host(full)]
        assert next(iter(discards.values())) > 0.1  # the share of new connections discarded
        # The numbers its annotation gives (the recording rules' expressions, as Prometheus
        # computes them from what was scraped): two in use at once against a pool of one.
        peak = prom_query(url, recorded["poolscope_host:urllib3_pool_connections_peak:max1h"])
        size = prom_query(url, recorded["poolscope_host:urllib3_pool_connections_max:max"])
        assert (peak[_host(full)], size[_host(full)]) == (2, 1)
        assert size[_host(healthy)] == 10 and peak[_host(healthy)] == 1
    finally:
        exposition[0].shutdown()
        exposition[0].server_close()
        provider.shutdown()
