"""A library poolscope has no entry for (#29): the report names it, where it builds its pool
(its urllib3 pool, its requests Session or its httpx client), and the line of the program that
led there, then the change in the words of the client it builds.

The library is written here, installed as a distribution would be (a package and its
``.dist-info`` under a ``site-packages`` directory on ``PYTHONPATH``), and run under
``poolscope run`` against a loopback server.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

from poolscope.loopback import LoopbackServer

SDK = '''
import urllib3


class Client:
    """An SDK that builds its own pool manager, with a pool too small for its users."""

    def __init__(self, url):
        self.url = url
        self.http = urllib3.PoolManager(maxsize=2)

    def ping(self):
        return self.http.request("GET", self.url + "/together").data
'''

APP = """
import sys, threading
import acme_sdk


def main():
    client = acme_sdk.Client(sys.argv[1])
    for _ in range(3):
        workers = [threading.Thread(target=client.ping) for _ in range(6)]
        [w.start() for w in workers]
        [w.join() for w in workers]


main()
"""


SESSION_SDK = '''
import requests


class Client:
    """An SDK that builds its own requests Session (pool_maxsize 10), for 16 threads."""

    def __init__(self, url):
        self.url = url
        self.session = requests.Session()

    def ping(self):
        return self.session.get(self.url + "/together").content
'''

SESSION_APP = APP.replace("acme_sdk", "beta_sdk").replace("range(6)", "range(16)")


HTTPX_SDK = '''
import httpx


class Client:
    """An SDK that builds its own httpx client, keeping fewer connections than its threads."""

    def __init__(self, url, http_client=None):
        self.url = url
        self.http = http_client or httpx.Client(limits=httpx.Limits(max_keepalive_connections=2))

    def ping(self):
        return self.http.get(self.url + "/together").content
'''

HTTPX_APP = APP.replace("acme_sdk", "gamma_sdk")
# The program builds the client and hands it to the library: the client is the user's to size.
HANDED_APP = HTTPX_APP.replace(
    "client = gamma_sdk.Client(sys.argv[1])",
    "import httpx\n    limits = httpx.Limits(max_keepalive_connections=2)\n"
    "    client = gamma_sdk.Client(sys.argv[1], http_client=httpx.Client(limits=limits))",
)


def install(site: pathlib.Path, package_name: str = "acme_sdk", source: str = SDK) -> None:
    distribution = package_name.replace("_", "-")
    package = site / package_name
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .client import Client\n")
    (package / "client.py").write_text(textwrap.dedent(source))
    info = site / f"{package_name}-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(f"Metadata-Version: 2.1\nName: {distribution}\nVersion: 1.2.0\n")
    (info / "top_level.txt").write_text(f"{package_name}\n")
    (info / "RECORD").write_text("")


def run(tmp_path: pathlib.Path, app_source: str, together: int) -> tuple[dict[str, Any], int, int]:
    """``app_source`` under poolscope run, with the installed site on PYTHONPATH: the report,
    and the requests and connections the server counted."""
    app = tmp_path / "app.py"
    app.write_text(app_source)
    written = tmp_path / "report.json"
    path = os.pathsep.join(
        [str(tmp_path / "lib" / "site-packages"), os.environ.get("PYTHONPATH", "")]
    )
    with LoopbackServer("127.0.0.1", together=together) as server:
        subprocess.run(
            [
                *(sys.executable, "-m", "poolscope", "run", "--format", "json"),
                *("-o", str(written), "--", sys.executable, str(app), server.url),
            ],
            env={**os.environ, "PYTHONPATH": path},
            cwd=tmp_path,
            check=True,
            timeout=120,
        )
        counted = server.requests, server.connections
    return json.loads(written.read_text()), *counted


def test_a_library_poolscope_does_not_know_is_named_with_where_it_builds_its_pool(
    tmp_path: pathlib.Path,
) -> None:
    install(tmp_path / "lib" / "site-packages")
    report, requests_, connections = run(tmp_path, APP, 6)
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections) == (18, connections)
    assert pool["library"] == "acme-sdk"
    (advice,) = [a for a in report["advice"] if a["rule"] == "pool_maxsize"]
    assert "Raise maxsize to 6: urllib3.PoolManager(maxsize=6)" in advice["change"]
    assert "acme-sdk 1.2.0 builds this pool itself" in advice["change"]
    built = (
        textwrap.dedent(SDK)
        .splitlines()
        .index("        self.http = urllib3.PoolManager(maxsize=2)")
    )
    led = APP.splitlines().index("    client = acme_sdk.Client(sys.argv[1])")
    where = f"(acme_sdk/client.py:{built + 1}, in Client.__init__; "
    assert f"{where}reached from app.py:{led + 1}, in main)" in advice["change"]


def test_a_library_that_builds_its_own_requests_session_is_named_in_requests_words(
    tmp_path: pathlib.Path,
) -> None:
    install(tmp_path / "lib" / "site-packages", "beta_sdk", SESSION_SDK)
    report, requests_, connections = run(tmp_path, SESSION_APP, 16)
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections) == (48, connections)
    assert pool["library"] == "beta-sdk"
    (advice,) = [a for a in report["advice"] if a["rule"] == "pool_maxsize"]
    assert "Raise pool_maxsize to 16: HTTPAdapter(pool_maxsize=16)" in advice["change"]
    built = (
        textwrap.dedent(SESSION_SDK).splitlines().index("        self.session = requests.Session()")
    )
    led = SESSION_APP.splitlines().index("    client = beta_sdk.Client(sys.argv[1])")
    assert (
        f"beta-sdk 1.2.0 builds its requests Session itself (beta_sdk/client.py:{built + 1}, in "
        f"Client.__init__; reached from app.py:{led + 1}, in main). Such libraries usually take "
        "a Session of yours"
    ) in advice["change"]


def test_a_library_that_builds_its_own_httpx_client_is_named_in_httpx_words(
    tmp_path: pathlib.Path,
) -> None:
    install(tmp_path / "lib" / "site-packages", "gamma_sdk", HTTPX_SDK)
    report, requests_, connections = run(tmp_path, HTTPX_APP, 6)
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections) == (18, connections)
    assert pool["library"] == "gamma-sdk" and pool["discarded"] == connections - 2 > 0
    (advice,) = [a for a in report["advice"] if a["rule"] == "pool_maxsize"]
    assert advice["change"].startswith(
        "Raise max_keepalive_connections to 6: "
        "httpx.Client(limits=httpx.Limits(max_keepalive_connections=6))"
    )
    built = (
        textwrap.dedent(HTTPX_SDK)
        .splitlines()
        .index(
            "        self.http = http_client or "
            "httpx.Client(limits=httpx.Limits(max_keepalive_connections=2))"
        )
    )
    led = HTTPX_APP.splitlines().index("    client = gamma_sdk.Client(sys.argv[1])")
    assert (
        f"gamma-sdk 1.2.0 builds its httpx client itself (gamma_sdk/client.py:{built + 1}, in "
        f"Client.__init__; reached from app.py:{led + 1}, in main). Such libraries usually take "
        "a client of yours: look in its constructor for an http_client=, client= or transport="
    ) in advice["change"]


def test_a_library_handed_the_programs_httpx_client_is_not_said_to_build_it(
    tmp_path: pathlib.Path,
) -> None:
    install(tmp_path / "lib" / "site-packages", "gamma_sdk", HTTPX_SDK)
    report, requests_, connections = run(tmp_path, HANDED_APP, 6)
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections) == (18, connections)
    assert pool["library"] == "httpx" and pool["discarded"] == connections - 2 > 0
    (advice,) = [a for a in report["advice"] if a["rule"] == "pool_maxsize"]
    assert advice["change"] == (
        "Raise max_keepalive_connections to 6: "
        "httpx.Client(limits=httpx.Limits(max_keepalive_connections=6)) (and max_connections at "
        "least as many)."
    )
