"""Inside each process of a ``poolscope run``: a thread that writes the process's part at a
steady interval, so that a process killed outright (SIGKILL, the OOM killer) loses at most the
last interval, and ``poolscope report`` and ``poolscope top`` read a run while it runs.

Nothing here runs on the request path: the thread wakes once an interval, gathers what the
report sinks hold (under their locks, as :func:`poolscope.report` does) and writes it. It waits
longer when a write is costly (at least ``COST_FACTOR`` times what the last write took), so it
takes at most about 2% of one core whatever the part's size. It is stopped before a fork and
started again on both sides after it, so that a program forks with this thread running as
rarely as can be (Python 3.12 warns about forking a process with threads; 3.13 counts them
before the fork hooks run, and warns when a program's main module calls ``os.fork()``, as it
does beside any OpenTelemetry SDK's export thread: ``--interval 0`` runs no thread). It blocks
every signal, so that the program's signals go to the program's threads as they would without
it.

It also writes a process's last part when the process is ended by a signal
(:mod:`.signals`): the signal handler asks, and waits a bounded time for, this thread to do it,
because the handler runs on the main thread, which may hold a report lock at that moment.
"""

from __future__ import annotations

import os
import select
import signal
import threading
import time
from collections.abc import Callable
from typing import Protocol

COST_FACTOR = 50  # wait at least this many times what the last write took


class Watched(Protocol):
    """A file descriptor the thread also waits on, and what to do when it is readable."""

    fd: int  # -1: none

    def received(self) -> None: ...


class Snapshotter:
    """Calls ``write(final)`` every ``interval`` seconds on a daemon thread of its own, which
    also serves ``watched`` (:class:`poolscope.cli.signals.Relay`) when it is readable."""

    def __init__(self, write: Callable[[bool], None], interval: float, watched: Watched) -> None:
        self._write = write
        self.interval = interval
        self._watched = watched
        self._final = False
        self._done = threading.Event()  # the final part was written
        self._thread: threading.Thread | None = None
        self._wake_r, self._wake_w = -1, -1  # a byte wakes the thread: stop, or the final part
        self._due = time.monotonic() + interval  # the next periodic write, kept across forks

    def start(self) -> None:
        """Start the thread (again, after a fork): a no-op once the final part was asked for."""
        if self._final:
            return
        self._wake_r, self._wake_w = os.pipe()
        self._thread = threading.Thread(target=self._run, name="poolscope-snapshots", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop the thread without a last write (before a fork); ``start`` resumes it."""
        thread, self._thread = self._thread, None
        if thread is not None:
            os.write(self._wake_w, b"s")
            thread.join()
            self._close_wake()
            _until_gone(thread)

    def restart_in_child(self) -> None:
        """In a forked child: the thread did not come along; a new one starts."""
        self._thread = None
        self._final = False
        self._done = threading.Event()
        self._due = time.monotonic() + self.interval
        self._close_wake()
        self.start()

    def write_final(self, timeout: float) -> bool:
        """Have the thread write the final part and wait up to ``timeout`` seconds for it.
        False if it did not finish in time (a lock it needs is held by the thread that called
        this) or no thread runs: the last periodic part then stands."""
        thread = self._thread
        if thread is None or not thread.is_alive():
            return False
        self._final = True
        os.write(self._wake_w, b"f")
        return self._done.wait(timeout)

    def _close_wake(self) -> None:
        for fd in (self._wake_r, self._wake_w):
            if fd >= 0:
                os.close(fd)
        self._wake_r = self._wake_w = -1

    def _run(self) -> None:
        # No signal is ever delivered to this thread: the system hands a process's signal to a
        # thread that does not block it, and Python runs handlers only on the main thread,
        # which a signal taken by this thread would not wake (a main thread blocked in a lock
        # would never run its SIGTERM handler).
        signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
        wake, watched = self._wake_r, self._watched
        poll = select.poll()  # not select(): a busy server's new pipe may be fd 1024 or more
        poll.register(wake, select.POLLIN)
        if watched.fd >= 0:
            poll.register(watched.fd, select.POLLIN)
        while True:
            wait = max(0.0, self._due - time.monotonic())
            ready = {fd for fd, _ in poll.poll(wait * 1000)}
            if watched.fd in ready:
                watched.received()
            if wake in ready and not self._final:
                return  # stopped: a fork is coming
            final = self._final
            if final or time.monotonic() >= self._due:
                began = time.monotonic()
                self._write(final)
                if final:
                    self._done.set()
                    return
                spent = time.monotonic() - began
                self._due = began + max(self.interval, COST_FACTOR * spent)


def _until_gone(thread: threading.Thread, longest: float = 0.1) -> None:
    """Wait until the system no longer counts ``thread`` (Linux: /proc/self/task), which can
    lag a moment behind join(): Python 3.12+ counts the threads there as it forks."""
    task = f"/proc/self/task/{thread.native_id}"
    deadline = time.monotonic() + longest
    while os.path.exists(task) and time.monotonic() < deadline:
        time.sleep(0.0005)
