"""Whether a queue is built as ``queue.Queue.__init__`` builds one, which the instrumented queue's
get() and put() (:mod:`.idle_queue`) take it to be.

They take the queue's ``mutex`` for its conditions' lock, and ask a condition's ``_waiters``
whether a thread waits on it before they wake it. Both hold for a queue ``queue.Queue.__init__``
built: its three conditions are ``threading.Condition`` over its one ``mutex``, and a condition
lists its waiting threads in ``_waiters`` (CPython's threading, 3.10 to 3.13), changed only
under that lock. A queue built otherwise (a ``QueueCls`` whose ``__init__`` makes conditions of
its own) is instrumented all the same, the slower way: get() and put() hold its conditions and
wake them every time, as stdlib's do. :func:`take_shape` sets which, on each queue.
"""

from __future__ import annotations

import queue
import threading
from collections import deque
from typing import Any


def _conditions_list_waiters() -> bool:
    """Whether this Python's threading.Condition lists its waiting threads in ``_waiters``."""
    return isinstance(getattr(threading.Condition(threading.Lock()), "_waiters", None), deque)


_CONDITIONS_LIST_WAITERS = _conditions_list_waiters()


def stdlib_built(base: type[Any]) -> bool:
    """Whether every queue of class ``base`` is built as stdlib builds one: by
    ``queue.Queue.__init__``, not overridden, on a Python whose conditions list their waiters."""
    return _CONDITIONS_LIST_WAITERS and base.__init__ is queue.Queue.__init__


def stdlib_shaped(q: Any) -> bool:
    """Whether the queue ``q`` is built as stdlib builds one (looked at, for a queue whose
    class is not :func:`stdlib_built`)."""
    mutex = getattr(q, "mutex", None)
    for name in ("not_empty", "not_full", "all_tasks_done"):
        condition = getattr(q, name, None)
        if (
            type(condition) is not threading.Condition
            or getattr(condition, "_lock", None) is not mutex
        ):
            return False
        if not isinstance(getattr(condition, "_waiters", None), deque):
            return False
    return True


_ALWAYS = (True,)  # a list of waiters never empty: a condition woken every time, as stdlib's


def take_shape(q: Any, stdlib_built: bool) -> None:
    """Set what the instrumented get() and put() of ``q`` hold (``_poolscope_get_lock``,
    ``_poolscope_put_lock``) and ask before they wake a thread (``_poolscope_getters``, the
    threads waiting for an item; ``_poolscope_putters``, for room). ``stdlib_built``: its
    class says it is built as stdlib builds a queue (else it is looked at)."""
    if stdlib_built or stdlib_shaped(q):
        q._poolscope_get_lock = q._poolscope_put_lock = q.mutex
        q._poolscope_getters = q.not_empty._waiters
        q._poolscope_putters = q.not_full._waiters
    else:
        q._poolscope_get_lock, q._poolscope_put_lock = q.not_empty, q.not_full
        q._poolscope_getters = q._poolscope_putters = _ALWAYS
