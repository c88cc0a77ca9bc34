"""Inside every Python process of a ``poolscope run``: instrument it for the report, and write
what it saw where the parent collects it, however the process ends.

``poolscope run`` starts the program with a ``sitecustomize`` on its ``PYTHONPATH`` that calls
:func:`bootstrap`; the environment it passes on reaches the program's Python children too
(multiprocessing with fork, spawn or forkserver, ``ProcessPoolExecutor``, ``subprocess``). Each
process writes one JSON file (:mod:`poolscope.reporting.seen`) into the run's folder when it
ends, at exit or in ``os._exit`` (how multiprocessing's workers end); the parent counts the
program's first process and those that used a pool. A SIGTERM
that arrives while it writes waits until the file is written. A process killed by a signal
before it ends writes nothing (poolscope installs no signal handler, which could keep a process
from dying): its pools are missing from the report, which counts the processes that reported.
``multiprocessing.Pool.terminate()`` (which ``with Pool(...)`` calls) races its idle workers'
own exit: ``pool.close(); pool.join()`` lets every worker end and report.

A forked child starts with its parent's counts: it keeps what it had at the fork aside and
writes only its own work (:func:`poolscope.reporting.seen.since`).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import sys
import time
from typing import Any, NoReturn

from ..process import instrument_for_report
from ..reporting.records import all_sinks, renew_locks_after_fork
from ..reporting.seen import Seen, gather, since, to_json

ENV_DIR = "POOLSCOPE_RUN_DIR"  # where each process writes what it saw
ENV_SITE = "POOLSCOPE_RUN_SITE"  # the folder of the sitecustomize (kept for children)
ENV_TOP = "POOLSCOPE_RUN_TOP"  # set by the program's first process, for its children

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
    written_by = 0  # the pid that wrote its part already (a forked child has another)
    at_fork: Seen | None = None  # what this process had when it was forked


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
    atexit.register(write)
    if hasattr(os, "register_at_fork"):  # not on Windows, where there is no fork
        os.register_at_fork(after_in_child=_forked)
    _wrap_os_exit()
    _wrap_exec()


def write() -> None:
    """Write what this process saw into the run's folder, once per process; never raises."""
    pid = os.getpid()
    if _Run.written_by == pid or not _Run.directory:
        return
    _Run.written_by = pid
    # A SIGTERM sent now (multiprocessing.Pool.terminate() races its workers' own exit) waits
    # until the part is written, then ends the process as it would have; in a process with
    # other threads the system may hand it to one of those, which it does not delay.
    blocked = _block(signal.SIGTERM)
    try:
        seen = gather()
        if _Run.at_fork is not None:
            seen = since(seen, _Run.at_fork)
        # pid and time: a pid the system reuses, or an exec'd image, writes a part of its own
        path = os.path.join(_Run.directory, f"{pid}-{time.time_ns()}.json")
        with open(path + ".part", "w", encoding="utf-8") as f:
            json.dump({"top": _Run.top, "seen": to_json(seen)}, f)
        os.replace(path + ".part", path)
    except FileNotFoundError:
        pass  # the run's folder is gone: the program ended, this process outlived it
    except Exception as exc:
        print(f"poolscope run: process {pid} could not write its part: {exc!r}", file=sys.stderr)
    finally:
        if blocked:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGTERM})


def _block(signum: int) -> bool:
    try:
        return signum not in signal.pthread_sigmask(signal.SIG_BLOCK, {signum})
    except (AttributeError, OSError):  # no pthread_sigmask on this platform
        return False


def _started() -> None:
    # The parent tells a process that ended without writing (killed) from one still running.
    try:
        open(os.path.join(_Run.directory, f"{os.getpid()}.started"), "w").close()
    except OSError:
        pass


def _forked() -> None:
    # Another thread of the parent may have held the report's locks at the fork: the child has
    # new ones before it takes any.
    renew_locks_after_fork()
    _Run.top = False
    _Run.written_by = 0
    _started()
    _Run.at_fork = gather()
    for sink in all_sinks():
        sink.forget()  # its samples and pool objects were the parent's


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
    try:  # the new image, if Python, says it started again; if not, it never reports
        os.unlink(os.path.join(_Run.directory, f"{os.getpid()}.started"))
    except OSError:
        pass
    site = os.environ.get(ENV_SITE, "")
    paths = env.get("PYTHONPATH", "").split(os.pathsep)
    rest = [p for p in paths if p and os.path.abspath(p) != site]
    env["PYTHONPATH"] = os.pathsep.join([site, *rest])
    if _Run.top:
        env.pop(ENV_TOP, None)  # the new image is the program's first process, as this was
