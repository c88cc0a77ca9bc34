"""Instrumented urllib3 connection pools: what one pool does, and how pools are instrumented.

A pool reports to one :class:`~poolscope.core.recorder.Recorder`. Its connections come from
``ConnectionCls`` and its idle connections sit in a ``QueueCls`` queue, both instrumented
(:mod:`.connections`, :mod:`.idle_queue`). This module makes the pool subclasses (the public
drop-in classes, and one subclass per recorder for pools a PoolManager builds), instruments an
existing pool in place and gives it back, and starts a pool counting reuses when its recorder's
counting switch turns on: the one place a pool's counting state changes.
"""

from __future__ import annotations

import weakref
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, ClassVar

from urllib3.connection import port_by_scheme
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from ..core.errors import internal_error
from ..core.events import PoolKey
from ..core.recorder import Recorder
from ..core.state import PoolState
from .callsites import building_library
from .connections import (
    InstrumentedConnectionMixin,
    InstrumentedHTTPConnection,
    InstrumentedHTTPSConnection,
    adopt_connection,
    as_base_name,
    base_method,
    instrumented_connection_class,
)
from .idle_queue import InstrumentedLifoQueue, instrumented_queue_class

if TYPE_CHECKING:
    _PoolBase = HTTPConnectionPool
else:
    _PoolBase = object

# How a pool constructed directly (``InstrumentedHTTPConnectionPool(..., mode="logging")``)
# finds its recorder: poolscope.config, the layer above, registers its lookup here when it is
# imported (poolscope's __init__ imports it), so this layer never imports configuration.
RecorderLookup = Callable[[str, Any, Any], Recorder]
_lookup: list[RecorderLookup] = []


def use_recorder_lookup(lookup: RecorderLookup) -> None:
    """Set how pools constructed with options (or none) find their recorder."""
    _lookup[:] = [lookup]


class InstrumentedPoolMixin(_PoolBase):
    """Reports what one urllib3 connection pool does (see InstrumentedHTTPConnectionPool)."""

    # The recorder of the pools a PoolManager builds (weakly: the class is cached per recorder).
    _poolscope_recorder: ClassVar[weakref.ref[Recorder] | None] = None
    _poolscope_base: ClassVar[type[Any]] = HTTPConnectionPool
    _poolscope: PoolState

    def __new__(
        cls,
        *args: Any,
        mode: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        **kwargs: Any,
    ) -> Any:
        # Made with the checkout hook from the start when its recorder counts: a pool that
        # takes it later (by __class__ assignment) loses CPython's fast attribute reads.
        recorder = _recorder_for(cls, mode, meter_provider, tracer_provider)
        if recorder.should_count():
            cls = with_checkout_hook(cls)
        return super().__new__(cls)

    def __init__(
        self,
        *args: Any,
        mode: str | None = None,
        meter_provider: Any = None,
        tracer_provider: Any = None,
        **kwargs: Any,
    ) -> None:
        recorder = _recorder_for(type(self), mode, meter_provider, tracer_provider)
        super().__init__(*args, **kwargs)
        ps = attach_pool(self, recorder, new=True)
        if not ps.counting:  # sync_counting's own first test, without its call
            sync_counting(self, ps)

    # Another thread may give the pool its own class back (uninstrumenting) at any moment,
    # even between the lookup of one of these methods and its first line: each takes its
    # base's method with base_method(), not super() (see the connection mixin).

    def __str__(self) -> str:
        # Exception messages (MaxRetryError, EmptyPoolError) embed str(pool): keep urllib3's.
        return as_base_name(base_method(InstrumentedPoolMixin, self, "__str__")(), self)

    def _new_conn(self) -> Any:
        conn = base_method(InstrumentedPoolMixin, self, "_new_conn")()
        ps = getattr(self, "_poolscope", None)
        if ps is not None:
            try:
                if not isinstance(conn, InstrumentedConnectionMixin):
                    conn.__class__ = instrumented_connection_class(type(conn))
                conn._poolscope = ps.recorder.new_connection(ps, conn)
            except Exception:
                internal_error("new connection")
            if not ps.counting:
                sync_counting(self, ps)
        return conn

    def close(self) -> None:
        close = base_method(InstrumentedPoolMixin, self, "close")
        ps = getattr(self, "_poolscope", None)
        if ps is not None:
            ps.closing()
        close()


class CheckoutHookMixin(InstrumentedPoolMixin):
    """Reports each reuse as it happens, for sinks that act on one (spans, logs, idle times).

    A pool has this class (a subclass of its own, made by with_checkout_hook with the hook as
    its ``_get_conn``) once it counts (see start_counting): with no OpenTelemetry SDK behind
    poolscope, nothing would act on a reuse, and the reused-connection path then runs no
    poolscope code beyond one test in the queue's.
    """


def _checkout_hook(base: type[Any]) -> Callable[..., Any]:
    """The ``_get_conn`` of ``base``'s subclass with the checkout hook: ``base._get_conn``,
    then the report of a reuse. It calls ``base._get_conn`` by name: super() would cost a
    super object and a walk of the class's MRO on every checkout (about 1,250 instructions on
    Python 3.11, a tenth of poolscope's cost per reuse); a patch of ``base``'s class or its
    bases made later is still seen."""

    def _get_conn(self: Any, timeout: float | None = None) -> Any:
        conn = base._get_conn(self, timeout)
        try:
            cs = conn._poolscope
        except AttributeError:  # a connection of a class poolscope did not make
            return conn
        if cs is not None and cs.checkout:  # open, and not found dropped
            try:
                cs.pool.recorder.connection_reused(cs)
            except Exception:
                internal_error("reuse")
        return conn

    return _get_conn


def sync_counting(pool: Any, ps: PoolState) -> None:
    """Make ``pool`` count if its recorder does or should now (see Recorder.should_count).

    Asked when a pool is set up and whenever it makes a connection object (both rare), so an
    SDK configured after instrumenting is picked up by the next connection any pool makes, or
    by the first collection of a metrics reader, whichever comes first."""
    if ps.counting:
        return
    try:
        if ps.recorder.should_count():
            start_counting(pool)
    except Exception:
        internal_error("start counting")


def start_counting(pool: Any) -> None:
    """From now on, ``pool`` counts reuses and idle connections and times returns, and has
    its checkout hook.

    The open connections already idle in its queue are counted idle, with no idle time (how
    long they have sat is not known). A return that races with this (it checked the flag just
    before) enters the queue uncounted and is counted when it next comes back."""
    ps: PoolState | None = getattr(pool, "_poolscope", None)
    if ps is None or ps.counting:
        return
    q = pool.pool
    if q is None:  # closed: nothing left to count
        if not isinstance(pool, CheckoutHookMixin):
            pool.__class__ = with_checkout_hook(type(pool))
        ps.counting = True
        return
    with q.mutex:
        # Asked on a metrics reader's thread too: the pool may have been uninstrumented since
        # (detach_pool changes the queue's class under this lock), and then keeps its class.
        attached: PoolState | None = getattr(pool, "_poolscope", None)
        if ps.counting or attached is not ps:
            return
        if not isinstance(pool, CheckoutHookMixin):
            pool.__class__ = with_checkout_hook(type(pool))
        held = q.queue  # a new pool's holds only placeholders (None): nothing to look at
        for conn in () if held.count(None) == len(held) else held:
            if conn is None:
                continue
            cs = getattr(conn, "_poolscope", None)
            if cs is None:  # made before the pool was adopted, returned since
                cs = adopt_connection(ps, conn)
            if cs.open and not cs.in_pool:
                cs.in_pool = True
                ps.stats.idle += 1
        ps.counting = True
        q._poolscope_counting = True


def with_checkout_hook(cls: type[Any]) -> type[Any]:
    """``cls`` with the checkout hook (made once per class)."""
    if issubclass(cls, CheckoutHookMixin):
        return cls
    hooked: type[Any] | None = cls.__dict__.get("_poolscope_with_hook")
    if hooked is None:  # a race makes two equivalent classes, harmlessly
        namespace = {"__module__": cls.__module__, "_get_conn": _checkout_hook(cls)}
        hooked = type(cls.__name__, (CheckoutHookMixin, cls), namespace)
        cls._poolscope_with_hook = hooked
    return hooked


def _recorder_for(
    cls: type[Any], mode: str | None, meter_provider: Any, tracer_provider: Any
) -> Recorder:
    # A class made for a recorder is reachable only from managers that keep that recorder
    # alive (ManagerState), so its weak reference is alive whenever a manager builds a pool.
    ref = cls._poolscope_recorder
    recorder = ref() if ref is not None else None
    if recorder is None or mode or meter_provider is not None or tracer_provider is not None:
        if not _lookup:
            raise RuntimeError(
                "poolscope's pools find their recorder through poolscope.config, which was not "
                "imported; import poolscope (its __init__ imports it) before constructing one."
            )
        recorder = _lookup[0](mode or "otel", meter_provider, tracer_provider)
    return recorder


class InstrumentedHTTPConnectionPool(InstrumentedPoolMixin, HTTPConnectionPool):
    """A drop-in ``urllib3.HTTPConnectionPool`` that reports what its connections do.

    Constructed with exactly the parent's arguments it reports to the global OpenTelemetry
    providers; ``mode="logging"``, ``meter_provider=`` or ``tracer_provider=`` choose others::

        pool = poolscope.InstrumentedHTTPConnectionPool("127.0.0.1", 8080, maxsize=4)
        pool.request("GET", "/")
    """

    ConnectionCls = InstrumentedHTTPConnection
    QueueCls = InstrumentedLifoQueue
    _poolscope_base = HTTPConnectionPool


class InstrumentedHTTPSConnectionPool(InstrumentedPoolMixin, HTTPSConnectionPool):
    """A drop-in ``urllib3.HTTPSConnectionPool`` that also reports TLS handshake time."""

    ConnectionCls = InstrumentedHTTPSConnection
    QueueCls = InstrumentedLifoQueue
    _poolscope_base = HTTPSConnectionPool


_PUBLIC_POOLS: dict[type[Any], type[Any]] = {
    HTTPConnectionPool: InstrumentedHTTPConnectionPool,
    HTTPSConnectionPool: InstrumentedHTTPSConnectionPool,
}


# Per recorder, its subclass of each pool class (made once: every manager reporting to it shares
# them). The classes refer to their recorder weakly, so this cache keeps no recorder alive.
_pool_classes: weakref.WeakKeyDictionary[Recorder, dict[type[Any], type[Any]]] = (
    weakref.WeakKeyDictionary()
)


def instrumented_pool_class(base: type[Any], recorder: Recorder) -> type[Any]:
    """The subclass of ``base`` whose pools report to ``recorder`` (made once, then cached).

    A ``PoolManager`` builds pools as ``pool_cls(host, port, **kw)``, so the recorder travels
    as a class attribute rather than an argument. urllib3's own two classes get a subclass of
    the public drop-in classes, so such pools are instances of those.
    """
    base = (
        getattr(base, "_poolscope_base", base) if issubclass(base, InstrumentedPoolMixin) else base
    )
    classes = _pool_classes.get(recorder)
    if classes is None:
        classes = _pool_classes.setdefault(recorder, {})
    cls = classes.get(base)
    if cls is None:
        public = _PUBLIC_POOLS.get(base)
        namespace: dict[str, Any] = {
            "__module__": __name__,
            "_poolscope_recorder": weakref.ref(recorder),
            "_poolscope_base": base,
        }
        if public is None:
            namespace["ConnectionCls"] = instrumented_connection_class(base.ConnectionCls)
            namespace["QueueCls"] = instrumented_queue_class(base.QueueCls)
            bases: tuple[type[Any], ...] = (InstrumentedPoolMixin, base)
            name = f"Instrumented{base.__name__}"
        else:
            bases = (public,)
            name = public.__name__
        cls = classes.setdefault(base, type(name, bases, namespace))
    return cls


def pool_key(pool: Any) -> PoolKey:
    """The (scheme, host, port, proxy) a pool serves; a proxy without its credentials. A pool
    over a unix socket (docker-py's and requests-unixsocket's keep its path in ``socket_path``)
    is named by that path."""
    scheme = pool.scheme
    socket_path = getattr(pool, "socket_path", None)
    if isinstance(socket_path, str):
        return PoolKey(scheme, socket_path, 0, None, "unix")
    host = (pool.host or "").strip("[]")
    proxy = getattr(pool, "proxy", None)
    via = None
    if proxy is not None and proxy.host:  # a urllib3 Url: keep scheme, host, port; no userinfo
        proxy_host = f"[{proxy.host.strip('[]')}]" if ":" in proxy.host else proxy.host
        proxy_port = proxy.port or port_by_scheme.get(proxy.scheme or "http", 0)
        via = f"{proxy.scheme or 'http'}://{proxy_host}:{proxy_port}"
    return PoolKey(scheme, host, pool.port or port_by_scheme.get(scheme, 0), via)


def attach_pool(pool: Any, recorder: Recorder, *, new: bool = False) -> PoolState:
    """Give a pool its state; its queue (already instrumented) reports to it from now on.
    A manager that made it says which library built it (see managers.py); until then, and for
    a pool made on its own, that is found from who is making it.

    A ``new`` pool (its constructor's call) of the class with the checkout hook, chosen as its
    recorder counted (for good), counts from here: no other thread can reach it yet and its
    queue holds only placeholders, so neither the queue's lock nor the counting switch's call
    is needed. Else it does not count yet: the caller asks sync_counting() next, outside the
    queue's lock."""
    q = pool.pool
    maxsize = q.maxsize if q is not None else 0
    ps = recorder.new_pool(pool, pool_key(pool), maxsize, building_library())
    pool._poolscope = ps
    if q is not None:
        q._poolscope = ps
        held = q.queue
        q._poolscope_counting = ps.counting = (
            new and isinstance(pool, CheckoutHookMixin) and held.count(None) == len(held)
        )
    if not ps.counting:
        recorder.watch_pool(pool, start_counting)  # once start_counting can find ps
    return ps
