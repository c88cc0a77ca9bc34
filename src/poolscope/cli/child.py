"""Inside every Python process of a ``poolscope run``: instrument it for the report, and write
what it saw where the parent collects it, while it runs and however it ends.

``poolscope run`` starts the program with a ``sitecustomize`` on its ``PYTHONPATH`` that calls
:func:`bootstrap`; the environment it passes on reaches the program's Python children too
(multiprocessing with fork, spawn or forkserver, ``ProcessPoolExecutor``, ``subprocess``). Each
process writes one JSON part (:mod:`poolscope.reporting.seen`) into the run's folder: every
interval while it runs (:mod:`.snapshots`), and a final one when it ends, at exit, in
``os._exit`` (how multiprocessing's workers end) or by SIGTERM or SIGHUP (:mod:`.signals`). A
process killed outright (SIGKILL, the OOM killer) leaves its last periodic part, which the
report counts and says is one. The parent counts the program's first process and those that
used a pool.

A forked child starts with its parent's counts: it keeps what it had at the fork aside and
writes only its own work (:func:`poolscope.reporting.seen.since`).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import threading
import time
import weakref
from collections import Counter
from typing import Any, NoReturn

from ..core.events import PoolKey
from ..instrumentation.callsites import pools_in_use_by_threads
from ..instrumentation.copies import copies_in_use_by_threads
from ..instrumentation.pools import pool_key
from ..process import instrument_for_report
from ..reporting.records import all_sinks, renew_locks_after_fork
from ..reporting.seen import Seen, gather, since, to_json
from .signals import (
    Relay,
    block_reported_signals,
    die_if_signalled,
    forget_signal_after_fork,
    report_before_dying,
    restore_signal_mask,
)
from .snapshots import Snapshotter

ENV_DIR = "POOLSCOPE_RUN_DIR"  # where each process writes what it saw
ENV_SITE = "POOLSCOPE_RUN_SITE"  # the folder of the sitecustomize (kept for children)
ENV_TOP = "POOLSCOPE_RUN_TOP"  # set by the program's first process, for its children
ENV_INTERVAL = "POOLSCOPE_RUN_INTERVAL"  # seconds between snapshots (0: none)
DEFAULT_INTERVAL = 1.0

SITECUSTOMIZE = '''\
"""Written by poolscope run: instrument this process for the report, then run the
environment's own sitecustomize.py, if one is further along sys.path."""
import importlib.util, os, sys

_here = os.environ.get("POOLSCOPE_RUN_SITE", "")
try:
    from poolscope.cli.child import bootstrap
except ImportError as _exc:  # this interpreter has no poolscope: tell the parent why
    try:
        _to = os.path.join(os.environ["POOLSCOPE_RUN_DIR"], "%d.error" % os.getpid())
        with open(_to, "w", encoding="utf-8") as _f:
            _f.write(sys.executable + "\\n" + str(_exc) + "\\n")
    except (KeyError, OSError):
        pass
else:
    bootstrap()
sys.path[:] = [p for p in sys.path if os.path.abspath(p or ".") != _here]
for _dir in sys.path:
    _next = os.path.join(_dir or ".", "sitecustomize.py")
    if os.path.isfile(_next):
        _spec = importlib.util.spec_from_file_location("_poolscope_next_sitecustomize", _next)
        if _spec is not None and _spec.loader is not None:
            _spec.loader.exec_module(importlib.util.module_from_spec(_spec))
        break
'''


class _Run:
    directory = ""
    top = False  # the program's first process: it writes even if it saw no pool
    part = ""  # this process's part, written over at each snapshot (a forked child has its own)
    written_by = 0  # the pid that wrote its final part already (a forked child has another)
    at_fork: Seen | None = None  # what this process had when it was forked
    snapshots: Snapshotter | None = None
    relay = Relay()  # hands the main thread a SIGTERM another thread took
    mask_at_fork: frozenset[int] = frozenset()  # the signal mask before a fork blocked ours
    final_writer = 0  # the thread writing the final part, while it does
    lock = threading.Lock()  # one write at a time: a snapshot never lands after the final part


def bootstrap() -> None:
    """Instrument this process for the report and make sure it writes what it saw."""
    directory = os.environ.get(ENV_DIR)
    if not directory:
        return
    _Run.directory = directory
    _Run.top = ENV_TOP not in os.environ
    os.environ[ENV_TOP] = str(os.getpid())  # its children know they are not the first
    _started()
    instrument_for_report()
    # weakref's own at-exit hook runs every finalizer still alive (urllib3's drain its pools'
    # connections); registering it before ours makes it run after ours (atexit runs its hooks
    # last in, first out), so the final part is what the program left as it ended.
    weakref.finalize(_Run, _nothing).atexit = False
    atexit.register(write)
    interval = _interval()
    if interval > 0:  # 0: no thread and no signal handler, a part at exit only
        _Run.relay.open()
        _Run.snapshots = snapshots = Snapshotter(_write, interval, _Run.relay)
        report_before_dying(
            snapshots,
            writing_here=lambda: _Run.final_writer == threading.get_ident(),
            written=lambda: _Run.written_by == os.getpid(),
        )
        snapshots.start()
        os.register_at_fork(
            before=_before_fork, after_in_parent=_after_fork_in_parent, after_in_child=_forked
        )
    else:
        os.register_at_fork(after_in_child=_forked)
    _wrap_os_exit()
    _wrap_exec()


def _nothing() -> None:
    pass


def write() -> None:
    """Write this process's final part into the run's folder, once per process; never raises."""
    _write(final=True)


def _write(final: bool) -> None:
    pid = os.getpid()
    # A SIGTERM sent during the final write (multiprocessing.Pool.terminate() races its workers'
    # own exit) waits until the part is written, then ends the process as it would have; in a
    # process with other threads the system may hand it to one of those, which it does not delay.
    blocked = final and threading.current_thread() is threading.main_thread()
    blocked = blocked and _block(signal.SIGTERM)
    if final:
        _Run.final_writer = threading.get_ident()
    try:
        with _Run.lock:
            if _Run.written_by == pid or not _Run.directory:
                return
            if final:
                _Run.written_by = pid
            seen = gather()
            if _Run.at_fork is not None:
                seen = since(seen, _Run.at_fork)
            if final:
                seen.held = _held_at_end(seen)
            part = {"top": _Run.top, "final": final, "written": time.time(), "seen": to_json(seen)}
            with open(_Run.part + ".part", "w", encoding="utf-8") as f:
                json.dump(part, f)
            os.replace(_Run.part + ".part", _Run.part)
    except FileNotFoundError:
        pass  # the run's folder is gone: the program ended, this process outlived it
    except Exception as exc:
        print(f"poolscope run: process {pid} could not write its part: {exc!r}", file=sys.stderr)
    finally:
        if final:
            _Run.final_writer = 0
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})
        if final:
            die_if_signalled()


def _held_at_end(seen: Seen) -> dict[PoolKey, int]:
    """Connections still checked out as the process ends that no thread is using: held by
    responses nobody read or closed. Those a thread is still sending or reading on (in flight
    when the program was stopped) are not counted."""
    in_flight = Counter(
        pool_key(pool) for pool in (*pools_in_use_by_threads(), *copies_in_use_by_threads())
    )
    return {key: n for key, s in seen.stats.items() if (n := s.in_use - in_flight[key]) > 0}


def _interval() -> float:
    try:
        return float(os.environ.get(ENV_INTERVAL, DEFAULT_INTERVAL))
    except ValueError:
        return DEFAULT_INTERVAL


def _block(signum: int) -> bool:
    try:
        return signum not in signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    except (AttributeError, OSError):  # no pthread_sigmask on this platform
        return False


def _started() -> None:
    # The parent tells a process that ended without writing (killed) from one still running.
    # The part's name has the time too: a pid the system reuses, or an exec'd image, writes a
    # part of its own.
    pid = os.getpid()
    _Run.part = os.path.join(_Run.directory, f"{pid}-{time.time_ns()}.json")
    try:
        open(os.path.join(_Run.directory, f"{pid}.started"), "w").close()
    except OSError:
        pass


def _before_fork() -> None:
    # SIGTERM and SIGHUP wait until both sides are set up again: the snapshot thread that writes
    # the last part is stopped, and the child shares the parent's wakeup pipe until it has its
    # own (a signal to the child would wake the parent's relay).
    _Run.mask_at_fork = block_reported_signals()
    if _Run.snapshots is not None:
        _Run.snapshots.stop()


def _after_fork_in_parent() -> None:
    if _Run.snapshots is not None:
        _Run.snapshots.start()
    restore_signal_mask(_Run.mask_at_fork)


def _forked() -> None:
    # Another thread of the parent may have held the report's locks at the fork: the child has
    # new ones before it takes any.
    renew_locks_after_fork()
    forget_signal_after_fork()
    _Run.lock = threading.Lock()
    _Run.top = False
    _Run.written_by = 0
    _started()
    _Run.at_fork = gather()
    for sink in all_sinks():
        sink.forget()  # its samples and pool objects were the parent's
    if _Run.snapshots is not None:
        _Run.relay.reopen_in_child()
        _Run.snapshots.restart_in_child()
        restore_signal_mask(_Run.mask_at_fork)


def _wrap_os_exit() -> None:
    original = os._exit
    if getattr(original, "_poolscope", False):
        return

    def _exit(status: int) -> NoReturn:
        write()
        original(status)

    _exit._poolscope = True  # type: ignore[attr-defined]
    os._exit = _exit


def _wrap_exec() -> None:
    """A process that replaces itself (``opentelemetry-instrument python app.py`` does) keeps
    poolscope's ``sitecustomize`` first on the new image's ``PYTHONPATH``, which then runs the
    one put before it (opentelemetry's), and stays the program's first process if it was."""
    for name in ("execv", "execve"):
        original = getattr(os, name)
        if getattr(original, "_poolscope", False):
            continue

        def exec_(*args: Any, _original: Any = original, _env: bool = name == "execve") -> Any:
            try:
                if _env:  # a copy: the caller's own dict stays as it was
                    env = dict(args[2])
                    _before_exec(env)
                    args = (args[0], args[1], env)
                else:
                    _before_exec(os.environ)
            except Exception:
                pass
            return _original(*args)

        exec_._poolscope = True  # type: ignore[attr-defined]
        setattr(os, name, exec_)


def _before_exec(env: Any) -> None:
    if _Run.snapshots is not None:
        _Run.snapshots.stop()
    # The new image, if Python, says it started again; if not, it never reports. What this image
    # saw is not reported (a snapshot of it would count as a process that never finished).
    for name in (f"{os.getpid()}.started", _Run.part):
        try:
            os.unlink(os.path.join(_Run.directory, name))
        except OSError:
            pass
    site = os.environ.get(ENV_SITE, "")
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    rest = [p for p in paths if p and os.path.abspath(p) != site]
    env["PYTHONPATH"] = os.pathsep.join([site, *rest])
    if _Run.top:
        env.pop(ENV_TOP, None)  # the new image is the program's first process, as this was
