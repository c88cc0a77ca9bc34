"""The pool's queue keeps queue.Queue's contract where poolscope reimplements it: from Python
3.13 its shutdown (``shutdown()``, ``is_shutdown``, ``queue.ShutDown`` from get() and put()),
step for step with stdlib's queue, on its own and in a urllib3 pool; before 3.13, none."""

from __future__ import annotations

import ast
import gc
import pathlib
import queue
import sys
import threading
import warnings
from collections.abc import Callable
from typing import Any

import pytest
import urllib3

import poolscope
from poolscope.config import get_recorder
from poolscope.instrumentation import idle_queue
from poolscope.instrumentation.idle_queue import InstrumentedLifoQueue, instrumented_queue_class
from poolscope.loopback import LoopbackServer

from .support.metrics import Metrics
from .support.threads import wait_for_waiters

needs_shutdown = pytest.mark.skipif(
    sys.version_info < (3, 13), reason="queue.Queue.shutdown() is new in Python 3.13"
)
BASES = [queue.LifoQueue, queue.Queue]  # urllib3's, and a FIFO queue a pool class may name


def attempt(call: Callable[[], Any]) -> tuple[str, Any]:
    try:
        return ("ok", call())
    except Exception as exc:
        return ("raised", type(exc).__name__)


def in_threads(
    q: Any, calls: list[Callable[[], Any]], condition: str
) -> tuple[list[threading.Thread], list[Any]]:
    """Starts each call in a thread and returns once all wait on q's ``condition``, with the
    threads and the list each call's outcome goes to."""
    results: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        results[i] = attempt(calls[i])

    threads = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(len(calls))]
    for t in threads:
        t.start()
    wait_for_waiters(getattr(q, condition), len(calls))
    return threads, results


def finish(threads: list[threading.Thread]) -> None:
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a waiting call was not released by shutdown()"


def bounded(scenario: Callable[[Any], list[Any]], q: Any) -> list[Any]:
    """What the scenario gives; one that blocks where it should raise fails, not hangs."""
    box: list[tuple[bool, Any]] = []

    def run() -> None:
        try:
            box.append((True, scenario(q)))
        except BaseException as exc:
            box.append((False, exc))

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    thread.join(20)
    assert box, f"{scenario.__name__} blocked on {type(q).__name__}"
    ok, value = box[0]
    if not ok:
        raise value
    return value  # type: ignore[no-any-return]


# -- Scenarios: each returns what a user sees, step by step ------------------------------------


def shut_down_with_items(q: Any) -> list[Any]:
    q.put("a")
    q.put("b")
    q.shutdown()
    seen: list[Any] = [q.is_shutdown, q.qsize(), q.empty(), q.full()]
    seen.append(sorted([q.get(), q.get(block=False)]))  # what it held is still handed out
    seen += [attempt(q.get), attempt(lambda: q.get(block=False))]
    seen += [attempt(lambda: q.get(timeout=30)), attempt(lambda: q.get(timeout=-1))]
    seen += [attempt(q.get_nowait)]
    seen += [attempt(lambda: q.put("c")), attempt(lambda: q.put("c", block=False))]
    seen += [attempt(lambda: q.put("c", timeout=-1)), attempt(lambda: q.put_nowait("c"))]
    seen += [q.qsize(), q.unfinished_tasks]
    q.task_done()
    q.task_done()
    q.join()
    seen += [attempt(q.task_done), attempt(q.shutdown), q.is_shutdown]
    return seen


def shut_down_empty(q: Any) -> list[Any]:
    seen: list[Any] = [q.is_shutdown]
    q.shutdown()
    seen += [attempt(q.get), attempt(lambda: q.get(timeout=30)), attempt(q.get_nowait)]
    seen += [attempt(lambda: q.put(None)), q.qsize(), q.unfinished_tasks]
    return seen


def shut_down_full(q: Any) -> list[Any]:
    q.put("a")
    q.put(None)
    seen: list[Any] = [attempt(lambda: q.put("x", block=False))]  # Full, before the shutdown
    q.shutdown()
    seen += [attempt(lambda: q.put("x", block=False)), attempt(lambda: q.put("x", timeout=30))]
    seen += [attempt(lambda: q.put("x")), q.full()]
    seen.append(sorted([q.get(), q.get()], key=repr))
    seen += [attempt(lambda: q.get(block=False)), q.qsize(), q.unfinished_tasks]
    return seen


def shut_down_immediately(q: Any) -> list[Any]:
    q.put("a")
    q.put("b")
    q.shutdown(immediate=True)
    seen: list[Any] = [q.is_shutdown, q.qsize(), q.unfinished_tasks]
    q.join()  # every item left counts as done
    seen += [attempt(q.get), attempt(lambda: q.get(block=False)), attempt(lambda: q.put("c"))]
    seen += [attempt(q.task_done)]
    return seen


def shutdown_releases_waiting_getters(q: Any, immediate: bool = False) -> list[Any]:
    calls = [q.get, lambda: q.get(timeout=30), lambda: q.get(True, 30)]
    threads, results = in_threads(q, calls, "not_empty")
    q.shutdown(immediate=immediate)
    finish(threads)
    return [*results, q.qsize()]


def shutdown_releases_waiting_getters_immediately(q: Any) -> list[Any]:
    return shutdown_releases_waiting_getters(q, immediate=True)


def shutdown_releases_waiting_putters(q: Any) -> list[Any]:
    q.put("a")
    q.put("b")
    calls = [lambda: q.put("c"), lambda: q.put("d", timeout=30)]
    threads, results = in_threads(q, calls, "not_full")
    q.shutdown()
    finish(threads)
    return [*results, q.qsize(), sorted([q.get(), q.get()]), attempt(q.get)]


def shutdown_releases_join_only_if_immediate(q: Any) -> list[Any]:
    q.put("a")
    q.put("b")
    seen: list[Any] = []
    joins = []
    for immediate in (False, True):
        joined = threading.Thread(target=q.join, daemon=True)
        joined.start()
        joins.append(joined)
        wait_for_waiters(q.all_tasks_done, len(joins))
        q.shutdown(immediate=immediate)
        joined.join(0.2 if not immediate else 10)
        seen.append(joined.is_alive())  # still waiting after shutdown(), not after immediate
    finish(joins)
    seen += [q.qsize(), q.unfinished_tasks, attempt(q.get)]
    return seen


SCENARIOS = [
    shut_down_with_items,
    shut_down_empty,
    shut_down_full,
    shut_down_immediately,
    shutdown_releases_waiting_getters,
    shutdown_releases_waiting_getters_immediately,
    shutdown_releases_waiting_putters,
    shutdown_releases_join_only_if_immediate,
]
EXPECTED = {
    "shut_down_with_items": [
        *(True, 2, False, True, ["a", "b"]),
        *[("raised", "ShutDown")] * 9,
        *(0, 2, ("raised", "ValueError"), ("ok", None), True),
    ],
    "shut_down_empty": [False, *[("raised", "ShutDown")] * 4, 0, 0],
    "shut_down_full": [
        ("raised", "Full"),
        *[("raised", "ShutDown")] * 3,
        *(True, ["a", None], ("raised", "ShutDown"), 0, 2),
    ],
    "shut_down_immediately": [True, 0, 0, *[("raised", "ShutDown")] * 3, ("raised", "ValueError")],
    "shutdown_releases_waiting_getters": [*[("raised", "ShutDown")] * 3, 0],
    "shutdown_releases_waiting_getters_immediately": [*[("raised", "ShutDown")] * 3, 0],
    "shutdown_releases_waiting_putters": [
        *(("raised", "ShutDown"), ("raised", "ShutDown"), 2, ["a", "b"], ("raised", "ShutDown"))
    ],
    "shutdown_releases_join_only_if_immediate": [True, False, 0, 0, ("raised", "ShutDown")],
}


@needs_shutdown
@pytest.mark.parametrize("base", BASES, ids=lambda b: b.__name__)
@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda f: f.__name__)
def test_shutdown_is_stdlibs(scenario: Callable[[Any], list[Any]], base: type[Any]) -> None:
    maxsize = 2
    plain = bounded(scenario, base(maxsize))
    instrumented = bounded(scenario, instrumented_queue_class(base)(maxsize))
    assert plain == EXPECTED[scenario.__name__]
    assert instrumented == plain


def test_the_queue_has_a_shutdown_exactly_where_stdlibs_has() -> None:
    plain: queue.LifoQueue[Any] = queue.LifoQueue()
    instrumented = InstrumentedLifoQueue()
    for name in ("shutdown", "is_shutdown"):
        assert hasattr(instrumented, name) is hasattr(plain, name) is (sys.version_info >= (3, 13))


def test_the_two_puts_differ_only_by_the_shutdown_test() -> None:
    # idle_queue.py defines put() once for Python 3.13 and once for older ones (see there): the
    # one running is tested everywhere, the two must stay the same but for is_shutdown.
    tree = ast.parse(pathlib.Path(idle_queue.__file__).read_text())
    (cls,) = [n for n in tree.body if isinstance(n, ast.ClassDef) and "Mixin" in n.name]
    (branch,) = [n for n in cls.body if isinstance(n, ast.If)]
    assert ast.unparse(branch.test) == "sys.version_info >= (3, 13)"

    def put(body: list[ast.stmt]) -> ast.FunctionDef:
        (fn,) = [n for n in body if isinstance(n, ast.FunctionDef) and n.name == "put"]
        return fn

    new, old = put(branch.body), put(branch.orelse)
    tests = [n for n in ast.walk(new) if isinstance(n, ast.BoolOp) and isinstance(n.op, ast.Or)]
    (shutdown_test,) = tests
    assert ast.unparse(shutdown_test.values[0]) == "self.is_shutdown"
    assert len(shutdown_test.values) == 2
    stripped = ast.unparse(new).replace(
        ast.unparse(shutdown_test), ast.unparse(shutdown_test.values[1]), 1
    )
    assert stripped == ast.unparse(old)


def negative_timeouts(q: Any) -> list[Any]:
    # A blocking get() or put() with a negative timeout is a ValueError whether or not it would
    # wait; a non-blocking one ignores its timeout; an unbounded queue's put() never checks it.
    q.put("a")
    seen: list[Any] = [attempt(lambda: q.get(timeout=-1)), q.qsize()]
    seen += [attempt(lambda: q.put("b", timeout=-1)), q.qsize()]
    seen += [attempt(lambda: q.put("b", block=False, timeout=-1)), q.qsize()]
    seen += [attempt(lambda: q.get(block=False, timeout=-1)), q.qsize()]
    seen += [attempt(lambda: q.get(timeout=-0.5)), attempt(lambda: q.get(block=False, timeout=-1))]
    seen += [attempt(lambda: q.get(timeout=0)), attempt(lambda: q.put("c", timeout=0))]
    return seen


@pytest.mark.parametrize("maxsize", [2, 0], ids=["bounded", "unbounded"])
@pytest.mark.parametrize("base", BASES, ids=lambda b: b.__name__)
def test_negative_timeouts_are_refused_as_stdlibs_refuses_them(
    base: type[Any], maxsize: int
) -> None:
    plain = bounded(negative_timeouts, base(maxsize))
    instrumented = bounded(negative_timeouts, instrumented_queue_class(base)(maxsize))
    refused = ("raised", "ValueError")
    assert plain[0] == refused and plain[2] == (refused if maxsize else ("ok", None))
    assert instrumented == plain


def waiters_woken(q: Any) -> list[Any]:
    """Waiting gets and puts, each released by the call that makes room or brings an item
    (the instrumented queue wakes a condition only when a thread waits on it)."""
    getters, got = in_threads(q, [q.get, lambda: q.get(timeout=30)], "not_empty")
    q.put("a")
    q.put("b")
    finish(getters)
    seen: list[Any] = [sorted(got), attempt(lambda: q.get(timeout=0.01)), q.qsize()]
    q.put("c")
    q.put("d")  # full (maxsize 2)
    putters, put = in_threads(q, [lambda: q.put("e"), lambda: q.put("f", timeout=30)], "not_full")
    # Each get makes room for one waiting put; which item it takes depends on whether that put
    # came first, so what was taken is compared sorted.
    taken = [q.get(), q.get()]
    finish(putters)
    taken += [q.get(), q.get()]
    seen += [put, sorted(taken), q.qsize(), q.unfinished_tasks]
    seen += [len(q.not_empty._waiters), len(q.not_full._waiters)]  # a timed-out get left none
    return seen


@pytest.mark.parametrize("base", BASES, ids=lambda b: b.__name__)
def test_waiting_gets_and_puts_are_woken_as_stdlibs_are(base: type[Any]) -> None:
    plain = bounded(waiters_woken, base(2))
    instrumented = bounded(waiters_woken, instrumented_queue_class(base)(2))
    assert plain[0] == [("ok", "a"), ("ok", "b")]
    assert plain[1] == ("raised", "Empty")
    assert instrumented == plain


class CountingCondition(threading.Condition):
    """A condition of another library's making, that counts its notifications."""

    notified = 0

    def notify(self, n: int = 1) -> None:
        CountingCondition.notified += 1
        super().notify(n)


class OwnConditionsQueue(queue.LifoQueue):  # type: ignore[type-arg]
    """A queue class whose conditions are not threading.Condition's own."""

    def __init__(self, maxsize: int = 0) -> None:
        super().__init__(maxsize)
        self.not_empty = CountingCondition(self.mutex)
        self.not_full = CountingCondition(self.mutex)
        self.all_tasks_done = CountingCondition(self.mutex)


def test_a_queue_built_otherwise_is_counted_through_its_own_conditions(
    metrics: Metrics, server: LoopbackServer
) -> None:
    # The instrumented get() and put() take the mutex and the conditions' waiters to be those
    # of queue.Queue.__init__ (see queue_shape): a queue built otherwise is held and woken
    # through its own conditions, every time, as stdlib's get() and put() do.
    CountingCondition.notified = 0
    plain = bounded(waiters_woken, OwnConditionsQueue(2))
    notified_plain, CountingCondition.notified = CountingCondition.notified, 0
    instrumented = bounded(waiters_woken, instrumented_queue_class(OwnConditionsQueue)(2))
    assert instrumented == plain
    assert CountingCondition.notified == notified_plain > 0

    class OwnLockPool(urllib3.HTTPConnectionPool):
        QueueCls = OwnConditionsQueue

    pm = urllib3.PoolManager(maxsize=2)
    pm.pool_classes_by_scheme = {"http": OwnLockPool, "https": urllib3.HTTPSConnectionPool}
    poolscope.instrument_pool_manager(pm, meter_provider=metrics.provider)
    statuses = [pm.request("GET", server.url).status for _ in range(3)]
    pool = pm.connection_from_url(server.url)
    assert statuses == [200, 200, 200] and isinstance(pool.pool, OwnConditionsQueue)
    (stats,) = get_recorder("otel", metrics.provider, None).all_stats()
    assert (stats.created, stats.reused, stats.open, stats.idle) == (1, 2, 1, 1)


# -- In a urllib3 pool -------------------------------------------------------------------------


def idle_then_shutdown(pool: Any) -> list[Any]:
    seen: list[Any] = [pool.request("GET", "/").status]  # one connection, idle in the queue
    pool.pool.shutdown()
    r = pool.request("GET", "/", preload_content=False)  # what the queue holds is handed out
    seen += [r.status, r.read(1)]
    seen.append(attempt(r.read))  # read to the end, it goes back: put() raises
    r.connection.close()  # it never went back: closed here, as a user would
    return seen


def idle_then_immediate_shutdown(pool: Any) -> list[Any]:
    seen: list[Any] = [pool.request("GET", "/").status]
    pool.pool.shutdown(immediate=True)  # takes the idle connection out, unclosed
    gc.collect()  # (collected at once in CPython)
    return seen


def shutdown_while_a_checkout_waits(pool: Any) -> list[Any]:
    r = pool.request("GET", "/", preload_content=False)  # holds the pool's one connection
    threads, waiting = in_threads(pool.pool, [lambda: pool.request("GET", "/")], "not_empty")
    pool.pool.shutdown()
    finish(threads)
    seen: list[Any] = [r.status, *waiting, attempt(r.read)]
    r.connection.close()
    return seen


def through_a_pool(pm: urllib3.PoolManager, url: str, scenario: Callable[[Any], list[Any]]) -> Any:
    """What urllib3 does with a pool whose queue is shut down: it hands out what the queue still
    holds; a connection coming back, a checkout from the empty queue and close() raise
    ShutDown (urllib3 catches Empty and Full only)."""
    pool = pm.connection_from_url(url)
    q: Any = pool.pool
    try:
        seen = scenario(pool)
        seen += [attempt(lambda: pool.request("GET", "/")), q.qsize(), attempt(pool.close)]
        return [*seen, pool.pool]
    finally:
        # urllib3's finalizer empties the queue again once the pool is collected, until
        # Empty: a shut-down queue would make it raise then, whichever the queue's class.
        q.is_shutdown = False


SHUT_DOWN = ("raised", "ShutDown")
IN_A_POOL: dict[Callable[[Any], list[Any]], tuple[list[Any], dict[str, int]]] = {
    # what urllib3 does, then what poolscope counts
    idle_then_shutdown: (
        [200, 200, b"o", SHUT_DOWN, SHUT_DOWN, 0, SHUT_DOWN, None],
        # unreturned: the connection put() refused, closed by the user
        {"created": 1, "reused": 1, "closed": 1, "waits": 0, "unreturned": 1},
    ),
    idle_then_immediate_shutdown: (
        [200, SHUT_DOWN, 0, SHUT_DOWN, None],
        {"created": 1, "reused": 0, "closed": 1, "waits": 0, "unreturned": 0},  # collected idle
    ),
    shutdown_while_a_checkout_waits: (
        [200, SHUT_DOWN, SHUT_DOWN, SHUT_DOWN, 0, SHUT_DOWN, None],
        {"created": 1, "reused": 0, "closed": 1, "waits": 1, "unreturned": 1},
    ),
}


@needs_shutdown
@pytest.mark.parametrize("scenario", list(IN_A_POOL), ids=lambda f: f.__name__)
def test_a_pool_with_a_shut_down_queue_does_as_without_poolscope(
    scenario: Callable[[Any], list[Any]], metrics: Metrics, server: LoopbackServer
) -> None:
    with warnings.catch_warnings():
        # shutdown(immediate=True) drops the idle connection without closing it: its socket
        # is closed when collected, with a ResourceWarning, with or without poolscope.
        warnings.simplefilter("ignore", ResourceWarning)
        plain = through_a_pool(urllib3.PoolManager(maxsize=1, block=True), server.url, scenario)
        pm = poolscope.instrument_pool_manager(
            urllib3.PoolManager(maxsize=1, block=True), meter_provider=metrics.provider
        )
        observed = through_a_pool(pm, server.url, scenario)
    expected, counts = IN_A_POOL[scenario]
    assert plain == expected
    assert observed == plain
    (stats,) = get_recorder("otel", metrics.provider, None).all_stats()
    assert {name: getattr(stats, name) for name in counts} == counts
    assert stats.open == stats.idle == stats.waiting == stats.wait_timeouts == 0
