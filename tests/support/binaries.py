"""Debian binaries the end-to-end tests drive (chromium, prometheus, promtool): found on PATH,
skipped where missing outside CI, a failure in CI (.ci/run installs them)."""

from __future__ import annotations

import os
import shutil

import pytest


def require(binary: str, package: str) -> str:
    """The path of ``binary``, from Debian's ``package``; skips (or, in CI, fails) without it."""
    path = shutil.which(binary)
    if path is None:
        if os.environ.get("CI"):
            pytest.fail(f"CI must install Debian's {package} package (.ci/run does).")
        pytest.skip(f"{binary} (Debian's {package} package) is not installed.")
    return path


# Debian's chromium, headless, as the HTML tests run it: no sandbox (root in CI), no network.
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
