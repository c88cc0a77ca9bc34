"""The urllib3, http.client and requests call sites that :mod:`.callsites` reads, listed, and the
check that each is where its rule expects it.

The test suite runs the check against the installed urllib3 and requests
(tests/test_urllib3_call_sites.py, which fails loudly when a supported urllib3 moves one), and
:mod:`.copies` against a vendored copy of urllib3 before instrumenting it.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

# (module, function, what its source must contain, what poolscope reads from the call)
CALL_SITES: tuple[tuple[str, str, str, str], ...] = (
    (
        "urllib3.connectionpool",
        "HTTPConnectionPool._get_conn",
        "conn.close()",
        "a close() called from _get_conn is its drop check: the connection was found dropped",
    ),
    (
        "http.client",
        "HTTPConnection.getresponse",
        "self.close()",
        "a close() called from getresponse is 'Connection: close' (or a connection error)",
    ),
    (
        "urllib3.connectionpool",
        "HTTPConnectionPool.urlopen",
        "conn.close()",
        "a close() called from urlopen with no exception in flight is its cleanup before a "
        "retry; its local `retries` (a Retry) ends with the error that caused it",
    ),
    (
        "urllib3.connectionpool",
        "HTTPConnectionPool.urlopen",
        "retries = retries.increment(",
        "a close() called from urlopen with an exception in flight: the error reaches the "
        "program; its local `retries` is the Retry in force (its history, the retries made)",
    ),
    (
        "urllib3.connectionpool",
        "HTTPConnectionPool.urlopen",
        "timeout_obj = self._get_timeout(timeout)",
        "urlopen's local `timeout_obj` is the Timeout in force (read_timeout: the read timeout)",
    ),
    (
        "urllib3.response",
        "HTTPResponse.__init__",
        "self._pool = pool",
        "a response being read holds its pool in `_pool`: the thread reading it is in a request",
    ),
    (
        "requests.adapters",
        "HTTPAdapter.send",
        "resp = conn.urlopen(",
        "HTTPAdapter.send's local `conn` is the pool its request goes through",
    ),
    (
        "requests.sessions",
        "Session.send",
        "r = adapter.send(",
        "Session.send's local `r` is the Response whose `raw` holds the pool, until it returns",
    ),
    (
        "urllib3._collections",
        "RecentlyUsedContainer.clear",
        "dispose_func(",
        "a pool disposed from clear() was let go by PoolManager.clear(), not evicted",
    ),
    (
        "urllib3._collections",
        "RecentlyUsedContainer.__setitem__",
        "dispose_func(",
        "a pool disposed from __setitem__ was evicted by a newer one",
    ),
)


def misplaced_call_sites(urllib3_package: str = "urllib3") -> list[str]:
    """Each call site of CALL_SITES that is not where the rules read it, in ``urllib3_package``
    (urllib3, or a vendored copy), as a sentence; empty when all are. What the test suite
    checks of urllib3 and requests, and what a vendored copy must pass to be instrumented
    (requests' sites are read only to find requests in flight as ``poolscope run``'s program
    ends, for urllib3's own pools: a copy's are not checked, nor its requests imported)."""
    problems = []
    for module, qualname, needle, meaning in CALL_SITES:
        top, _, rest = module.partition(".")
        if top == "urllib3":
            module = f"{urllib3_package}.{rest}"
        elif top == "requests" and urllib3_package != "urllib3":
            continue
        try:
            function: Any = importlib.import_module(module)
            for part in qualname.split("."):
                function = getattr(function, part)
        except Exception:
            problems.append(f"{module}.{qualname} is not there ({meaning})")
            continue
        try:
            source = inspect.getsource(function)
        except (OSError, TypeError):  # no source to read: a frozen or .pyc-only install
            problems.append(f"the source of {module}.{qualname} cannot be read to check it")
            continue
        if needle not in source:
            problems.append(f"{module}.{qualname} does not call {needle} ({meaning})")
    return problems
