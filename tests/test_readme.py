"""Every Python snippet in the README runs as written when pasted, against a loopback server
standing in for the example.org it names."""

from __future__ import annotations

import os
import pathlib
import re
import subprocess
import sys

import pytest

from poolscope.loopback import LoopbackServer

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
