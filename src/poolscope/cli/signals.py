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
- Python runs a handler only on the main thread, and the system may hand the signal to another
  thread of the program, which does not wake a main thread blocked in a lock (``join()``): the
  default disposition would have ended the process, a handler waits for nothing. So
  :class:`Relay` watches Python's wakeup fd, which every thread writes a caught signal's number
  to, and when the handler has not started ``RELAY_AFTER`` seconds later, sends the signal to the
  main thread itself, which it wakes. (Only while poolscope owns the wakeup fd: an asyncio loop
  that installs signal handlers takes it over, and runs its handlers from its own loop.)
- The same signal arriving again while the handler waits (``poolscope run`` forwards a SIGTERM
  that a process group already received) is ignored: the first is already ending the process,
  within the timeout. Another of these signals arriving then ends it at once, as the default
  disposition is back for a signal once its handler runs.
- A program that sets its own handler later replaces poolscope's: poolscope never re-installs
  one, and never chains to it.
"""

from __future__ import annotations

import os
import signal
import threading
import time
from collections.abc import Callable
from types import FrameType

from .snapshots import Snapshotter

FINAL_WRITE_TIMEOUT = 2.0  # seconds the last part may take before the process dies anyway
RELAY_AFTER = 0.2  # seconds the main thread has to start the handler before it is woken

REPORTED_SIGNALS = (signal.SIGTERM, signal.SIGHUP)


class _Ending:
    handler: Callable[[int, FrameType | None], None] | None = None
    signum = 0  # the signal ending the process, once the handler started
    deferred = 0  # a signal that arrived while this thread wrote the final part


def report_before_dying(
    snapshots: Snapshotter, *, writing_here: Callable[[], bool], written: Callable[[], bool]
) -> None:
    """Set poolscope's handler for each of ``REPORTED_SIGNALS`` left at its default;
    ``writing_here()`` says whether the calling thread is writing the final part, ``written()``
    whether it was written (the process is exiting)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if _Ending.signum:
            return  # the first one is ending the process
        _Ending.signum = signum
        for other in REPORTED_SIGNALS:  # a different one now ends the process at once
            if other != signum and signal.getsignal(other) is handler:
                signal.signal(other, signal.SIG_DFL)
        if writing_here():
            _Ending.deferred = signum  # the write this interrupted ends with it
            return
        if not written():
            snapshots.write_final(FINAL_WRITE_TIMEOUT)
        _die_of(signum)

    _Ending.handler = handler
    for signum in REPORTED_SIGNALS:
        if signal.getsignal(signum) == signal.SIG_DFL:
            signal.signal(signum, handler)


def forget_signal_after_fork() -> None:
    """In a forked child: a signal its parent was handling is not the child's."""
    _Ending.signum = _Ending.deferred = 0


def block_reported_signals() -> frozenset[int]:
    """Block ``REPORTED_SIGNALS`` on this thread; returns the mask to restore."""
    return frozenset(signal.pthread_sigmask(signal.SIG_BLOCK, REPORTED_SIGNALS))


def restore_signal_mask(mask: frozenset[int]) -> None:
    """Put back the mask :func:`block_reported_signals` returned: a signal that arrived in
    between is delivered now."""
    signal.pthread_sigmask(signal.SIG_SETMASK, mask)


def die_if_signalled() -> None:
    """After the final part was written: die of the signal that arrived meanwhile, if one did."""
    if _Ending.deferred:
        _die_of(_Ending.deferred)


def _die_of(signum: int) -> None:
    signal.signal(signum, signal.SIG_DFL)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signum})
    signal.raise_signal(signum)


class Relay:
    """Python's wakeup fd, read by the snapshot thread: a reported signal that the main thread
    has not started to handle ``RELAY_AFTER`` seconds after it arrived is sent to it."""

    def __init__(self) -> None:
        self.fd = -1  # what the snapshot thread reads; -1 while poolscope does not own it
        self._write_end = -1

    def open(self) -> None:
        """Take Python's wakeup fd, unless the program has it (main thread only)."""
        read_end, write_end = os.pipe()
        os.set_blocking(read_end, False)
        os.set_blocking(write_end, False)
        try:
            previous = signal.set_wakeup_fd(write_end, warn_on_full_buffer=False)
        except ValueError:  # not the main thread
            previous = -2
        if previous != -1:
            if previous >= 0:
                signal.set_wakeup_fd(previous)
            os.close(read_end)
            os.close(write_end)
            return
        self.fd, self._write_end = read_end, write_end

    def reopen_in_child(self) -> None:
        """In a forked child: a pipe of its own (the inherited one is the parent's too)."""
        if self.fd < 0:
            return
        ours = self._write_end
        previous = signal.set_wakeup_fd(-1)
        for fd in (self.fd, ours):
            os.close(fd)
        self.fd = self._write_end = -1
        if previous == ours:
            self.open()
        elif previous >= 0:  # the program's since: left as it is
            signal.set_wakeup_fd(previous)

    def received(self) -> None:
        """Read what arrived; hand a reported signal the main thread left to it."""
        try:
            data = os.read(self.fd, 512)
        except OSError:
            return
        for signum in set(data):
            if signum not in REPORTED_SIGNALS or signal.getsignal(signum) is not _Ending.handler:
                continue
            deadline = time.monotonic() + RELAY_AFTER
            while not _Ending.signum and time.monotonic() < deadline:
                time.sleep(0.01)
            main = threading.main_thread().ident
            if not _Ending.signum and main is not None:
                signal.pthread_kill(main, signum)
