"""Where httpcore's pools are observed: a few of its own methods, wrapped at the class, sync and
async alike, reporting to the recorder of the pool they run for.

httpcore (1.0.3 and later, and its fork httpcore2) keeps one pool per client for every origin,
at most ``max_connections`` connections and ``max_keepalive_connections`` of them idle. It has
no pool events of its own, so poolscope wraps (docs/decisions.md, "httpx's pools"):

- ``create_connection``: a connection object is made for an origin (its ``PoolState``: one per
  pool and origin, sized by ``max_keepalive_connections``, the idle connections it keeps);
- the connection's ``_connect``: a connection opened (its connect time, TLS included) or failed;
- the connection's ``handle_request``: a request on it, a reuse if it was open before;
- the response stream's close: the connection back in the pool, idle;
- ``_assign_requests_to_connections``, the pool's one place of decision (under its lock):
  connections it let go, why (idle past ``keepalive_expiry``, more idle than it keeps, or
  closed by the connection itself), found when its count of connections says one went;
- ``PoolRequest.wait_for_connection``: a request waiting for a free connection, and the
  ``PoolTimeout`` that ends a wait too long;
- the pool's ``close`` (``aclose``): its client closed, every connection it holds with it;
- the pool's ``__init__``: under process-wide instrumentation, which library the table lacks
  built it;
- a proxy's connections, which have classes of their own (see :mod:`.proxies`).

Every wrapper calls httpcore's own method with the same arguments and returns or raises what it
does; poolscope's part runs in ``try`` blocks that report their own failures and carry on.

They run on every request, so they cost as little as they can where nothing is to be counted
(a pool with no SDK, the report or logging acting on reuses): poolscope's marks on httpcore's
pools, connections and requests are read with ``getattr()``, never through ``obj.__dict__``,
which on CPython 3.11+ turns an object's inline attribute values into a real dict and makes
every later attribute read of httpcore's own on it slower (a pool's and a connection's are read
all through a request); and the async wrappers of a request's path are plain functions that
return httpcore's own coroutine for the caller to await (httpcore awaits each at once), with no
coroutine of poolscope's in between, until there is something to do after it.
"""

from __future__ import annotations

import importlib
import inspect
import sys
import threading
import time
from collections.abc import Callable
from typing import Any

from ..core.errors import internal_error
from ..core.events import CloseReason, error_type
from ..core.imports import ImportWatcher
from ..core.recorder import Recorder
from ..core.state import ConnState, PoolState
from .connections import (
    async_connect,
    async_request,
    async_returned,
    sync_connect,
    sync_request,
    sync_returned,
)
from .proxies import expired, proxied, proxy_patches
from .scope import ATTACHED, TARGET, PoolScope, built, scope_of

_now = time.monotonic


# The async wrappers that return httpcore's coroutine are plain functions: from 3.12 they are
# marked, so that inspect.iscoroutinefunction() says of httpcore's methods what it said before.
_mark_coroutine: Callable[[Any], Any] | None = getattr(inspect, "markcoroutinefunction", None)

MODULES = ("httpcore", "httpcore2")  # httpx's, and httpx2's (pydantic's fork, openai's 3.x)


def instrument_httpcore(recorder: Recorder) -> Callable[[bool], None]:
    """From now on, every httpcore pool (so every ``httpx.Client`` and ``AsyncClient``, and
    the SDKs built on them) reports to ``recorder``: httpcore and httpcore2 now if imported,
    else as soon as they are. Returns the undo (``undo(False)`` is the same: a pool keeps no
    hook of its own, so nothing can keep reporting)."""
    TARGET[:] = [recorder]
    watcher = ImportWatcher(MODULES.__contains__, _hook_found)
    sys.meta_path.insert(0, watcher)
    for name in MODULES:
        if name in sys.modules:
            hook(name)

    def undo(give_back: bool = True) -> None:
        if watcher in sys.meta_path:
            sys.meta_path.remove(watcher)
        with _lock:
            if TARGET and TARGET[0] is recorder:
                TARGET.clear()
        unhook_if_unused()

    return undo


# The httpcore modules whose classes are wrapped, each with its undo.
_hooked: dict[str, Callable[[], None]] = {}
_lock = threading.RLock()


def hook(name: str) -> bool:
    """Wrap the pool methods of the httpcore module ``name`` (``httpcore`` or ``httpcore2``),
    once; False if it is not installed or not a version poolscope knows (1.0.3 and later)."""
    with _lock:
        if name not in _hooked:
            undo = _wrap(name)
            if undo is None:
                return False
            _hooked[name] = undo
        return True


def _hook_found(name: str) -> None:
    hook(name)


def unhook_if_unused() -> None:
    """Give httpcore its own methods back once no pool is to report (no process-wide
    instrumentation, no client instrumented on its own)."""
    with _lock:
        if TARGET or ATTACHED:
            return
        for undo in _hooked.values():
            undo()
        _hooked.clear()


def _wrap(name: str) -> Callable[[], None] | None:
    try:
        module = importlib.import_module(name)
        sync_pool = importlib.import_module(f"{name}._sync.connection_pool")
        async_pool = importlib.import_module(f"{name}._async.connection_pool")
        sync_conn = importlib.import_module(f"{name}._sync.connection")
        async_conn = importlib.import_module(f"{name}._async.connection")
    except ImportError:
        return None
    if not hasattr(module.ConnectionPool, "_assign_requests_to_connections"):
        return None  # httpcore before 1.0.3 keeps its pool another way
    timeout: type[BaseException] = module.PoolTimeout
    patches: list[tuple[type[Any], str, Callable[[Any], Any]]] = [
        (sync_pool.PoolRequest, "wait_for_connection", lambda f: _sync_wait(f, timeout)),
        (
            async_pool.AsyncPoolRequest,
            "wait_for_connection",
            lambda f: _async_wait(f, timeout),
        ),
        (sync_pool.PoolByteStream, "close", sync_returned),
        (async_pool.PoolByteStream, "aclose", async_returned),
        (sync_conn.HTTPConnection, "_connect", sync_connect),
        (async_conn.AsyncHTTPConnection, "_connect", async_connect),
        (sync_conn.HTTPConnection, "handle_request", sync_request),
        (async_conn.AsyncHTTPConnection, "handle_async_request", async_request),
    ]
    patches.append((module.ConnectionPool, "close", _sync_closed))
    patches.append((module.AsyncConnectionPool, "aclose", _async_closed))
    for pool_class in (module.ConnectionPool, module.AsyncConnectionPool):
        patches.append((pool_class, "_assign_requests_to_connections", _assigned))
        patches.append((pool_class, "__init__", built))
        # The proxies make their connections with a create_connection of their own.
        for cls in (pool_class, *_subclasses(pool_class)):
            if "create_connection" in cls.__dict__:
                made = _created if cls is pool_class else proxied(_created)
                patches.append((cls, "create_connection", made))
    patches += proxy_patches(name)  # the connections of a proxy's pools
    originals = [(cls, attr, cls.__dict__[attr]) for cls, attr, _ in patches]
    for cls, attr, wrap in patches:
        wrapper = wrap(cls.__dict__[attr])
        wrapper.__wrapped__ = cls.__dict__[attr]
        if _mark_coroutine is not None and inspect.iscoroutinefunction(wrapper.__wrapped__):
            _mark_coroutine(wrapper)  # a coroutine function still, as httpcore's
        setattr(cls, attr, wrapper)

    def undo() -> None:
        for cls, attr, original in originals:
            setattr(cls, attr, original)

    return undo


def _subclasses(cls: type[Any]) -> list[type[Any]]:
    found = []
    for sub in cls.__subclasses__():
        found += [sub, *_subclasses(sub)]
    return found


# -- the pool ----------------------------------------------------------------------------------


def _created(create: Callable[..., Any]) -> Callable[..., Any]:
    def create_connection(self: Any, origin: Any) -> Any:
        conn = create(self, origin)
        scope = scope_of(self)
        if scope is not None:
            try:
                ps = scope.state(self, origin)
                conn._poolscope = scope.recorder.new_connection(ps, conn)
                scope.made += 1
            except Exception:
                internal_error("httpx new connection")
        return conn

    return create_connection


def _assigned(assign: Callable[..., Any]) -> Callable[..., Any]:
    def _assign_requests_to_connections(self: Any) -> Any:
        scope: PoolScope | None = getattr(self, "_poolscope", None)
        if scope is None:
            return assign(self)
        try:
            requests = self._requests
            if requests:  # the newest request is a handle_request's, about to wait if it must
                requests[-1]._poolscope_pool = self
        except Exception:
            internal_error("httpx pool")
        before, made = len(self._connections), scope.made
        closing = assign(self)
        if closing or len(self._connections) != before + scope.made - made:
            try:
                _let_go(self, scope, closing)
            except Exception:
                internal_error("httpx pool")
        return closing

    return _assign_requests_to_connections


def _let_go(pool: Any, scope: PoolScope, closing: list[Any]) -> None:
    """Account for the connections the pool no longer holds: those it is closing (idle past
    keepalive_expiry, found closed by the server, or idle beyond what it keeps or making room
    for another origin's) and those that closed themselves."""
    held = set(map(id, pool._connections))
    closed = {id(conn) for conn in closing}
    now = _now()
    for ps in scope.origins.values():
        for conn in ps.connections():
            cs: ConnState | None = getattr(conn, "_poolscope", None)
            if cs is None or not cs.open or id(conn) in held:
                continue
            if id(conn) not in closed:
                reason = CloseReason.SERVER_CLOSED  # the connection closed itself
            elif expired(conn, now):
                reason = CloseReason.IDLE_EXPIRED
            elif conn.has_expired():  # not by time: its socket is readable, the server closed it
                reason = CloseReason.DROPPED
            else:
                reason = CloseReason.POOL_FULL  # more idle than the pool keeps, or room made
            scope.recorder.connection_closed(cs, reason)


def _closing(pool: Any) -> None:
    """The pool is being closed (its client was): every connection it holds closes with it."""
    scope: PoolScope | None = getattr(pool, "_poolscope", None)
    if scope is None:
        return
    try:
        for conn in list(pool._connections):
            cs: ConnState | None = getattr(conn, "_poolscope", None)
            if cs is not None and cs.open:
                scope.recorder.connection_closed(cs, CloseReason.POOL_CLOSED)
        for ps in scope.origins.values():
            ps.closing()
    except Exception:
        internal_error("httpx pool close")


def _sync_closed(close: Callable[..., Any]) -> Callable[..., Any]:
    def close_pool(self: Any) -> None:
        _closing(self)
        close(self)

    return close_pool


def _async_closed(close: Callable[..., Any]) -> Callable[..., Any]:
    async def aclose(self: Any) -> None:
        _closing(self)
        await close(self)

    return aclose


def _waiting(pool_request: Any, timeout: float | None) -> PoolState | None:
    """The pool state a request about to wait for a connection waits in (None: not ours)."""
    pool = getattr(pool_request, "_poolscope_pool", None)  # tagged by the pool's pass
    scope: PoolScope | None = getattr(pool, "_poolscope", None)
    if scope is None:
        return None
    try:
        ps = scope.state(pool, pool_request.request.url.origin)
        scope.recorder.wait_started(ps, timeout)
    except Exception:
        internal_error("httpx wait")
        return None
    return ps


def _waited(ps: PoolState, started: float, gave_up: BaseException | None = None) -> None:
    try:
        error = None if gave_up is None else error_type(gave_up)
        ps.recorder.wait_ended(ps, _now() - started, error)
    except Exception:
        internal_error("httpx wait")


def _sync_wait(wait: Callable[..., Any], pool_timeout: type[BaseException]) -> Callable[..., Any]:
    def wait_for_connection(self: Any, timeout: float | None = None) -> Any:
        if self.connection is not None:
            return wait(self, timeout)
        ps, started = _waiting(self, timeout), _now()
        if ps is None:
            return wait(self, timeout)
        try:
            conn = wait(self, timeout)
        except pool_timeout as exc:
            _waited(ps, started, exc)
            raise
        except BaseException:
            _waited(ps, started)
            raise
        _waited(ps, started)
        return conn

    return wait_for_connection


def _async_wait(wait: Callable[..., Any], pool_timeout: type[BaseException]) -> Callable[..., Any]:
    async def waited(self: Any, timeout: float | None) -> Any:
        ps, started = _waiting(self, timeout), _now()
        if ps is None:
            return await wait(self, timeout)
        try:
            conn = await wait(self, timeout)
        except pool_timeout as exc:
            _waited(ps, started, exc)
            raise
        except BaseException:
            _waited(ps, started)
            raise
        _waited(ps, started)
        return conn

    # Not a coroutine function: when the request has its connection (no wait), it returns
    # httpcore's own coroutine, for the caller to await.
    def wait_for_connection(self: Any, timeout: float | None = None) -> Any:
        if self.connection is not None:
            return wait(self, timeout)
        return waited(self, timeout)

    return wait_for_connection
