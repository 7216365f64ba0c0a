"""Worker processes for batch runs: one pipe each, no named semaphores, death with the parent.

``concurrent.futures.ProcessPoolExecutor`` with the ``spawn`` start method creates five POSIX named
semaphores per pool (``/dev/shm/sem.mp-*``, unlinked only by a clean exit or the resource tracker,
so a killed process group leaks them), cannot say which task a dead worker was running, and its
workers outlive a parent killed with SIGKILL.  This pool uses plain ``spawn`` processes, each with
its own duplex pipe (a socket pair: no semaphore, no shared memory), one task at a time per worker,
so a worker that dies fails exactly the task it held and is replaced.  Each worker asks the kernel
to kill it when its parent dies (``prctl(PR_SET_PDEATHSIG, SIGKILL)`` on Linux) and, everywhere,
watches its parent's pid from a thread as a fallback.
"""

from __future__ import annotations

import ctypes
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
import traceback
from multiprocessing.connection import wait as mp_wait

PR_SET_PDEATHSIG = 1


def die_with_parent(parent_pid: int, poll_s: float = 1.0) -> None:
    """Make this process end when ``parent_pid`` ends (prctl on Linux, a watchdog thread elsewhere too)."""
    if sys.platform.startswith("linux"):
        try:
            libc = ctypes.CDLL(None, use_errno=True)
            libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        except (OSError, AttributeError):
            pass
    if os.getppid() != parent_pid:  # the parent died before the prctl took effect
        os._exit(1)

    def watch():
        while True:
            time.sleep(poll_s)
            if os.getppid() != parent_pid:
                os._exit(1)
    threading.Thread(target=watch, name="gpuvalid-parent-watch", daemon=True).start()


def _worker_main(conn, parent_pid: int, init, init_args) -> None:
    die_with_parent(parent_pid)
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if init is not None:
        init(*init_args)
    while True:
        try:
            msg = conn.recv()
        except (EOFError, OSError):
            return
        if msg is None:
            return
        fn, args = msg
        try:
            out = ("ok", fn(*args))
        except BaseException as exc:  # returned to the parent as a one-line failure
            out = ("error", f"{type(exc).__name__}: {' '.join(str(exc).split())}", traceback.format_exc())
        try:
            conn.send(out)
        except Exception as exc:  # the result cannot be pickled
            conn.send(("error", f"result not transferable ({type(exc).__name__}: {exc})", ""))


class Worker:
    """One ``spawn`` worker process with its own duplex pipe; ``tag`` is the task it runs (None: idle)."""

    def __init__(self, ctx, name: str, init=None, init_args=()):
        self.conn, child = ctx.Pipe(duplex=True)
        self.proc = ctx.Process(target=_worker_main, args=(child, os.getpid(), init, init_args), name=name,
                                daemon=True)
        self.proc.start()
        child.close()
        self.tag = None  # the task being run (None: idle)

    def submit(self, tag, fn, *args) -> None:
        """Send ``fn(*args)`` to the worker; it is busy with ``tag`` until collected."""
        self.tag = tag
        self.conn.send((fn, args))

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the worker to exit, kill it after ``timeout`` seconds, and close its pipe."""
        try:
            self.conn.send(None)
        except (OSError, ValueError):
            pass
        self.proc.join(timeout)
        if self.proc.is_alive():
            self.proc.kill()
            self.proc.join(5)
        self.conn.close()


class Pool:
    """``n`` worker processes; ``init(*init_args[i])`` runs once in worker ``i``."""

    def __init__(self, n: int, name: str, init=None, init_args: list | None = None, ctx=None):
        self.ctx = ctx or mp.get_context("spawn")  # never fork a process that may hold a CUDA context
        self.name, self.init = name, init
        self.init_args = init_args or [()] * n
        self.workers = [self._new(i) for i in range(n)]

    def _new(self, i: int) -> Worker:
        return Worker(self.ctx, f"gpuvalid-{self.name}-{i}", self.init, self.init_args[i])

    def idle(self) -> Worker | None:
        """Return an idle worker, or None when all are busy."""
        return next((w for w in self.workers if w.tag is None), None)

    @property
    def busy(self) -> int:
        """The number of workers running a task."""
        return sum(w.tag is not None for w in self.workers)

    def handles(self) -> list:
        """Return the pipe and process sentinel of every busy worker (what :func:`wait_any` waits on)."""
        return [h for w in self.workers if w.tag is not None for h in (w.conn, w.proc.sentinel)]

    def collect(self, ready) -> list[tuple]:
        """Return the outcomes of the workers among ``ready``; a dead worker is replaced by a fresh one.

        Each is (tag, 'ok', result) | (tag, 'error', message, traceback) | (tag, 'died', message).
        """
        out = []
        for i, w in enumerate(self.workers):
            if w.tag is None or (w.conn not in ready and w.proc.sentinel not in ready):
                continue
            msg = None
            if w.conn in ready:
                try:
                    msg = w.conn.recv()
                except (EOFError, OSError):
                    msg = None
            if msg is not None:
                out.append((w.tag, *msg))
                w.tag = None
                continue
            w.proc.join(5)
            code = w.proc.exitcode
            why = (f"killed by signal {-code}" if code is not None and code < 0 else f"exit code {code}")
            out.append((w.tag, "died", f"{self.name} worker process died ({why}; killed or out of memory)"))
            w.conn.close()
            self.workers[i] = self._new(i)
        return out

    def close(self) -> None:
        """Stop every worker; busy ones are killed at once rather than waited for."""
        for w in self.workers:
            if w.tag is not None:  # busy: do not wait for a long computation
                w.proc.kill()
        for w in self.workers:
            w.stop()


def wait_any(pools, timeout: float | None) -> list:
    """Wait up to ``timeout`` s until a busy worker of ``pools`` answers or dies; return the ready handles.

    With no busy worker it sleeps ``timeout`` s and returns an empty list.
    """
    handles = [h for p in pools if p is not None for h in p.handles()]
    if not handles:
        if timeout:
            time.sleep(timeout)
        return []
    return mp_wait(handles, timeout)
