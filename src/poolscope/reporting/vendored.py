"""Copies of urllib3 that other packages vendor (pip's ``pip._vendor.urllib3``): named in the
report, not instrumented.

poolscope instruments urllib3 where its classes are defined, in the ``urllib3`` package; a
vendored copy is another set of modules with classes of its own, so its pools are not seen.
Instrumenting one would mean running poolscope's patches against a copy of unknown version and
patch level that its owner changes at will (pip rewrites its imports, and may patch it), inside
a tool that must keep working (pip installs the packages that fix things): docs/decisions.md,
"Vendored copies of urllib3", says why poolscope names them instead. The report lists each copy
a process had imported, so that a run whose requests went through one says what it misses.
"""

from __future__ import annotations

import sys

_VENDORED = ("._vendor.urllib3", ".vendored.urllib3", "._vendored.urllib3")


def vendored_copies() -> tuple[str, ...]:
    """One sentence for each vendored copy of urllib3 this process has imported."""
    found = []
    for name, module in list(sys.modules.items()):
        # requests.packages.urllib3 is urllib3 itself under another name, not a copy.
        if not name.endswith(_VENDORED) or getattr(module, "__name__", "urllib3") == "urllib3":
            continue
        owner = name.partition(".")[0]
        version = getattr(module, "__version__", "of unknown version")
        found.append(
            f"{name} ({owner}'s own copy of urllib3 {version}) was imported: poolscope does not "
            "instrument vendored copies of urllib3, so requests made through it are not "
            "counted here."
        )
    return tuple(sorted(found))
