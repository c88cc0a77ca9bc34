"""Every Python snippet in the README runs as written when pasted, against a loopback server
standing in for the example.org it names; and the shell commands a test can run here (the
opentelemetry-instrument line, promtool's, the backends' curl query) do as they say."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from poolscope.loopback import LoopbackServer

from .support.binaries import require

README = pathlib.Path(__file__).resolve().parent.parent / "README.md"
SNIPPETS = re.findall(r"```python\n(.*?)```", README.read_text(), re.S)


def test_the_readme_has_snippets() -> None:
    assert len(SNIPPETS) >= 5


@pytest.mark.parametrize("number", range(len(SNIPPETS)))
def test_each_readme_snippet_runs_as_written(number: int, tmp_path: pathlib.Path) -> None:
    snippet = SNIPPETS[number]
    assert "example.org" in snippet or "127.0.0.1" in snippet, snippet
    with LoopbackServer("127.0.0.1") as server:
        script = tmp_path / "snippet.py"
        script.write_text(snippet.replace("https://example.org/", server.url + "/"))
        out = subprocess.run(
            [sys.executable, str(script)],
            capture_output=True,
            text=True,
            timeout=60,
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        )
        assert out.returncode == 0, f"README snippet {number} failed:\n{snippet}\n{out.stderr}"
        assert server.requests >= 1  # it made its request


def _shell_lines(text: str, starts: str) -> list[str]:
    """The commands of ``sh`` blocks that start with ``starts``, comments taken off."""
    blocks = re.findall(r"```sh\n(.*?)```", text, re.S)
    return [
        line.split("  #")[0].strip()
        for block in blocks
        for line in block.splitlines()
        if line.startswith(starts)
    ]


def test_the_readmes_opentelemetry_instrument_command_prints_metrics(
    tmp_path: pathlib.Path,
) -> None:
    (command,) = _shell_lines(README.read_text(), "opentelemetry-instrument ")
    bin_dir = os.path.dirname(sys.executable)
    app = tmp_path / "app.py"
    app.write_text("import sys, requests\nrequests.get(sys.argv[1])\n")
    with LoopbackServer("127.0.0.1") as server:
        argv = command.split()
        assert argv[-2:] == ["python", "app.py"]
        out = subprocess.run(
            [os.path.join(bin_dir, argv[0]), *argv[1:-2], sys.executable, str(app), server.url],
            capture_output=True,
            text=True,
            timeout=120,
            env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
        )
    assert out.returncode == 0, out.stderr
    assert "Failed to auto initialize" not in out.stderr, out.stderr
    assert '"name": "urllib3.pool.connections.created"' in out.stdout


def test_the_readmes_promtool_commands_run_from_the_repository_root() -> None:
    promtool = require("promtool", "prometheus")
    commands = _shell_lines(README.read_text(), "promtool ")
    assert len(commands) == 2
    for command in commands:
        argv = command.split()
        out = subprocess.run(
            [promtool, *argv[1:]], cwd=README.parent, capture_output=True, text=True, timeout=60
        )
        assert out.returncode == 0, f"{command}\n{out.stdout}{out.stderr}"


def test_the_backends_curl_query_reaches_the_server() -> None:
    # Any server stands in for Prometheus: what matters is that curl sends the query as written.
    text = (README.parent / "examples" / "backends" / "README.md").read_text()
    (command,) = _shell_lines(text, "curl ")
    with LoopbackServer("127.0.0.1") as server:
        argv = [arg.strip("'") for arg in command.split()]
        argv = [arg.replace("http://127.0.0.1:9090", server.url) for arg in argv]
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{command}: curl exit {out.returncode} {out.stderr}"
        assert server.requests == 1
