"""The local batch runner: process pools that read maps ahead and validate them.

``prefetch`` processes read, hash and inflate maps ahead while ``workers`` compute processes (or the calling
process when ``workers == 1``) validate them (at most ``workers + prefetch`` maps in flight); the calling
process alone records the results.
"""

from __future__ import annotations

import time
from collections import deque

from ..errors import one_line
from .entry import EntryOptions, EntryTask, process_entry
from .pool import Pool, wait_any
from .prefetch import Prefetched
from .record import EntryRecord
from .stages import BatchOptions, Dispatcher, failed_record, log_traceback, stage_input, unchanged_record, warn

# ---- compute worker processes -------------------------------------------------------------------
_DEVICE: str | None = None


def _init_worker(device: str) -> None:
    global _DEVICE
    _DEVICE = device


def _compute(task: EntryTask, eopts: EntryOptions, pf: Prefetched | None) -> EntryRecord:
    if _DEVICE is not None:
        eopts.device = _DEVICE
    return process_entry(task, eopts, pf)


def worker_devices(device: str, n: int, visible: list[str] | None = None) -> tuple[list[str], str | None]:
    """Return (one device per compute worker, a warning or None) for ``n`` compute workers.

    cuda → cuda:0 … cuda:n-1, shared round-robin when fewer GPUs are visible; cpu, auto or an explicit
    cuda:K → the same for every worker.
    """
    d = (device or "cpu").lower()
    if d in ("cuda", "gpu") and n > 1:
        if visible is not None and 0 < len(visible) < n:
            return ([f"cuda:{i % len(visible)}" for i in range(n)],
                    f"{n} compute workers on {len(visible)} visible GPU(s): they share them round-robin")
        return [f"cuda:{i}" for i in range(n)], None
    return [device] * n, None


class LocalRunner:
    """One local batch run: the read-ahead and compute pools and the queue between them.

    A task goes through three places: the :class:`Dispatcher` (not yet taken), the prefetch pool (being read,
    hashed and inflated; inline when there is none) and ``ready`` (read, waiting for a compute worker, or for
    this process when ``workers == 1``).  At most ``workers + prefetch`` tasks are past the dispatcher at once.
    Every task ends in exactly one callback: ``on_done`` (a record, ``done`` or ``failed``) or ``on_skip``
    (unchanged since the last run, or finished by another process), ``on_start`` having been called before
    ``on_done``.  A pool replaces a worker that died (:meth:`Pool.collect`); the entry it held fails with the
    reason, and the others go on.

    Parameters
    ----------
    tasks : list of EntryTask or Dispatcher
        What to run (a list is wrapped in a dispatcher without claims).
    opts : BatchOptions
        Workers, prefetch processes, device, download.
    on_start, on_done, on_skip : callable
        Called with a task when it starts, with its record when it ends, with the record of a skipped entry.
    """

    def __init__(self, tasks, opts: BatchOptions, on_start, on_done, on_skip):
        self.disp = tasks if isinstance(tasks, Dispatcher) else Dispatcher(tasks, None, "", on_skip)
        self.opts = opts
        self.on_start, self.on_done, self.on_skip = on_start, on_done, on_skip
        self.n_pre, self.n_comp = max(0, opts.prefetch), max(1, opts.workers)
        self.eopts = opts.entry_options()
        self.pre: Pool | None = None
        self.comp: Pool | None = None
        self.ready: deque = deque()      # (task, Prefetched or None) waiting for a compute worker
        self.started: set = set()        # ids whose on_start was called
        self.depth = self.n_comp + self.n_pre

    # ---- one task's transitions ------------------------------------------------------------------
    def start(self, t: EntryTask) -> None:
        """Call ``on_start`` for ``t`` once."""
        if t.emdb_id not in self.started:
            self.started.add(t.emdb_id)
            self.on_start(t)

    def finish(self, t: EntryTask, rec: EntryRecord) -> None:
        """Report ``t``'s record (starting it first if it never started) and release its claim."""
        self.start(t)
        self.on_done(rec)
        self.disp.release(t)

    def take_ready(self, task: EntryTask, pf: Prefetched | None) -> None:
        """Queue a read task for computing, or skip it when its map is unchanged since the last run.

        An unchanged map whose ``status.json`` cannot be refreshed is validated again.
        """
        if pf is not None and pf.unchanged:
            try:
                rec = unchanged_record(task, pf)
            except OSError:  # status.json cannot be refreshed
                rec = None
            if rec is not None:
                self.on_skip(rec)
                self.disp.release(task)
                return
            task.known_sha256, pf = None, None  # validate it again (process_entry reads the map)
        self.ready.append((task, pf))

    def stage_inline(self, t: EntryTask) -> None:
        """Run the input stage of ``t`` in this process (no prefetch pool); a failure fails the entry only."""
        try:
            self.take_ready(*stage_input(t, self.opts))
        except Exception as exc:  # never stop the batch for one entry
            self.finish(t, failed_record(t, f"input stage failed ({type(exc).__name__}: {one_line(exc)})",
                                         self.opts))

    # ---- the pools ---------------------------------------------------------------------------------
    def in_flight(self) -> int:
        """Return the number of tasks in the pools (being read or computed)."""
        return (self.pre.busy if self.pre else 0) + (self.comp.busy if self.comp else 0)

    def fill(self) -> None:
        """Take tasks from the dispatcher until ``workers + prefetch`` are read ahead or being computed."""
        while len(self.ready) + self.in_flight() < self.depth:
            if self.pre is not None and self.pre.idle() is None:
                return
            t = self.disp.take()
            if t is None:
                return
            if t.problem:
                self.ready.append((t, None))
            elif self.pre is not None:
                self.pre.idle().submit(t, stage_input, t, self.opts)
            elif self.opts.download:
                self.stage_inline(t)
            else:
                self.ready.append((t, None))  # process_entry reads it

    def handle(self, handles) -> None:
        """Collect what the pools finished (``handles``: those :func:`wait_any` returned).

        A read map goes to ``ready``; a computed record is reported; a failure (the stage's own reason, or a
        worker's exception with its traceback in the entry's ``errors.log``) fails that entry only.
        """
        for pool in (self.pre, self.comp):
            if pool is None:
                continue
            for tag, kind, *rest in pool.collect(handles):
                if pool is self.pre:
                    t = tag
                    if kind == "ok":
                        self.take_ready(*rest[0])
                        continue
                    pf = None
                else:
                    t, pf = tag
                    if kind == "ok":
                        self.finish(t, rest[0])
                        continue
                if pf is not None:
                    pf.cleanup()
                if kind == "error":
                    log_traceback(t, rest[1])
                    self.finish(t, failed_record(t, f"internal error ({rest[0]})", self.opts))
                else:
                    self.finish(t, failed_record(t, rest[0], self.opts))

    def compute_here(self) -> None:
        """Validate the next ready task in this process (``workers == 1``)."""
        self.handle(wait_any([self.pre], 0))
        self.fill()
        t, pf = self.ready.popleft()
        self.start(t)
        try:
            rec = process_entry(t, self.eopts, pf)
        except Exception as exc:  # process_entry records its own failures; this is a last resort
            rec = failed_record(t, f"internal error ({type(exc).__name__}: {one_line(exc)})", self.opts)
        self.finish(t, rec)

    def submit_ready(self) -> None:
        """Hand ready tasks to idle compute workers."""
        while self.comp is not None and self.ready and self.comp.idle() is not None:
            t, pf = self.ready.popleft()
            self.start(t)
            self.comp.idle().submit((t, pf), _compute, t, self.eopts, pf)

    # ---- the run -----------------------------------------------------------------------------------
    def open_pools(self) -> None:
        """Start the prefetch pool and, for more than one worker, the compute pool (one device each)."""
        if self.n_pre:
            self.pre = Pool(self.n_pre, "prefetch")
        if self.n_comp > 1:
            devs, warning = worker_devices(self.opts.device, self.n_comp, _visible_if_cuda(self.opts.device))
            if warning:
                warn(warning)
            self.comp = Pool(self.n_comp, "compute", init=_init_worker, init_args=[(d,) for d in devs])

    def run(self) -> None:
        """Run every task to its callback, then stop the pools and delete the spool files left."""
        try:
            self.open_pools()
            while True:
                self.fill()
                if self.comp is None and self.ready:  # compute in this process
                    self.compute_here()
                    continue
                self.submit_ready()
                if not self.in_flight():
                    if not self.ready and not self.disp:
                        break
                    if not self.ready:  # only entries claimed by another live process are left: wait for them
                        time.sleep(min(0.5, self.disp.retry_s))
                    continue
                self.handle(wait_any([self.pre, self.comp], 1.0))
        finally:
            self.close()

    def close(self) -> None:
        """Stop the pools and delete the spool files of tasks still queued."""
        for p in (self.pre, self.comp):
            if p is not None:
                p.close()
        for _, pf in self.ready:
            if pf is not None:
                pf.cleanup()


def run_local(tasks, opts: BatchOptions, on_start, on_done, on_skip) -> None:
    """Run ``tasks`` (a list or a :class:`Dispatcher`) with prefetch and compute worker processes.

    See :class:`LocalRunner`.
    """
    LocalRunner(tasks, opts, on_start, on_done, on_skip).run()


def _visible_if_cuda(device: str) -> list[str] | None:
    if (device or "").lower() not in ("cuda", "gpu"):
        return None
    from .gpus import visible_gpu_ids
    return visible_gpu_ids()
