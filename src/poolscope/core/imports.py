"""Something to run once a module is imported: a meta path finder that finds nothing itself and
wraps the loader of the modules it watches for. How instrumentation reaches code imported after
it starts (vendored copies of urllib3, httpcore) without importing it first."""

from __future__ import annotations

import importlib.abc
import importlib.machinery
import sys
import types
from collections.abc import Callable, Sequence
from typing import Any

from .errors import internal_error


class ImportWatcher(importlib.abc.MetaPathFinder):
    """Finds nothing itself: when a module whose name ``match`` accepts is about to be
    imported, it lets the other finders find it and has its loader call ``found`` once the
    module has run (a package imports its own modules as it runs). Put it first on
    ``sys.meta_path``; take it off to stop.

    The loader stays the same object, of the same class (``__spec__.loader``, pkg_resources'
    providers and importlib.resources see what they would see): it gets an ``exec_module`` of
    its own for that one import, which takes itself off before it runs."""

    def __init__(self, match: Callable[[str], bool], found: Callable[[str], None]) -> None:
        self.match = match
        self.found = found

    def find_spec(
        self, name: str, path: Sequence[str] | None, target: types.ModuleType | None = None
    ) -> importlib.machinery.ModuleSpec | None:
        if not self.match(name):
            return None
        for finder in list(sys.meta_path):
            if finder is self or not hasattr(finder, "find_spec"):
                continue
            spec = finder.find_spec(name, path, target)
            if spec is not None:
                break
        else:
            return None
        loader = spec.loader
        if loader is not None and hasattr(loader, "exec_module"):
            try:
                setattr(loader, "exec_module", _then_found(loader, name, self.found))  # noqa: B010
            except (AttributeError, TypeError):  # a loader that takes no attribute: not watched
                pass
        return spec


def _then_found(loader: Any, name: str, found: Callable[[str], None]) -> Callable[[Any], None]:
    original = loader.exec_module

    def exec_module(module: types.ModuleType) -> None:
        if loader.__dict__.get("exec_module") is exec_module:
            del loader.exec_module  # once: a loader may serve other modules (a zipimporter)
        original(module)
        if module.__name__ == name:
            try:
                found(name)
            except Exception:
                internal_error("import watch")

    return exec_module
