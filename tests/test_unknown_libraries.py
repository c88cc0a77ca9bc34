"""A library poolscope has no entry for (#29): the report names it, where it builds its pool,
and the line of the program that led there, then the change in urllib3's words.

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


def install(site: pathlib.Path) -> None:
    package = site / "acme_sdk"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("from .client import Client\n")
    (package / "client.py").write_text(textwrap.dedent(SDK))
    info = site / "acme_sdk-1.2.0.dist-info"
    info.mkdir()
    (info / "METADATA").write_text("Metadata-Version: 2.1\nName: acme-sdk\nVersion: 1.2.0\n")
    (info / "top_level.txt").write_text("acme_sdk\n")
    (info / "RECORD").write_text("")


def test_a_library_poolscope_does_not_know_is_named_with_where_it_builds_its_pool(
    tmp_path: pathlib.Path,
) -> None:
    site = tmp_path / "lib" / "site-packages"
    install(site)
    app = tmp_path / "app.py"
    app.write_text(APP)
    written = tmp_path / "report.json"
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(site), os.environ.get("PYTHONPATH", "")]),
    }
    with LoopbackServer("127.0.0.1", together=6) as server:
        subprocess.run(
            [
                *(sys.executable, "-m", "poolscope", "run", "--format", "json"),
                *("-o", str(written), "--", sys.executable, str(app), server.url),
            ],
            env=env,
            cwd=tmp_path,
            check=True,
            timeout=120,
        )
        requests_, connections = server.requests, server.connections
    report = json.loads(written.read_text())
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
