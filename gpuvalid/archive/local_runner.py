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


def run_local(tasks, opts: BatchOptions, on_start, on_done, on_skip) -> None:
    """Run ``tasks`` (a list or a :class:`Dispatcher`) with prefetch and compute worker processes."""
    disp = tasks if isinstance(tasks, Dispatcher) else Dispatcher(tasks, None, "", on_skip)
    n_pre, n_comp = max(0, opts.prefetch), max(1, opts.workers)
    eopts = opts.entry_options()
    pre = comp = None
    ready: deque = deque()
    started: set = set()
    depth = n_comp + n_pre

    def start(t):
        if t.emdb_id not in started:
            started.add(t.emdb_id)
            on_start(t)

    def finish(t, rec):
        start(t)
        on_done(rec)
        disp.release(t)

    def take_ready(task, pf):
        if pf is not None and pf.unchanged:
            try:
                rec = unchanged_record(task, pf)
            except OSError:  # status.json cannot be refreshed
                rec = None
            if rec is not None:
                on_skip(rec)
                disp.release(task)
                return
            task.known_sha256, pf = None, None  # validate it again (process_entry reads the map)
        ready.append((task, pf))

    def stage_inline(t):
        try:
            take_ready(*stage_input(t, opts))
        except Exception as exc:  # never stop the batch for one entry
            finish(t, failed_record(t, f"input stage failed ({type(exc).__name__}: {one_line(exc)})", opts))

    def fill():  # at most workers + prefetch maps read ahead or being computed
        while len(ready) + (pre.busy if pre else 0) + (comp.busy if comp else 0) < depth:
            if pre is not None and pre.idle() is None:
                return
            t = disp.take()
            if t is None:
                return
            if t.problem:
                ready.append((t, None))
            elif pre is not None:
                pre.idle().submit(t, stage_input, t, opts)
            elif opts.download:
                stage_inline(t)
            else:
                ready.append((t, None))  # process_entry reads it

    def handle(handles):
        for pool in (pre, comp):
            if pool is None:
                continue
            for tag, kind, *rest in pool.collect(handles):
                if pool is pre:
                    t = tag
                    if kind == "ok":
                        take_ready(*rest[0])
                        continue
                    pf = None
                else:
                    t, pf = tag
                    if kind == "ok":
                        finish(t, rest[0])
                        continue
                if pf is not None:
                    pf.cleanup()
                if kind == "error":
                    log_traceback(t, rest[1])
                    finish(t, failed_record(t, f"internal error ({rest[0]})", opts))
                else:
                    finish(t, failed_record(t, rest[0], opts))

    try:
        if n_pre:
            pre = Pool(n_pre, "prefetch")
        if n_comp > 1:
            devs, warning = worker_devices(opts.device, n_comp, _visible_if_cuda(opts.device))
            if warning:
                warn(warning)
            comp = Pool(n_comp, "compute", init=_init_worker, init_args=[(d,) for d in devs])
        while True:
            fill()
            if comp is None and ready:  # compute in this process
                handle(wait_any([pre], 0))
                fill()
                t, pf = ready.popleft()
                start(t)
                try:
                    rec = process_entry(t, eopts, pf)
                except Exception as exc:  # process_entry records its own failures; this is a last resort
                    rec = failed_record(t, f"internal error ({type(exc).__name__}: {one_line(exc)})", opts)
                finish(t, rec)
                continue
            while comp is not None and ready and comp.idle() is not None:
                t, pf = ready.popleft()
                start(t)
                comp.idle().submit((t, pf), _compute, t, eopts, pf)
            inflight = (pre.busy if pre else 0) + (comp.busy if comp else 0)
            if not inflight:
                if not ready and not disp:
                    break
                if not ready:  # only entries claimed by another live process are left: wait for them
                    time.sleep(min(0.5, disp.retry_s))
                continue
            handle(wait_any([pre, comp], 1.0))
    finally:
        for p in (pre, comp):
            if p is not None:
                p.close()
        for _, pf in ready:
            if pf is not None:
                pf.cleanup()


def _visible_if_cuda(device: str) -> list[str] | None:
    if (device or "").lower() not in ("cuda", "gpu"):
        return None
    from .gpus import visible_gpu_ids
    return visible_gpu_ids()
