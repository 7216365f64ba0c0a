"""What every batch runner shares: the batch options, the claiming dispatcher, the input stage, failure records.

The runners are the local process pools of :mod:`.local_runner` and Dask in :mod:`.dask_runner`.

The runners and the driver (:mod:`.batch`) import this module; it imports neither of them.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import GpuvalidError, one_line
from .entry import EntryOptions, EntryTask
from .index import ResultsIndex
from .prefetch import Prefetched, prefetch
from .record import FAILED, EntryRecord, read_record, write_record
from .resolve import resolve_entry


@dataclass
class BatchOptions:
    """How a batch runs: where results go, on which device, with how many processes, from where."""

    out_dir: Path
    device: str = "cpu"
    workers: int = 1                 # compute processes (one per GPU)
    prefetch: int = 2                # read/inflate processes (0: inline, no overlap)
    figures: bool = False            # off by default in batch runs, for throughput
    save_maps: bool = False
    spool_dir: str | None = None
    archive: str | None = None
    download: bool = False
    base_url: str | None = None
    cache_dir: str | None = None
    retry_failed: bool = False
    force: bool = False
    index_path: Path | None = None
    progress: bool = True
    dask: bool = False
    scheduler: str | None = None     # address of an existing Dask scheduler
    shard: tuple[int, int] = (0, 1)

    def entry_options(self) -> EntryOptions:
        """Return the per-entry options of this batch (device, figures, saved maps, spool folder)."""
        return EntryOptions(device=self.device, figures=self.figures, save_maps=self.save_maps,
                            spool_dir=self.spool_dir)


# ---- the input stage (prefetch processes) ------------------------------------------------------
def stage_input(task: EntryTask, opts: BatchOptions) -> tuple[EntryTask, Prefetched | None]:
    """Resolve (download) when needed, then read, hash and inflate the map."""
    if task.problem:
        return task, None
    if opts.download and (task.map_path is None or task.header_path is None):
        try:
            m, h = resolve_entry(task.emdb_id, archive=opts.archive, download=True,
                                 base_url=opts.base_url, cache_dir=opts.cache_dir)
            task.map_path, task.header_path = str(m), str(h) if h else None
            if h is None:
                task.problem = f"EMDB header missing on the server for {task.emdb_id}"
                return task, None
        except GpuvalidError as exc:
            task.problem = one_line(exc)
            return task, None
        except OSError as exc:  # the cache folder cannot be written, …
            task.problem = f"download failed: {exc.strerror or one_line(exc)}"
            return task, None
    return task, prefetch(task.emdb_id, task.map_path, opts.spool_dir, task.known_sha256)


def unchanged_record(task: EntryTask, pf: Prefetched) -> EntryRecord | None:
    """Return the earlier record, refreshed with the file's new mtime, when the bytes did not change.

    The refreshed record is written back to ``status.json``; None when there is no earlier record.
    """
    prior = read_record(Path(task.out_dir))
    if prior is None:
        return None
    prior.input_bytes, prior.input_mtime_ns = pf.input_bytes, pf.input_mtime_ns
    write_record(Path(task.out_dir), prior)
    return prior


# ---- claims: which process computes which entry ---------------------------------------------------
class Dispatcher:
    """Hands out this run's tasks one at a time, each claimed in the index first.

    A task claimed by another live process is deferred and retried every ``retry_s`` seconds once
    nothing else is left, until that process has finished it (then it is skipped as done) or has
    died (then it is taken over).  A task whose ``status.json`` changed since planning was finished
    by another process in the meantime and is skipped.
    """

    def __init__(self, tasks, index: ResultsIndex | None, run_id: str, on_skip, retry_s: float = 1.0):
        self.pending = deque(tasks)
        self.deferred: list = []
        self.index, self.run_id, self.on_skip, self.retry_s = index, run_id, on_skip, retry_s
        self._next_retry = 0.0
        self.by_other = 0

    def __bool__(self) -> bool:
        return bool(self.pending or self.deferred)

    def take(self) -> EntryTask | None:
        """Return the next task this process may run, or None (nothing left, or only deferred ones for now)."""
        while True:
            if not self.pending:
                if not self.deferred or time.monotonic() < self._next_retry:
                    return None
                self.pending.extend(self.deferred)
                self.deferred.clear()
                self._next_retry = time.monotonic() + self.retry_s
            t = self.pending.popleft()
            if self.index is None:
                return t
            if self.index.claim(t.emdb_id, self.run_id) is not None:
                self.deferred.append(t)
                if not self.pending:
                    self._next_retry = time.monotonic() + self.retry_s
                continue
            rec = read_record(Path(t.out_dir))
            if rec is not None and rec.finished != t.prior_finished:
                self.release(t)
                self.by_other += 1
                self.on_skip(rec)
                continue
            return t

    def release(self, task: EntryTask) -> None:
        """Drop this run's claim on ``task`` in the index (nothing to do without an index)."""
        if self.index is not None:
            self.index.release(task.emdb_id, self.run_id)


# ---- failures -------------------------------------------------------------------------------------
def failed_record(task: EntryTask, reason: str, opts: BatchOptions) -> EntryRecord:
    """Return the failure record of ``task`` (written to its ``status.json`` when the folder allows)."""
    rec = EntryRecord(task.emdb_id, FAILED, reason=one_line(reason), version=__version__,
                      map_path=task.map_path, out_dir=task.out_dir, device=opts.device, finished=time.time())
    try:
        write_record(Path(task.out_dir), rec)
    except OSError as exc:
        rec.reason += f" (status.json not written: {exc.strerror or exc})"
    return rec


def log_traceback(task: EntryTask, text: str) -> None:
    """Append a worker's traceback to the entry's ``errors.log`` (never raises)."""
    try:
        with open(Path(task.out_dir) / "errors.log", "a") as fh:
            fh.write(f"{task.emdb_id}:\n{text}\n")
    except OSError:
        pass


def warn(message: str) -> None:
    """Print a one-line warning on stderr."""
    from rich.console import Console
    from rich.markup import escape
    Console(stderr=True).print(f"[yellow]gpuvalid: warning:[/] {escape(one_line(message))}", highlight=False,
                               soft_wrap=True)
