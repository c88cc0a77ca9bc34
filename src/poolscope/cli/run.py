"""``poolscope run -- python app.py``: an unmodified program, instrumented, with a report at exit.

The program runs as a child process whose ``PYTHONPATH`` starts with a folder holding a
``sitecustomize`` module (as ``opentelemetry-instrument`` does it). That module calls
:func:`bootstrap`, which instruments every urllib3 PoolManager the program makes and, at exit
(normal, ``sys.exit`` or an uncaught exception), writes the report where the parent asked. The
parent then prints it and exits with the program's own exit code.
"""

from __future__ import annotations

import atexit
import json
import os
import subprocess
import sys
import tempfile

from ..process import instrument
from ..reporting.report import build_report, json_ready

_ENV_OUTPUT = "POOLSCOPE_RUN_OUTPUT"
_ENV_FORMAT = "POOLSCOPE_RUN_FORMAT"
_ENV_HTML = "POOLSCOPE_RUN_HTML"
_ENV_SITE = "POOLSCOPE_RUN_SITE"

_SITECUSTOMIZE = '''\
"""Written by poolscope run: instrument this process, then run the environment's own
sitecustomize.py, if one is further along sys.path."""
import importlib.util, os, sys

try:
    from poolscope.cli.run import bootstrap
    bootstrap()
finally:
    _here = os.environ.pop("POOLSCOPE_RUN_SITE", "")
    sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
    for _dir in sys.path:
        _next = os.path.join(_dir or ".", "sitecustomize.py")
        if os.path.isfile(_next):
            _spec = importlib.util.spec_from_file_location("_poolscope_next_sitecustomize", _next)
            if _spec is not None and _spec.loader is not None:
                _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
            break
'''


def bootstrap() -> None:
    """In the child: instrument every PoolManager and write the report at exit."""
    output = os.environ.pop(_ENV_OUTPUT, None)
    fmt = os.environ.pop(_ENV_FORMAT, "text")
    html_path = os.environ.pop(_ENV_HTML, None)
    if output is None:
        return
    instrument(mode="logging", report=True)
    atexit.register(_write_report, output, fmt, html_path)


def _write_report(output: str, fmt: str, html_path: str | None) -> None:
    try:
        report = build_report(final=True)
        with open(output, "w", encoding="utf-8") as f:
            if fmt == "json":
                json.dump(json_ready(report), f, indent=2)
                f.write("\n")
            else:
                f.write(report.render_text())
        if html_path:
            with open(html_path, "w", encoding="utf-8") as f:
                f.write(report.render_html())
    except Exception as exc:  # the program already ran; say why there is no report
        print(f"poolscope: could not write the report: {exc!r}", file=sys.stderr)


def run(command: list[str], *, fmt: str, html: str | None) -> int:
    """In the parent: run ``command`` instrumented, print its report, return its exit code."""
    if not command:
        print(
            "poolscope run needs a command after '--', for example: poolscope run -- python app.py",
            file=sys.stderr,
        )
        return 2
    with tempfile.TemporaryDirectory(prefix="poolscope-run-") as tmp:
        site = os.path.join(tmp, "site")
        os.mkdir(site)
        with open(os.path.join(site, "sitecustomize.py"), "w", encoding="utf-8") as f:
            f.write(_SITECUSTOMIZE)
        output = os.path.join(tmp, "report")
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (site, env.get("PYTHONPATH")) if p)
        env[_ENV_SITE] = os.path.abspath(site)
        env[_ENV_OUTPUT] = output
        env[_ENV_FORMAT] = fmt
        if html:
            env[_ENV_HTML] = os.path.abspath(html)
        try:
            code = subprocess.call(command, env=env)
        except FileNotFoundError:
            print(f"poolscope run: no such program: {command[0]!r}.", file=sys.stderr)
            return 127
        except KeyboardInterrupt:
            code = 130
        if os.path.exists(output):
            with open(output, encoding="utf-8") as f:
                sys.stdout.write(f.read())
        else:
            print(
                "poolscope run: the program left no report (it is not a Python program, or it "
                "ended with os._exit or a signal).",
                file=sys.stderr,
            )
        sys.stdout.flush()
        return code
