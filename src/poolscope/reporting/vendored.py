"""HTTP client code this process imported that poolscope did not instrument, named in the
report with the reason: copies of urllib3 that other packages vendor (pip's
``pip._vendor.urllib3``), and an httpcore older than the ones poolscope knows.

Process-wide instrumentation (``poolscope.instrument()``, ``poolscope run``) instruments a copy
as it is imported (poolscope/instrumentation/copies.py) and leaves a mark on its package:
"instrumented", or why it left the copy alone (not a whole urllib3, a version poolscope does
not support, code that differs where poolscope reads it, poolscope's own failure). A copy
without the mark was imported with no process-wide instrumentation in place, or by a loader
poolscope could not watch. Either way its requests are not counted, and the report says so
rather than call the run healthy.
"""

from __future__ import annotations

import sys

_VENDORED = ("._vendor.urllib3", ".vendored.urllib3", "._vendored.urllib3")
_MARK = "_poolscope_copy"  # instrumentation/copies.py's MARK (reporting imports only the core)


def vendored_copies() -> tuple[str, ...]:
    """One sentence for each vendored copy of urllib3 this process imported and poolscope did
    not instrument."""
    found = []
    # A copy made in one step: a finalizer the garbage collector runs as a list is built may
    # import a module (a ResourceWarning does), and sys.modules must not change under it.
    for name, module in sys.modules.copy().items():
        # requests.packages.urllib3 is urllib3 itself under another name, not a copy.
        if not name.endswith(_VENDORED) or getattr(module, "__name__", "urllib3") == "urllib3":
            continue
        mark = getattr(module, _MARK, None)
        if mark == "instrumented":
            continue
        owner = name.partition(".")[0]
        version = getattr(module, "__version__", "of unknown version")
        why = (
            f"poolscope left it alone: {mark}"
            if mark
            else "poolscope instruments vendored copies with process-wide instrumentation "
            "only (poolscope.instrument() or poolscope run) as they are imported"
        )
        found.append(
            f"{name} ({owner}'s own copy of urllib3 {version}) was imported and {why}; "
            "requests made through it are not counted here."
        )
    return tuple(sorted(found))


def unsupported_httpcore() -> tuple[str, ...]:
    """One sentence for each httpcore (or httpcore2) this process imported that is older than
    poolscope instruments (1.0.3): httpx's requests through it are not counted."""
    found = []
    for name in ("httpcore", "httpcore2"):
        pool = getattr(sys.modules.get(name), "ConnectionPool", None)
        # httpx_pools/hooks.py's own test: 1.0.3 made the pool's one place of decision.
        if pool is None or hasattr(pool, "_assign_requests_to_connections"):
            continue
        version = getattr(sys.modules[name], "__version__", "of unknown version")
        found.append(
            f"{name} {version} was imported: poolscope instruments httpcore 1.0.3 and later, "
            "so requests made through httpx (and the SDKs on it) are not counted here; "
            f"upgrade it: pip install '{name}>=1.0.3'."
        )
    return tuple(found)
