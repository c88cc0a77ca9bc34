"""Vendored copies of urllib3 (#29): pip's ``pip._vendor.urllib3`` and any package's
``*._vendor.urllib3`` are instrumented by process-wide instrumentation as they are imported,
counted exactly and reported under the library that builds the pool; a copy poolscope leaves
alone is named in the report with the reason.

The programs run under ``poolscope run`` against loopback servers; the copies other than pip's
are urllib3 itself, copied into a package in a temporary ``site-packages`` as a vendoring tool
would.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil
import subprocess
import sys
from typing import Any

import pytest
import urllib3

import poolscope
from poolscope.loopback import LoopbackServer

pytest.importorskip("pip._vendor.urllib3.poolmanager", reason="pip vendors no urllib3 here")

PIP_SESSION_APP = """
import sys, threading
from pip._internal.network.session import PipSession


def main():
    session = PipSession()
    for _ in range(3):
        workers = [threading.Thread(target=fetch, args=(session,)) for _ in range(16)]
        [w.start() for w in workers]
        [w.join() for w in workers]


def fetch(session):
    session.get(sys.argv[1] + "/together").content


main()
"""

COPY_APP = """
import sys
from vend_sdk._vendor import urllib3

http = urllib3.PoolManager(maxsize=2)
for _ in range(5):
    http.request("GET", sys.argv[1] + "/x")
"""


def run(
    tmp_path: pathlib.Path, command: list[str], together: int = 1
) -> tuple[dict[str, Any], int, int]:
    """``command`` (its program's URL appended) under poolscope run, with tmp_path's site on
    PYTHONPATH and pip kept to loopback: the report, and the requests and connections the
    server counted."""
    written = tmp_path / "report.json"
    site = tmp_path / "site-packages"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env.update(
        PYTHONPATH=os.pathsep.join([str(site), env.get("PYTHONPATH", "")]),
        PIP_DISABLE_PIP_VERSION_CHECK="1",
        PIP_CONFIG_FILE=os.devnull,
        PIP_NO_CACHE_DIR="1",
        NO_PROXY="*",
    )
    with LoopbackServer("127.0.0.1", together=together) as server:
        subprocess.run(
            [
                *(sys.executable, "-m", "poolscope", "run", "--format", "json"),
                *("-o", str(written), "--", *command, server.url),
            ],
            env=env,
            cwd=tmp_path,
            timeout=120,
        )
        counted = server.requests, server.connections
    return json.loads(written.read_text()), *counted


def app(tmp_path: pathlib.Path, source: str) -> list[str]:
    (tmp_path / "app.py").write_text(source)
    return [sys.executable, str(tmp_path / "app.py")]


def vendor_urllib3(tmp_path: pathlib.Path) -> pathlib.Path:
    """urllib3 copied into ``vend_sdk._vendor.urllib3``, as vendoring tools copy it (urllib3's
    own imports are relative)."""
    vendor = tmp_path / "site-packages" / "vend_sdk" / "_vendor"
    vendor.mkdir(parents=True)
    (vendor.parent / "__init__.py").write_text("")
    (vendor / "__init__.py").write_text("")
    copy = vendor / "urllib3"
    shutil.copytree(pathlib.Path(urllib3.__file__).parent, copy)
    return copy


def test_pips_session_is_counted_and_advised_in_pips_words(tmp_path: pathlib.Path) -> None:
    # pip builds its requests Session (pip's vendored requests over pip's vendored urllib3)
    # with requests' default pool of 10; sixteen threads share it.
    report, requests_, connections = run(tmp_path, app(tmp_path, PIP_SESSION_APP), together=16)
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections) == (48, connections)
    assert pool["discarded"] == connections - 10
    assert pool["library"] == "pip"
    (advice,) = [a for a in report["advice"] if a["rule"] == "pool_maxsize"]
    assert advice["change"].startswith("Raise pool_maxsize to 16: HTTPAdapter(pool_maxsize=16)")
    assert "pip " in advice["change"] and "builds its requests Session itself" in advice["change"]
    assert "reached from app.py:" in advice["change"]
    assert report["incomplete"] == []


def test_pip_itself_under_poolscope_run_is_counted_as_the_server_counts(
    tmp_path: pathlib.Path,
) -> None:
    # The real pip, looking for a package in an index on loopback (which has none).
    command = [sys.executable, "-m", "pip", "download", "--no-deps", "-d", str(tmp_path / "d")]
    command += ["--retries", "0", "no-such-package", "--index-url"]
    report, requests_, connections = run(tmp_path, command)
    assert requests_ >= 1
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections)
    assert pool["library"] == "pip"
    assert report["incomplete"] == []


def test_any_packages_vendored_copy_is_counted(tmp_path: pathlib.Path) -> None:
    vendor_urllib3(tmp_path)
    report, requests_, connections = run(tmp_path, app(tmp_path, COPY_APP))
    (pool,) = report["pools"]
    assert (pool["requests"], pool["created"]) == (requests_, connections) == (5, 1)
    assert report["incomplete"] == []


def old_copy(copy: pathlib.Path) -> str:
    (copy / "_version.py").write_text('__version__ = "1.25.11"\n')
    return COPY_APP


def partial_copy(copy: pathlib.Path) -> str:
    # A vendoring that kept part of urllib3 only; the program's requests go through urllib3.
    (copy / "poolmanager.py").write_text("raise ImportError('trimmed by the vendoring')\n")
    (copy / "__init__.py").write_text('__version__ = "2.0.0"\n')
    source = "import sys, urllib3\nimport vend_sdk._vendor.urllib3\n"
    return source + "urllib3.PoolManager().request('GET', sys.argv[1])\n"


def patched_copy(copy: pathlib.Path) -> str:
    # The drop check's close, written another way by the vendoring: the rule reading it
    # would miss it, so the copy is left alone.
    source = (copy / "connectionpool.py").read_text()
    dropped = 'log.debug("Resetting dropped connection: %s", self.host)\n            conn.close()'
    assert dropped in source
    patched = source.replace(dropped, dropped.replace("conn.close()", "conn.close ()"))
    (copy / "connectionpool.py").write_text(patched)
    return COPY_APP


@pytest.mark.parametrize(
    ("make", "why"),
    [
        (old_copy, "it is urllib3 1.25.11; poolscope supports 1.26 and 2"),
        (
            partial_copy,
            "it is not a whole urllib3 (vend_sdk._vendor.urllib3.poolmanager does not import: "
            "trimmed by the vendoring)",
        ),
        (
            patched_copy,
            "its code differs from urllib3's where poolscope reads it: vend_sdk._vendor.urllib3"
            ".connectionpool.HTTPConnectionPool._get_conn does not call conn.close()",
        ),
    ],
    ids=["unsupported version", "not whole", "patched where poolscope reads it"],
)
def test_a_copy_left_alone_is_named_with_the_reason(
    tmp_path: pathlib.Path, make: Any, why: str
) -> None:
    source = make(vendor_urllib3(tmp_path))
    report, requests_, _ = run(tmp_path, app(tmp_path, source))
    (line,) = report["incomplete"]
    assert line.startswith("vend_sdk._vendor.urllib3 (vend_sdk's own copy of urllib3 ")
    assert f"poolscope left it alone: {why}" in line
    assert line.endswith("requests made through it are not counted here.")
    through_urllib3 = make is partial_copy
    counted = sum(pool["requests"] for pool in report["pools"])
    assert requests_ >= 1 and counted == (requests_ if through_urllib3 else 0)


def test_uninstrument_gives_a_copy_back_and_stops_watching_for_copies() -> None:
    from pip._vendor.urllib3 import poolmanager

    original = poolmanager.PoolManager.__dict__["__init__"]
    finders = list(sys.meta_path)
    poolscope.instrument(mode="logging")
    try:
        assert poolmanager.PoolManager.__dict__["__init__"] is not original
        assert len(sys.meta_path) > len(finders)  # watching for copies (and httpcore)
    finally:
        poolscope.uninstrument()
    assert poolmanager.PoolManager.__dict__["__init__"] is original
    assert sys.meta_path == finders
    assert not hasattr(poolmanager.PoolManager(), "_poolscope")


def test_a_copy_imported_again_is_instrumented_once_and_keeps_its_loader() -> None:
    # reload() finds the copy again; its PoolManager is wrapped once, and its loader stays
    # the file loader it was (pkg_resources and importlib.resources read it).
    import importlib

    from pip._vendor import urllib3 as copy
    from pip._vendor.urllib3 import poolmanager

    original = poolmanager.PoolManager.__dict__["__init__"]
    poolscope.instrument(mode="logging")
    try:
        wrapped = poolmanager.PoolManager.__dict__["__init__"]
        importlib.reload(copy)
        assert poolmanager.PoolManager.__dict__["__init__"] is wrapped
        assert wrapped.__wrapped__ is original
        assert type(copy.__spec__.loader).__name__ == "SourceFileLoader"
        assert "exec_module" not in vars(copy.__spec__.loader)
    finally:
        poolscope.uninstrument()
    assert poolmanager.PoolManager.__dict__["__init__"] is original


def test_managers_of_urllib3_and_of_a_copy_have_ids_of_their_own() -> None:
    from pip._vendor import urllib3 as copy

    poolscope.instrument(mode="logging")
    try:
        ours, theirs = urllib3.PoolManager(), copy.PoolManager()
        assert ours._poolscope.id != theirs._poolscope.id
    finally:
        poolscope.uninstrument()


def test_a_copy_imported_with_no_process_wide_instrumentation_is_named_as_such() -> None:
    from pip._vendor import urllib3  # noqa: F401

    from poolscope.reporting.vendored import vendored_copies

    (line,) = [c for c in vendored_copies() if c.startswith("pip._vendor.urllib3 ")]
    assert "poolscope instruments vendored copies with process-wide instrumentation only" in line
