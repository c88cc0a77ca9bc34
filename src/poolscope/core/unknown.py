"""A library poolscope has no entry for, named from the call sites that build a pool or a client:
which installed distribution builds it (name and version, from ``importlib.metadata``), where,
the program's line that led there, and what the advice says of it, in the words of the client
it builds (urllib3's, requests', httpx's).

Client-neutral: each client's ``callsites`` module reads the frames (the one module of its
package that does) and hands them here as :class:`Site` s, outward from the pool. The first
site outside the packages walked past whose file is installed (under a ``site-packages`` or
``dist-packages`` directory) names the library; the first one further out that is the
program's own (neither installed nor the standard library) is the line that led there. A
program whose own code comes first built the pool itself: no library to name. Asked once as a
pool, manager or client is made, never on the request path.
"""

from __future__ import annotations

import functools
import importlib.metadata
import os
import sysconfig
from collections.abc import Iterable
from typing import NamedTuple

from .libraries import met_unknown

_INSTALLED = (f"{os.sep}site-packages{os.sep}", f"{os.sep}dist-packages{os.sep}")
_STDLIB = tuple(
    {os.path.realpath(sysconfig.get_paths()[k]) + os.sep for k in ("stdlib", "platstdlib")}
)
_distributions: dict[str, list[str]] | None = None  # top-level package -> distributions


class Site(NamedTuple):
    """One frame of the stack, as much of it as naming a library takes."""

    module: str  # its ``__name__``
    filename: str
    line: int
    function: str  # qualified where Python says (3.11+): ``Client.__init__``


# What the advice says of a library that builds its own pool, by the words it speaks: which
# (``{name}``), where (``{where}``), and how such libraries usually take one of the user's.
_BUILDS = {
    "urllib3": (
        "{name} builds this pool itself ({where}). Such libraries usually take a pool of "
        "yours: look in its constructor for a urllib3.PoolManager or requests Session to hand "
        "it, or for a pool-size option (maxsize, pool_maxsize, pool_size, "
        "connection_pool_maxsize)."
    ),
    "requests": (
        "{name} builds its requests Session itself ({where}). Such libraries usually take "
        "a Session of yours: look in its constructor for a session= (then mount the "
        "HTTPAdapter on that Session), or for a pool-size option (pool_size, pool_maxsize)."
    ),
    "httpx": (
        "{name} builds its httpx client itself ({where}). Such libraries usually take a client "
        "of yours: look in its constructor for an http_client=, client= or transport= (hand it "
        "an httpx.Client(limits=httpx.Limits(...)), or an httpx.HTTPTransport(limits=...)), or "
        "for a limits option (limits, max_connections, pool_size)."
    ),
}


def unknown_library(sites: Iterable[Site], passed: tuple[str, ...], words_of: str) -> str | None:
    """The name of the installed library building a pool, from ``sites`` (outward from the
    pool), registered with its description in the words of ``words_of``; None when the
    program's own code builds it. ``passed``: the packages whose sites are walked past (the
    client's own, poolscope, and requests when the library builds a requests Session)."""
    site: Site | None = None
    user: Site | None = None
    inside = _inside(passed)
    for one in sites:
        if one.module in passed or one.module.startswith(inside):
            continue
        if site is None:
            if _installed(one.filename):
                site = one
            elif not _stdlib(one.filename):
                return None  # the program's own code builds it
        elif not _installed(one.filename) and not _stdlib(one.filename):
            user = one
            break
    if site is None:
        return None
    name, version = _distribution(site.module.partition(".")[0])
    where = f"{_installed_path(site.filename)}:{site.line}, in {site.function}"
    if user is not None:
        where += f"; reached from {_user_path(user.filename)}:{user.line}, in {user.function}"
    met_unknown(name, described(f"{name} {version}", where, words_of=words_of), words_of)
    return name


def described(name: str, where: str, *, words_of: str) -> str:
    """What the advice says of a library poolscope has no entry for that builds a pool (or a
    requests Session, or an httpx client: ``words_of``): which, where (as ``where`` says), and
    how such libraries usually take one of yours."""
    return _BUILDS[words_of].format(name=name, where=where)


@functools.lru_cache(maxsize=16)
def _inside(passed: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(f"{package}." for package in passed)


def _installed(filename: str) -> bool:
    return any(part in filename for part in _INSTALLED)


@functools.lru_cache(maxsize=1024)  # realpath() asks the file system: once per file
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
