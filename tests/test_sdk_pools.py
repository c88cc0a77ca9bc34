"""SDKs that build their own pools, each the real package against a loopback fake of its API,
under `poolscope run`: every pool is seen, counted as the server counted it, and the advice names
that SDK's own setting with a number that, applied, leaves nothing to advise.

The SDKs are the `sdk` test extra (installed on the urllib3 2.x line by scripts/test)."""

from __future__ import annotations

import json
import os
import pathlib
import re
import subprocess
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import pytest

from .support.fake_apis import FakeAPI, WSGIApp, json_app

THREADS = 8

PRELUDE = f"""
import sys, threading
URL, SIZE = sys.argv[1], int(sys.argv[2])

def in_threads(call, n={THREADS}):
    start = threading.Barrier(n)
    def run():
        start.wait()
        call()
    ts = [threading.Thread(target=run) for _ in range(n)]
    for t in ts: t.start()
    for t in ts: t.join()
"""


def _moto() -> WSGIApp:
    from moto.moto_server.werkzeug_app import DomainDispatcherApplication, create_backend_app

    app: WSGIApp = DomainDispatcherApplication(create_backend_app)
    return app


def _elasticsearch() -> WSGIApp:
    info = {
        "name": "fake",
        "cluster_name": "fake",
        "cluster_uuid": "fake",
        "version": {"number": "8.19.0", "build_flavor": "default"},
        "tagline": "You Know, for Search",
    }
    return json_app({"/": info}, headers=(("X-Elastic-Product", "Elasticsearch"),))


def _opensearch() -> WSGIApp:
    info = {
        "name": "fake",
        "cluster_name": "fake",
        "version": {"distribution": "opensearch", "number": "2.19.0"},
        "tagline": "The OpenSearch Project: https://opensearch.org/",
    }
    return json_app({"/": info})


def _kubernetes() -> WSGIApp:
    pods = {"kind": "PodList", "apiVersion": "v1", "metadata": {}, "items": []}
    return json_app({"/api/v1/namespaces/default/pods": pods})


def _influxdb() -> WSGIApp:
    return json_app({"/ping": "OK"})


def _vault() -> WSGIApp:
    health = {"initialized": True, "sealed": False, "standby": False, "version": "1.15.0"}
    return json_app({"/v1/sys/health": health})


def _influxdb_v1() -> WSGIApp:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        start_response("204 No Content", [("X-Influxdb-Version", "1.8.10")])
        return [b""]

    return app


def _docker() -> WSGIApp:
    return json_app({"/v1.41/_ping": "OK"})


@dataclass(frozen=True)
class SDK:
    module: str  # the package the test needs
    library: str  # as poolscope reports it
    app: Callable[[], WSGIApp]
    script: str
    setting: str  # the advice's words, with the number as (\d+)
    blocks: bool = False  # its pools wait for a free connection instead of opening more
    unix: bool = False
    threads: int = THREADS
    first: int = 2  # SIZE in the first run (0: the SDK's default pool, which SIZE replaces)


SDKS = {
    "boto3": SDK(
        "moto",
        "botocore",
        _moto,
        """
import boto3, botocore.config
s3 = boto3.client(
    "s3", endpoint_url=URL, region_name="us-east-1",
    aws_access_key_id="testing", aws_secret_access_key="testing",
    config=botocore.config.Config(max_pool_connections=SIZE, retries={"max_attempts": 0}),
)
in_threads(s3.list_buckets)
""",
        r"Config\(max_pool_connections=(\d+)\)",
    ),
    "kubernetes": SDK(
        "kubernetes",
        "kubernetes",
        _kubernetes,
        """
import kubernetes
configuration = kubernetes.client.Configuration()
configuration.host = URL
configuration.connection_pool_maxsize = SIZE
api = kubernetes.client.CoreV1Api(kubernetes.client.ApiClient(configuration))
in_threads(lambda: api.list_namespaced_pod("default", _request_timeout=(3.05, 10)))
""",
        r"configuration\.connection_pool_maxsize = (\d+)",
    ),
    "elasticsearch": SDK(
        "elasticsearch",
        "elasticsearch",
        _elasticsearch,
        """
from elasticsearch import Elasticsearch
es = Elasticsearch(URL, connections_per_node=SIZE)
in_threads(es.info)
""",
        r"Elasticsearch\(\.\.\., connections_per_node=(\d+)\)",
        blocks=True,
    ),
    "opensearch-py": SDK(
        "opensearchpy",
        "opensearch-py",
        _opensearch,
        """
from opensearchpy import OpenSearch
client = OpenSearch([URL], pool_maxsize=SIZE)
in_threads(client.info)
""",
        r"OpenSearch\(\.\.\., pool_maxsize=(\d+)\)",
    ),
    "influxdb-client": SDK(
        "influxdb_client",
        "influxdb-client",
        _influxdb,
        """
from influxdb_client import InfluxDBClient
client = InfluxDBClient(url=URL, token="t", org="o", connection_pool_maxsize=SIZE, timeout=10_000)
from influxdb_client.service.ping_service import PingService  # ping() hides its errors
in_threads(PingService(client.api_client).get_ping)
""",
        r"InfluxDBClient\(\.\.\., connection_pool_maxsize=(\d+)\)",
    ),
    "minio": SDK(
        "minio",
        "minio",
        _moto,
        """
import minio, urllib3
http = urllib3.PoolManager(  # as the advice writes it
    maxsize=SIZE, timeout=urllib3.Timeout(connect=300, read=300),
    retries=urllib3.Retry(total=5, backoff_factor=0.2, status_forcelist=[500, 502, 503, 504]),
)
client = minio.Minio(
    URL.split("://")[1], access_key="testing", secret_key="testing", secure=False,
    region="us-east-1", http_client=http if SIZE else None,
)
in_threads(client.list_buckets, n=16)
""",
        r"Minio\(\.\.\., http_client=urllib3\.PoolManager\(maxsize=(\d+), timeout=",
        threads=16,
        first=0,  # minio's own manager (maxsize=10), too small for 16 threads
    ),
    "hvac": SDK(
        "hvac",
        "hvac",
        _vault,
        """
import hvac, requests
from requests.adapters import HTTPAdapter
session = requests.Session()  # as the advice writes it
session.mount("http://", HTTPAdapter(pool_maxsize=SIZE or 1))
client = hvac.Client(url=URL, session=session if SIZE else None)
in_threads(lambda: client.sys.read_health_status(method="GET"), n=16)
""",
        r'session\.mount\("https://", HTTPAdapter\(pool_maxsize=(\d+)\)\)',
        threads=16,
        first=0,  # hvac's own Session (pool_maxsize=10), too small for 16 threads
    ),
    "google-auth": SDK(
        "google.auth",
        "google-auth",
        lambda: json_app({"/": "ok"}),
        """
from google.auth.credentials import AnonymousCredentials
from google.auth.transport.requests import AuthorizedSession
from requests.adapters import HTTPAdapter
session = AuthorizedSession(AnonymousCredentials())
if SIZE:  # as the advice writes it
    session.mount("http://", HTTPAdapter(pool_maxsize=SIZE))
in_threads(lambda: session.get(URL + "/", timeout=(3.05, 10)), n=16)
""",
        r'session\.mount\("https://", HTTPAdapter\(pool_maxsize=(\d+)\)\) on the '
        "AuthorizedSession",
        threads=16,
        first=0,  # a requests Session's own adapter (pool_maxsize=10), too small for 16
    ),
    "azure-core": SDK(
        "azure.core",
        "azure-core",
        lambda: json_app({"/": "ok"}),
        """
import requests
from requests.adapters import HTTPAdapter
from azure.core import PipelineClient
from azure.core.pipeline.transport import RequestsTransport
from azure.core.rest import HttpRequest
session = requests.Session()  # as the advice writes it
session.mount("http://", HTTPAdapter(pool_maxsize=SIZE or 1))
transport = RequestsTransport(session=session if SIZE else None)
transport.open()  # azure-core makes its Session on first use: here, not in 16 threads at once
client = PipelineClient(base_url=URL, transport=transport)
in_threads(lambda: client.send_request(HttpRequest("GET", URL + "/")), n=16)
""",
        r'session\.mount\("https://", HTTPAdapter\(pool_maxsize=(\d+)\)\)',
        threads=16,
        first=0,  # azure-core's own Session (pool_maxsize=10), too small for 16 threads
    ),
    "influxdb": SDK(
        "influxdb",
        "influxdb",
        _influxdb_v1,
        """
import urllib.parse
from influxdb import InfluxDBClient
where = urllib.parse.urlsplit(URL)
client = InfluxDBClient(host=where.hostname, port=where.port, pool_size=SIZE, timeout=10)
in_threads(client.ping)
""",
        r"InfluxDBClient\(\.\.\., pool_size=(\d+)\)",
    ),
    "docker": SDK(
        "docker",
        "docker",
        _docker,
        """
import docker
client = docker.DockerClient(base_url=URL, version="1.41", max_pool_size=SIZE)
in_threads(client.ping)
""",
        r"docker\.DockerClient\(\.\.\., max_pool_size=(\d+)\)",
        unix=True,
    ),
}


def _run(tmp_path: pathlib.Path, sdk: SDK, size: int) -> tuple[dict[str, Any], FakeAPI]:
    script = tmp_path / "app.py"
    script.write_text(PRELUDE + sdk.script)
    unix_path = str(tmp_path / "docker.sock") if sdk.unix else None
    # A pool that opens more connections: all the threads' requests are answered together. A
    # pool that blocks: each answer comes late, so the requests beyond its size wait.
    pace: dict[str, Any] = {"delay": 0.3} if sdk.blocks else {"together": sdk.threads}
    with FakeAPI(sdk.app(), unix_path=unix_path, **pace) as api:
        written = tmp_path / "report.json"
        run = [sys.executable, "-m", "poolscope", "run", "--format", "json", "-o", str(written)]
        out = subprocess.run(
            [*run, "--", sys.executable, str(script), api.url, str(size)],
            capture_output=True,
            text=True,
            timeout=120,
            env=_env(),
        )
    assert out.returncode == 0, out.stderr
    report: dict[str, Any] = json.loads(written.read_text())
    return report, api


def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("AWS_", "OTEL_"))}
    env["AWS_EC2_METADATA_DISABLED"] = "true"
    return env


def _waste(report: dict[str, Any]) -> int:
    return sum(a["waste"] for a in report["advice"])


@pytest.mark.parametrize("name", list(SDKS))
def test_an_sdk_pool_too_small_for_its_threads(tmp_path: pathlib.Path, name: str) -> None:
    sdk = SDKS[name]
    pytest.importorskip(sdk.module)
    report, api = _run(tmp_path, sdk, sdk.first)
    (pool,) = report["pools"]
    assert pool["library"] == sdk.library
    # Counted as the server counted: every request, every connection it accepted.
    assert (pool["requests"], pool["created"]) == (api.requests, api.connections)
    assert api.requests == sdk.threads
    (advice,) = report["advice"]
    assert advice["rule"] == ("pool_block" if sdk.blocks else "pool_maxsize")
    found = re.search(sdk.setting, advice["change"])
    assert found, advice["change"]
    # requests' words only where the SDK is handed a Session (hvac.Client(..., session=...),
    # azure-core's RequestsTransport(session=...)), or is one (an AuthorizedSession).
    assert "HTTPAdapter" not in advice["change"] or re.search(
        r"session=session\)|on the AuthorizedSession", advice["change"]
    )
    size = int(found.group(1))
    assert size == sdk.threads
    fixed, api = _run(tmp_path, sdk, size)
    assert fixed["advice"] == [] and _waste(fixed) == 0, fixed["advice"]
    (pool,) = fixed["pools"]
    assert (pool["requests"], pool["created"]) == (api.requests, api.connections)
    assert pool["discarded"] == pool["waits"] == 0
