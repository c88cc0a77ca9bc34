"""Instrumented urllib3 PoolManagers: the per-manager cache of pools and its evictions.

A ``PoolManager`` keeps at most ``num_pools`` pools (requests' ``pool_connections``) in a
``RecentlyUsedContainer``; adding one more pushes the least recently used pool out. urllib3
1.26.16+ and 2.x do not close an evicted pool at once: its idle connections close when it is
garbage-collected. poolscope sees evictions through the container's ``dispose_func``, and makes
every pool a manager builds report through the manager's ``pool_classes_by_scheme``.
"""

from __future__ import annotations

import functools
import weakref
from collections import deque
from collections.abc import Callable
from itertools import compress, repeat
from operator import is_, methodcaller
from typing import Any

from ..core.errors import internal_error
from ..core.recorder import Recorder
from ..core.state import next_manager_id
from .adopt import adopt_pool, detach_pool
from .callsites import building_library, disposed_by_clear, making_for
from .pools import instrumented_pool_class

_call = methodcaller("__call__")

# Why no subclass swap here: on CPython 3.11+ assigning ``__class__`` (or touching
# ``__dict__``) turns an object's inline attribute values into a real dict, which makes every
# later attribute read on it slower; a PoolManager's attributes are read on every request. So
# a manager that already exists is instrumented with instance attributes only: its
# ``pool_classes_by_scheme``, a ``_new_pool`` hook, and its pool container's ``dispose_func``.


class ManagerState:
    """What poolscope keeps on one PoolManager (``pm._poolscope``), including how to undo it."""

    __slots__ = (
        "id",
        "implicit",
        "instrumented_classes",
        "library",
        "original_dispose",
        "original_pool_classes",
        "pools",
        "prune_at",
        "recorder",
    )

    def __init__(self, recorder: Recorder, pm: Any, library: str, implicit: bool) -> None:
        self.id = next_manager_id()
        self.recorder = recorder
        # Instrumented by process-wide instrumentation, not by a call naming this manager (or
        # its session): a later call that does name it, with other options, takes it over.
        self.implicit = implicit
        self.library = library  # which library built it: its pools say the same
        self.original_pool_classes: dict[str, type[Any]] = pm.pool_classes_by_scheme
        self.instrumented_classes = _instrumented_classes(self.original_pool_classes, recorder)
        self.original_dispose: Callable[[Any], None] | None = pm.pools.dispose_func
        # Every pool it made, evicted too: a weak reference to each, as keys (a dead one
        # equals only itself). Not a WeakSet, whose add and removal callback are Python code
        # run for every pool (a sweep over many hosts makes one a request): the dead are
        # pruned once there are prune_at, which stays twice those alive then.
        self.pools: dict[weakref.ref[Any], None] = {}
        self.prune_at = _PRUNE_AT


def attach_manager(
    pm: Any, recorder: Recorder, library: str | None = None, *, implicit: bool = False
) -> None:
    """Instrument a PoolManager (or ProxyManager) in place, with the pools it already has.
    ``library``: which library built it, when the caller knows (else found from the stack).
    ``implicit``: by process-wide instrumentation. An explicit call takes over a manager
    instrumented implicitly with other options; callers refuse explicit conflicts first."""
    current: ManagerState | None = getattr(pm, "_poolscope", None)
    if current is not None:
        if current.recorder is recorder or implicit or not current.implicit:
            current.implicit = current.implicit and implicit
            return
        library = library or current.library
        detach_manager(pm)
    state = ManagerState(recorder, pm, library or building_library(), implicit)
    if current is not None:
        state.id = current.id  # the same manager, taken over: one line in the report
    # urllib3 makes a manager's pools under the pools' lock: with the hooks set and the pools
    # listed under it too, a pool made meanwhile is either listed here or made by the hook.
    with pm.pools.lock:
        pm._poolscope = state
        # PoolManager.__init__ stores urllib3's module-level dict itself: rebind, never mutate.
        pm.pool_classes_by_scheme = state.instrumented_classes
        pm._new_pool = _new_pool_hook(pm, state)
        pm.pools.dispose_func = _dispose_hook(pm, state)
        existing = list(pm.pools._container.values())
    for pool in existing:
        ps = getattr(pool, "_poolscope", None)
        if ps is not None and ps.recorder is not recorder:  # made while process-wide
            detach_pool(pool)  # instrumentation converted every new pool: it reports here now
        adopt_pool(pool, recorder)
        _adopted_by(pool, pm, state)


def _new_pool_hook(pm: Any, state: ManagerState) -> Callable[..., Any]:
    pm_ref = weakref.ref(pm)  # the hook lives in pm's own dict: no reference cycle
    new_pool = type(pm)._new_pool

    def _new_pool(*args: Any, **kwargs: Any) -> Any:
        manager = pm_ref()
        assert manager is not None  # it is calling us
        classes = manager.pool_classes_by_scheme
        if classes is not state.instrumented_classes:
            # Code that sets its own pool classes after construction (botocore does): the
            # pools it makes report all the same.
            state.original_pool_classes = classes
            state.instrumented_classes = _instrumented_classes(classes, state.recorder)
            manager.pool_classes_by_scheme = state.instrumented_classes
        making_for(state.library)
        try:
            pool = new_pool(manager, *args, **kwargs)
        finally:
            making_for(None)
        try:
            _adopted_by(pool, manager, state)
        except Exception:
            internal_error("new pool")
        return pool

    return _new_pool


def _adopted_by(pool: Any, pm: Any, state: ManagerState) -> None:
    pools = state.pools
    pools[weakref.ref(pool)] = None
    if len(pools) > state.prune_at:
        _prune(state)
    ps = getattr(pool, "_poolscope", None)
    if ps is not None:
        ps.manager_id = state.id
        ps.num_pools = pm.pools._maxsize
        ps.built_by(state.library)


_PRUNE_AT = 64


def _prune(state: ManagerState) -> None:
    """Drop the references to pools collected since (each a dead reference: it is dropped as
    exactly that key, so a pool added meanwhile by another thread stays)."""
    pools = state.pools
    refs = list(pools)
    dead = compress(refs, map(is_, map(_call, refs), repeat(None)))  # in C: a sweep prunes often
    deque(map(pools.pop, dead, repeat(None)), maxlen=0)
    state.prune_at = max(_PRUNE_AT, 2 * len(pools))


def _alive(state: ManagerState) -> list[Any]:
    """The pools it made that are still alive."""
    return [pool for pool in map(_call, list(state.pools)) if pool is not None]


def _instrumented_classes(
    classes: dict[str, type[Any]], recorder: Recorder
) -> dict[str, type[Any]]:
    return {scheme: instrumented_pool_class(cls, recorder) for scheme, cls in classes.items()}


def _dispose_hook(pm: Any, state: ManagerState) -> Callable[[Any], None]:
    pm_ref = weakref.ref(pm)
    original = state.original_dispose

    def pool_disposed(pool: Any) -> None:
        # Called by RecentlyUsedContainer for a pool pushed out by a newer one (from its
        # __setitem__), and for every pool on clear(); only the first is an eviction.
        try:
            ps = getattr(pool, "_poolscope", None)
            if ps is not None:
                if disposed_by_clear():
                    ps.closing()  # the manager let go of it: its connections are closing
                else:
                    manager = pm_ref()
                    num_pools = manager.pools._maxsize if manager is not None else 0
                    ps.recorder.pool_evicted(ps, num_pools)
        except Exception:
            internal_error("pool eviction")
        if original is not None:
            original(pool)

    return pool_disposed


def detach_manager(pm: Any, *, implicit_only: bool = False) -> None:
    """Give a PoolManager back its own pool classes and dispose function; a no-op if not ours
    (or, with ``implicit_only``, if an explicit call instrumented it)."""
    state: ManagerState | None = getattr(pm, "_poolscope", None)
    if state is None or (implicit_only and not state.implicit):
        return
    # urllib3 makes a manager's pools under the pools' lock: with the hooks taken out and the
    # pools listed under it too, a pool made meanwhile is either listed here or plain.
    with pm.pools.lock:
        del pm._poolscope
        del pm._new_pool
        pm.pool_classes_by_scheme = state.original_pool_classes
        pm.pools.dispose_func = state.original_dispose
        current = list(pm.pools._container.values())
    for pool in {id(p): p for p in [*_alive(state), *current]}.values():
        detach_pool(pool)


def manager_recorder(pm: Any) -> Recorder | None:
    """The recorder an explicit call made this manager report to (None: none did)."""
    state = getattr(pm, "_poolscope", None)
    return state.recorder if state is not None and not state.implicit else None


def instrument_new_managers(
    manager_class: type[Any], recorder: Recorder, *, skip: type[Any] | None = None
) -> Callable[[bool], None]:
    """From now on, every ``manager_class`` (urllib3's ``PoolManager``, or a vendored copy's)
    made in the process reports to ``recorder``, with the pools it makes; instances of
    ``skip`` (the drop-in class, which attaches itself with its own options) pass through.
    Returns the undo: ``undo(True)`` gives every such manager back as it was, ``undo(False)``
    only puts the constructor back (its managers keep reporting)."""
    original_init = manager_class.__dict__["__init__"]
    managers: weakref.WeakSet[Any] = weakref.WeakSet()

    @functools.wraps(original_init)
    def __init__(self: Any, *args: Any, **kwargs: Any) -> None:
        original_init(self, *args, **kwargs)
        if skip is None or not isinstance(self, skip):
            try:
                attach_manager(self, recorder, implicit=True)
                managers.add(self)
            except Exception:
                internal_error("global instrumentation")

    manager_class.__init__ = __init__

    def undo(give_back: bool = True) -> None:
        manager_class.__init__ = original_init
        if give_back:
            for pm in list(managers):
                detach_manager(pm, implicit_only=True)  # one instrumented since keeps its own

    return undo
