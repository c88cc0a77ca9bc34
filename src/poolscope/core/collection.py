"""How poolscope learns that a connection object was collected, and what it says at exit of those
still alive.

Each tracked connection has one weak reference (:class:`ConnRef`), whose callback is its
recorder's (``Recorder._collected``). The recorder holds it (``Recorder.connections``) as well
as the pool's state, so that it runs even when the pool's state is collected with the
connection, as a ``weakref.finalize``'s would, without a finalize's objects and registry for
every connection (a sweep over many hosts makes one a host). At exit, every recorder reports
its connections still alive (:func:`report_at_exit`), before urllib3's pool finalizers drain
their queues, as those finalizers did; after that, a callback reports nothing, as a finalizer
then does nothing.
"""

from __future__ import annotations

import atexit
import weakref
from typing import Any, Protocol

from .errors import internal_error


class ConnRef(weakref.ref):  # type: ignore[type-arg]
    """A weak reference to a connection object that knows the connection's state."""

    __slots__ = ("state",)
    state: Any  # its ConnState


class _Exiting(Protocol):
    def exiting(self) -> None: ...


_recorders: weakref.WeakSet[Any] = weakref.WeakSet()
_exited = False


def report_at_exit(recorder: _Exiting) -> None:
    """Have ``recorder.exiting()`` called as the interpreter exits."""
    _recorders.add(recorder)


def exited() -> bool:
    """Whether the interpreter is past the at-exit report (its teardown collects the rest)."""
    return _exited


def _exiting() -> None:
    global _exited
    for recorder in list(_recorders):
        try:
            recorder.exiting()
        except Exception:
            internal_error("exit")
    _exited = True


# Registered after weakref's own at-exit hook (urllib3's pool finalizers drain their queues),
# so it runs first: connections are reported closed before a drain takes them for checkouts.
weakref.finalize(_recorders, int).atexit = False  # (int: a no-op; this registers weakref's)
atexit.register(_exiting)
