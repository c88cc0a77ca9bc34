"""A library poolscope has no entry for, named from the stack as it builds a pool or manager.

When no frame belongs to a library of :mod:`poolscope.core.libraries`, the first frame outside
urllib3 and poolscope whose file is installed (under a ``site-packages`` or ``dist-packages``
directory) names the library that builds the pool: its distribution's name and version (from
``importlib.metadata``), the place in it (file, line, function), and the first frame further
out that is the program's own (neither installed nor the standard library). A program whose
own code comes first built the pool itself: urllib3's words, as before. The report then
speaks urllib3's words and says that this library builds the pool itself, and how such
libraries usually take one of the user's. Asked once as a manager or a pool on its own is
made, never on the request path.
"""

from __future__ import annotations

import importlib.metadata
import os
import sysconfig
from types import FrameType

from ..core.libraries import met_unknown

_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_STDLIB = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)
_distributions: dict[str, list[str]] | None = None  # top-level package -> distributions


def unknown_library(
    frame: FrameType | None, depth: int, passed: tuple[str, ...], *, via_requests: bool = False
) -> str | None:
    """The name of the installed library building a pool from ``frame`` outward (registered
    with its description), or None when the program's own code builds it. ``passed``: the
    packages whose frames are walked past (urllib3 or a vendored copy of it, poolscope, and
    requests or the copy's when ``via_requests``: the library builds a requests Session)."""
    site: FrameType | None = None
    user: FrameType | None = None
    inside = tuple(f"{package}." for package in passed)
    for _ in range(depth):
        if frame is None:
            break
        module = frame.f_globals.get("__name__") or ""
        filename = frame.f_code.co_filename
        if module not in passed and not module.startswith(inside):
            if site is None:
                if _installed(filename):
                    site = frame
                elif not _stdlib(filename):
                    return None  # the program's own code builds it
            elif not _installed(filename) and not _stdlib(filename):
                user = frame
                break
        frame = frame.f_back
    if site is None:
        return None
    top = (site.f_globals.get("__name__") or "").partition(".")[0]
    name, version = _distribution(top)
    where = f"{_installed_path(site.f_code.co_filename)}:{site.f_lineno}, in {_function(site)}"
    reached = (
        f"; reached from {_user_path(user.f_code.co_filename)}:{user.f_lineno}, in "
        f"{_function(user)}"
        if user is not None
        else ""
    )
    built_by = described(f"{name} {version}", f"{where}{reached}", via_requests=via_requests)
    met_unknown(name, built_by, words_of="requests" if via_requests else "urllib3")
    return name


def described(name: str, where: str, *, via_requests: bool) -> str:
    """What the advice says of a library poolscope has no entry for that builds a pool (or,
    ``via_requests``, a requests Session): which, where (as ``where`` says), and how such
    libraries usually take one of yours."""
    if via_requests:
        return (
            f"{name} builds its requests Session itself ({where}). Such libraries usually take "
            "a Session of yours: look in its constructor for a session= (then mount the "
            "HTTPAdapter on that Session), or for a pool-size option (pool_size, pool_maxsize)."
        )
    return (
        f"{name} builds this pool itself ({where}). Such libraries usually take a pool of "
        "yours: look in its constructor for a urllib3.PoolManager or requests Session to hand "
        "it, or for a pool-size option (maxsize, pool_maxsize, pool_size, "
        "connection_pool_maxsize)."
    )


def _installed(filename: str) -> bool:
    return any(part in filename for part in _INSTALLED)


def _stdlib(filename: str) -> bool:
    return filename.startswith("<") or os.path.realpath(filename).startswith(_STDLIB)


def _distribution(top: str) -> tuple[str, str]:
    """The distribution that installs the top-level package ``top``, and its version (the
    package's own name and "(version unknown)" when no metadata says)."""
    global _distributions
    if _distributions is None:
        try:
            _distributions = dict(importlib.metadata.packages_distributions())
        except Exception:
            _distributions = {}
    for name in _distributions.get(top, ()):
        try:
            return name, importlib.metadata.version(name)
        except Exception:
            continue
    return top, "(version unknown)"


def _installed_path(filename: str) -> str:
    for part in _INSTALLED:
        if part in filename:
            return filename.split(part, 1)[1]
    return os.path.basename(filename)


def _user_path(filename: str) -> str:
    try:
        relative = os.path.relpath(filename)
    except ValueError:  # another drive (Windows)
        return filename
    return filename if relative.startswith("..") else relative


def _function(frame: FrameType) -> str:
    code = frame.f_code
    return getattr(code, "co_qualname", code.co_name)  # co_qualname: Python 3.11+
