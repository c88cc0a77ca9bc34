"""Inside each process of a ``poolscope run``: a process ended by SIGTERM or SIGHUP writes its
last part first, then dies of the same signal, as it would have without poolscope.

Only a signal whose disposition is the default (end the process) gets poolscope's handler, and
only until the program sets its own: a program that handles SIGTERM keeps its handler and its
behaviour (it usually ends through ``sys.exit``, and the part is written at exit as always).
SIGINT is left alone: Python's own handler raises ``KeyboardInterrupt``, and the part is written
at exit.

How this cannot hang or keep a process alive:

- The handler runs on the main thread, which may hold one of the report's locks at that moment,
  so it writes nothing itself: the snapshot thread writes the last part, and the handler waits
  for it at most ``FINAL_WRITE_TIMEOUT`` seconds. If the write does not finish in time, the
  process dies all the same, and the report has its last periodic part.
- If the main thread is writing the final part itself (the process is exiting: a
  multiprocessing worker terminated as it ends), the handler returns at once and the process
  dies of the signal as soon as that write is done (:func:`die_if_signalled`).
- Then the handler puts back the default disposition and raises the signal again: the process
  dies of it, with the exit status the signal gives (``128 + N`` to a shell).
- The same signal arriving again while the handler waits (``poolscope run`` forwards a SIGTERM
  that a process group already received) is ignored: the first is already ending the process,
  within the timeout. Another of these signals arriving then ends it at once, as the default
  disposition is back for a signal once its handler runs.
- A program that sets its own handler later replaces poolscope's: poolscope never re-installs
  one, and never chains to it.
"""

from __future__ import annotations

import signal
from collections.abc import Callable
from types import FrameType

from .snapshots import Snapshotter

FINAL_WRITE_TIMEOUT = 2.0  # seconds the last part may take before the process dies anyway

REPORTED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


_deferred: list[int] = []  # a signal that arrived while this thread wrote the final part


def report_before_dying(snapshots: Snapshotter, writing_here: Callable[[], bool]) -> None:
    """Set poolscope's handler for each of ``REPORTED_SIGNALS`` left at its default;
    ``writing_here()`` says whether the calling thread is writing the final part."""
    ending: list[int] = []

    def handler(signum: int, frame: FrameType | None) -> None:
        if ending:
            return  # the first one is ending the process
        ending.append(signum)
        for other in REPORTED_SIGNALS:  # a different one now ends the process at once
            if other != signum and signal.getsignal(other) is handler:
                signal.signal(other, signal.SIG_DFL)
        if writing_here():
            _deferred.append(signum)  # the write this interrupted ends with it
            return
        snapshots.write_final(FINAL_WRITE_TIMEOUT)
        _die_of(signum)

    for signum in REPORTED_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, handler)


def die_if_signalled() -> None:
    """After the final part was written: die of the signal that arrived meanwhile, if one did."""
    if _deferred:
        _die_of(_deferred[0])


def _die_of(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    signal.raise_signal(signum)
