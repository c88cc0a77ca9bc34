"""Vendored copies of urllib3 (pip's ``pip._vendor.urllib3``): found as they are imported and
instrumented like urllib3 itself, by this package's own modules loaded a second time against
the copy.

A copy is a second set of modules with classes of their own, and poolscope's classes subclass
urllib3's, so a copy needs its own instrumented classes. Rather than a second implementation,
the modules of this package that import urllib3 (``_BOUND``) are executed again as new modules
whose ``import urllib3...`` statements resolve to the copy; everything else (the core, the
recorder, the sinks) is shared, so a copy's pools report to the same recorder as urllib3's.

A copy is instrumented only when it is a whole urllib3 of a version poolscope supports whose
call sites are where poolscope's rules read them (the check the test suite makes of urllib3);
otherwise it is left alone and the report names it with the reason (docs/decisions.md,
"Vendored copies of urllib3").
"""

from __future__ import annotations

import builtins
import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import threading
import types
from collections.abc import Callable, Sequence
from importlib.abc import InspectLoader
from typing import Any

from ..core.errors import internal_error
from ..core.imports import ImportWatcher
from ..core.recorder import Recorder

# A copy is a package of one of these names that is not urllib3 itself under another name
# (requests.packages.urllib3 is urllib3's own modules).
SUFFIXES = ("._vendor.urllib3", ".vendored.urllib3", "._vendored.urllib3")

# The modules of this package that import urllib3, in the order they import each other.
_BOUND = ("callsites", "connections", "idle_queue", "pools", "adopt", "managers")
_HERE = __name__.rpartition(".")[0]  # poolscope.instrumentation

# What poolscope's instrumentation needs of a urllib3: a copy without one is not a whole urllib3.
_NEEDED = ("poolmanager", "connectionpool", "connection", "exceptions", "response", "util.retry")

# The marker left on a copy's package: "instrumented", or why not.
MARK = "_poolscope_copy"

_lock = threading.RLock()
_NOT_WHOLE = "it is not a whole urllib3"
_loaded: dict[str, dict[str, types.ModuleType] | str] = {}  # by copy: its modules, or why not


def is_copy(name: str) -> bool:
    """Whether the module ``name`` is a vendored copy of urllib3's package."""
    return name.endswith(SUFFIXES)


def instrument_copies(recorder: Recorder) -> Callable[[bool], None]:
    """Instrument every vendored copy of urllib3 imported now or later, for ``recorder``, as
    process-wide instrumentation does urllib3 (new managers and new pools). Returns the undo
    (``undo(False)``: the managers and pools already instrumented keep reporting)."""
    undos: list[Callable[[bool], None]] = []
    handled: set[str] = set()  # once each, however often found (a reload, a racing import)
    stopped = False

    def found(copy: str) -> None:
        with _lock:
            if stopped or copy in handled:
                return
            handled.add(copy)
            undo = _instrument_copy(copy, recorder)
            if undo is not None:
                undos.append(undo)

    finder = ImportWatcher(is_copy, found)
    with _lock:
        sys.meta_path.insert(0, finder)
        present = [name for name in list(sys.modules) if is_copy(name)]
    for name in present:
        spec = getattr(sys.modules.get(name), "__spec__", None)
        if not getattr(spec, "_initializing", False):  # else its import, watched, will say
            found(name)

    def undo(give_back: bool = True) -> None:
        nonlocal stopped
        with _lock:
            stopped = True
            if finder in sys.meta_path:
                sys.meta_path.remove(finder)
            for one in reversed(undos):
                one(give_back)
            undos.clear()

    return undo


def _instrument_copy(copy: str, recorder: Recorder) -> Callable[[bool], None] | None:
    package = sys.modules.get(copy)
    if package is None or getattr(package, "__name__", copy) != copy:
        return None  # urllib3 itself under another name
    stop_managers = None
    try:
        modules = _modules_for(copy)
        if isinstance(modules, str):
            setattr(package, MARK, modules)
            return None
        manager_class = sys.modules[f"{copy}.poolmanager"].PoolManager
        stop_managers = modules["managers"].instrument_new_managers(manager_class, recorder)
        stop_pools = modules["adopt"].instrument_new_pools(recorder)
    except Exception:
        internal_error("vendored urllib3")
        if stop_managers is not None:
            stop_managers(True)
        setattr(package, MARK, "poolscope failed to instrument it (its log says why)")
        return None
    setattr(package, MARK, "instrumented")

    def undo(give_back: bool) -> None:
        stop_managers(give_back)
        stop_pools(give_back)
        package.__dict__.pop(MARK, None)  # its new managers and pools are plain again

    return undo


def _modules_for(copy: str) -> dict[str, types.ModuleType] | str:
    """This package's urllib3 modules bound to ``copy`` (made once), or why it is refused."""
    loaded = _loaded.get(copy)
    if loaded is None:
        why = _refused(copy)
        loaded = why if why else _load_against(copy)
        if not why.startswith(_NOT_WHOLE):  # an import may fail for a while: ask again later
            _loaded[copy] = loaded
    return loaded


def copies_in_use_by_threads() -> list[Any]:
    """The pools of vendored copies that threads are making a request through right now (see
    ``callsites.pools_in_use_by_threads``, which finds urllib3's own)."""
    with _lock:
        bound = [m["callsites"] for m in _loaded.values() if not isinstance(m, str)]
    return [pool for callsites in bound for pool in callsites.pools_in_use_by_threads()]


def _refused(copy: str) -> str:
    """Why ``copy`` is not to be instrumented, as the end of a sentence; empty if it is fine."""
    for needed in _NEEDED:
        try:
            importlib.import_module(f"{copy}.{needed}")
        except Exception as error:
            return f"{_NOT_WHOLE} ({copy}.{needed} does not import: {error})"
    version = str(getattr(sys.modules[copy], "__version__", ""))
    major, _, rest = version.partition(".")
    if not (major == "2" or (major == "1" and rest.startswith("26."))):
        return f"it is urllib3 {version or 'of unknown version'}; poolscope supports 1.26 and 2"
    from .call_sites_read import misplaced_call_sites  # the check, as the test suite makes it

    misplaced = misplaced_call_sites(copy)
    if misplaced:
        return f"its code differs from urllib3's where poolscope reads it: {misplaced[0]}"
    return ""


def _load_against(copy: str) -> dict[str, types.ModuleType]:
    modules: dict[str, types.ModuleType] = {}
    names = {name: f"{_HERE}._{copy.replace('.', '_')}.{name}" for name in _BOUND}
    outer = types.ModuleType(f"{_HERE}._{copy.replace('.', '_')}")  # ``from . import x``
    bound_builtins = dict(builtins.__dict__, __import__=_importer(copy, modules, outer))
    for name in _BOUND:
        original = importlib.import_module(f"{_HERE}.{name}")
        loader = original.__spec__.loader if original.__spec__ is not None else None
        code = loader.get_code(original.__name__) if isinstance(loader, InspectLoader) else None
        if code is None:
            raise RuntimeError(f"{original.__name__} has no code to load again")
        module = types.ModuleType(names[name], original.__doc__)
        module.__dict__.update(__builtins__=bound_builtins, __package__=_HERE)
        module.__file__ = original.__file__
        sys.modules[module.__name__] = module  # classes (dataclasses) look their module up
        exec(code, module.__dict__)
        modules[name] = module
        setattr(outer, name, module)
    return modules


def _importer(
    copy: str, modules: dict[str, types.ModuleType], outer: types.ModuleType
) -> Callable[..., Any]:
    """``__import__`` for the modules bound to ``copy``: urllib3 is the copy, this package's
    bound modules are their bound versions, anything else is imported as usual."""

    def __import__(
        name: str,
        globals: dict[str, Any] | None = None,
        locals: Any = None,
        fromlist: Sequence[str] = (),
        level: int = 0,
    ) -> Any:
        if level:
            absolute = importlib.util.resolve_name("." * level + name, _HERE)
            if absolute == _HERE and fromlist:
                for wanted in fromlist:  # ``from . import phases``: the shared ones as they are
                    if not hasattr(outer, wanted):
                        setattr(outer, wanted, importlib.import_module(f"{_HERE}.{wanted}"))
                return outer
            own = absolute.rpartition(".")[2]
            if absolute.startswith(f"{_HERE}.") and own in _BOUND:
                if own not in modules:  # _BOUND's order is its modules' import order
                    raise ImportError(f"{absolute} is imported before it is bound to {copy}")
                return modules[own]
            return builtins.__import__(name, globals, locals, fromlist, level)
        if name == "urllib3" or name.startswith("urllib3."):
            module = importlib.import_module(copy + name[len("urllib3") :])
            return module if fromlist else sys.modules[copy]
        return builtins.__import__(name, globals, locals, fromlist, level)

    return __import__
