"""Running a program under ``poolscope run`` as a user would, and reading its JSON report."""

from __future__ import annotations

import json
import os
import pathlib
import subprocess
import sys
import textwrap
from typing import Any

RUN = [sys.executable, "-m", "poolscope", "run"]


def run_program(
    tmp_path: pathlib.Path,
    script: str,
    *args: str,
    python: str = sys.executable,
    extra: tuple[str, ...] = (),
) -> tuple[subprocess.CompletedProcess[str], dict[str, Any] | None]:
    """``poolscope run --format json -o report.json EXTRA -- python app.py ARGS``: its output,
    and the report it wrote (None if it wrote none)."""
    path = tmp_path / "app.py"
    path.write_text(textwrap.dedent(script))
    written = tmp_path / "report.json"
    written.unlink(missing_ok=True)
    out = subprocess.run(
        [*RUN, "--format", "json", "-o", str(written), *extra, "--", python, str(path), *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={k: v for k, v in os.environ.items() if not k.startswith("OTEL_")},
    )
    report = json.loads(written.read_text()) if written.exists() else None
    return out, report
