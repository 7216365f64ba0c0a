"""Batch validation of many entries: planning, resume, shards, and the local (process-pool) runner.

Resume is the default: an entry whose ``status.json`` records this gpuvalid version and the same
input hash is skipped (done or failed); ``retry_failed`` re-runs recorded failures only; ``force``
re-runs everything.  Entries are split into shards ``i/N`` by position in the id-sorted manifest
(``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` give the shard when none is given).

The local runner overlaps input and compute: a pool of prefetch processes reads, hashes and inflates
maps ahead (bounded to ``workers + prefetch`` maps in flight), while ``workers`` compute processes
(or the calling process when ``workers == 1``) validate them; the calling process alone writes the
SQLite index and drives the progress display.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import time
from collections import deque
from concurrent.futures import FIRST_COMPLETED, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import InputError
from .entry import EntryOptions, EntryTask, process_entry
from .ids import layout
from .index import ResultsIndex
from .prefetch import Prefetched, prefetch
from .progress import BatchProgress
from .record import DONE, FAILED, EntryRecord, file_fingerprint, read_record, write_record
from .resolve import archive_root, find_in_mirror, resolve_entry

INDEX_NAME = "index.sqlite"


@dataclass
class BatchOptions:
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
        return EntryOptions(device=self.device, figures=self.figures, save_maps=self.save_maps,
                            spool_dir=self.spool_dir)


@dataclass
class BatchResult:
    planned: int = 0
    skipped: int = 0
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    records: list = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        return 60.0 * (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


# ---- shards ---------------------------------------------------------------------------------
def parse_shard(text: str | None, env=os.environ) -> tuple[int, int]:
    """'i/N' (0 ≤ i < N) → (i, N); None → the SLURM array task, else (0, 1)."""
    if text is None:
        if env.get("SLURM_ARRAY_TASK_ID") is None:
            return 0, 1
        i = int(env["SLURM_ARRAY_TASK_ID"])
        if env.get("SLURM_ARRAY_TASK_COUNT"):
            n = int(env["SLURM_ARRAY_TASK_COUNT"])
            i -= int(env.get("SLURM_ARRAY_TASK_MIN", 0))
        else:
            n = int(env.get("SLURM_ARRAY_TASK_MAX", i)) + 1
        text = f"{i}/{n}"
    try:
        i_txt, n_txt = str(text).split("/")
        i, n = int(i_txt), int(n_txt)
    except ValueError:
        raise InputError(f"bad shard {text!r}: use i/N, e.g. 0/4") from None
    if n < 1 or not 0 <= i < n:
        raise InputError(f"bad shard {text!r}: need 0 <= i < N")
    return i, n


def select_shard(rows: list[dict], shard: tuple[int, int]) -> list[dict]:
    i, n = shard
    rows = sorted(rows, key=lambda r: int(r["emdb_id"].split("-")[1]))
    return rows[i::n]


# ---- planning -------------------------------------------------------------------------------
def make_task(row: dict, opts: BatchOptions) -> EntryTask:
    """Where the entry's files are (manifest paths, else the mirror; downloads happen later)."""
    lay = layout(row["emdb_id"])
    m = row.get("map_path") or None
    h = row.get("header_path") or None
    root = archive_root(opts.archive)
    if (m is None or h is None) and root is not None and root.is_dir():
        mm, hh = find_in_mirror(root, lay)
        m = m or (str(mm) if mm else None)
        h = h or (str(hh) if hh else None)
    problem = None
    if not opts.download:
        if m is None or not Path(m).is_file():
            problem = f"map file missing ({m or lay.map})"
        elif h is None or not Path(h).is_file():
            problem = f"EMDB header missing ({h or lay.header}): no contour level, resolution or voxel size"
    return EntryTask(lay.emdb_id, m, h, str(Path(opts.out_dir) / lay.emdb_id), problem)


def plan(rows: list[dict], opts: BatchOptions, index: ResultsIndex | None = None
         ) -> tuple[list[EntryTask], list[EntryRecord]]:
    """(tasks to run, records of entries skipped); reconciles the index with the folders."""
    todo, skipped = [], []
    for row in rows:
        task = make_task(row, opts)
        prior = read_record(Path(task.out_dir))
        if prior is not None and index is not None:
            cur = index.get(prior.emdb_id)
            if cur is None or cur.get("finished") != prior.finished:
                index.upsert(prior)  # finished before a crash, or the index was lost
        if opts.force:
            todo.append(task)
            continue
        if prior is None or prior.version != __version__:
            if not opts.retry_failed:
                todo.append(task)
            continue
        if opts.retry_failed:
            (todo if prior.status == FAILED else skipped).append(task if prior.status == FAILED else prior)
            continue
        fp = file_fingerprint(Path(task.map_path)) if task.map_path else None
        if fp is None or fp == (prior.input_bytes, prior.input_mtime_ns) or not prior.input_sha256:
            if fp is None or fp == (prior.input_bytes, prior.input_mtime_ns):
                skipped.append(prior)
            else:
                todo.append(task)
        else:
            task.known_sha256 = prior.input_sha256  # re-hash; skipped when the bytes are unchanged
            todo.append(task)
    return todo, skipped


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
        except InputError as exc:
            task.problem = str(exc)
            return task, None
    return task, prefetch(task.emdb_id, task.map_path, opts.spool_dir, task.known_sha256)


def unchanged_record(task: EntryTask, pf: Prefetched) -> EntryRecord | None:
    """The earlier record, refreshed with the file's new mtime, when the bytes did not change."""
    prior = read_record(Path(task.out_dir))
    if prior is None:
        return None
    prior.input_bytes, prior.input_mtime_ns = pf.input_bytes, pf.input_mtime_ns
    write_record(Path(task.out_dir), prior)
    return prior


# ---- compute worker processes -------------------------------------------------------------------
_DEVICE: str | None = None


def _init_worker(devices) -> None:
    global _DEVICE
    _DEVICE = devices.get()


def _compute(task: EntryTask, eopts: EntryOptions, pf: Prefetched | None) -> EntryRecord:
    if _DEVICE is not None:
        eopts.device = _DEVICE
    return process_entry(task, eopts, pf)


def worker_devices(device: str, n: int) -> list[str]:
    """One device per compute worker: cuda → cuda:0 … cuda:n-1; cpu (or an explicit cuda:K) → the same."""
    d = (device or "cpu").lower()
    if d in ("cuda", "gpu", "auto") and n > 1:
        return [f"cuda:{i}" for i in range(n)] if d != "auto" else ["auto"] * n
    return [device] * n


def _failed(task: EntryTask, reason: str, opts: BatchOptions) -> EntryRecord:
    rec = EntryRecord(task.emdb_id, FAILED, reason=reason, version=__version__, map_path=task.map_path,
                      out_dir=task.out_dir, device=opts.device, finished=time.time())
    write_record(Path(task.out_dir), rec)
    return rec


def run_local(tasks: list[EntryTask], opts: BatchOptions, on_start, on_done, on_skip) -> None:
    ctx = mp.get_context("spawn")  # never fork a process that may hold a CUDA context
    n_pre, n_comp = max(0, opts.prefetch), max(1, opts.workers)
    eopts = opts.entry_options()
    new_pre = (lambda: ProcessPoolExecutor(n_pre, mp_context=ctx)) if n_pre else None
    pre = new_pre() if new_pre else None

    def new_comp():
        q = ctx.Queue()
        for d in worker_devices(opts.device, n_comp):
            q.put(d)
        return ProcessPoolExecutor(n_comp, mp_context=ctx, initializer=_init_worker, initargs=(q,))
    comp = new_comp() if n_comp > 1 else None

    pending = deque(tasks)
    started: set = set()

    def start(t):
        if t.emdb_id not in started:  # a task re-queued after a worker crash is not counted twice
            started.add(t.emdb_id)
            on_start(t)
    staged: dict = {}
    ready: deque = deque()
    computing: dict = {}
    depth = n_comp + n_pre

    def take_ready(task, pf):
        if pf is not None and pf.unchanged:
            rec = unchanged_record(task, pf)
            if rec is not None:
                on_skip(rec)
                return
        ready.append((task, pf))

    try:
        while pending or staged or ready or computing:
            while pending and len(staged) + len(ready) < depth:
                t = pending.popleft()
                if pre is not None and not t.problem:
                    staged[pre.submit(stage_input, t, opts)] = t
                elif opts.download and not t.problem:
                    take_ready(*stage_input(t, opts))
                else:
                    ready.append((t, None))
            if comp is None and ready:  # compute in this process
                t, pf = ready.popleft()
                start(t)
                on_done(process_entry(t, eopts, pf))
                continue
            while comp is not None and ready and len(computing) < n_comp:
                t, pf = ready.popleft()
                start(t)
                computing[comp.submit(_compute, t, eopts, pf)] = (t, pf)
            futs = set(staged) | set(computing)
            if not futs:
                continue
            finished, _ = wait(futs, return_when=FIRST_COMPLETED)
            for f in finished:
                if f in staged:
                    t = staged.pop(f)
                    try:
                        take_ready(*f.result())
                    except BrokenProcessPool:
                        start(t)
                        on_done(_failed(t, "prefetch worker process died (killed or out of memory)", opts))
                        pre.shutdown(cancel_futures=True)
                        for g, tt in list(staged.items()):
                            staged.pop(g)
                            pending.appendleft(tt)
                        pre = new_pre()
                else:
                    t, pf = computing.pop(f)
                    try:
                        on_done(f.result())
                    except BrokenProcessPool:
                        if pf is not None:
                            pf.cleanup()
                        on_done(_failed(t, "compute worker process died (killed or out of memory)", opts))
                        for g, (tt, ppf) in list(computing.items()):  # the others died with the pool
                            computing.pop(g)
                            ready.appendleft((tt, ppf))
                        comp.shutdown(cancel_futures=True)
                        comp = new_comp()
    finally:
        if pre is not None:
            pre.shutdown(cancel_futures=True)
        if comp is not None:
            comp.shutdown(cancel_futures=True)


# ---- driver ---------------------------------------------------------------------------------
def run_batch(rows: list[dict], opts: BatchOptions) -> BatchResult:
    """Validate the manifest ``rows`` of this shard into ``opts.out_dir`` (resumable)."""
    t0 = time.perf_counter()
    out = Path(opts.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows = select_shard(rows, opts.shard)
    index = ResultsIndex(opts.index_path or out / INDEX_NAME)
    res = BatchResult()
    try:
        todo, skipped = plan(rows, opts, index)
        res.planned, res.skipped = len(todo), len(skipped)
        prog = BatchProgress(len(todo), len(skipped), enabled=opts.progress,
                             label=f"shard {opts.shard[0]}/{opts.shard[1]}" if opts.shard[1] > 1 else "batch")

        def on_start(task):
            prog.started(task.emdb_id)

        def on_done(rec: EntryRecord):
            index.upsert(rec)
            res.records.append(rec)
            if rec.status == DONE:
                res.done += 1
            else:
                res.failed += 1
            prog.finished_entry(rec)

        def on_skip(rec: EntryRecord, started: bool = False):
            if started:
                prog.running = max(0, prog.running - 1)
            index.upsert(rec)
            res.skipped += 1
            res.planned -= 1
            prog.total -= 1

        with prog:
            if opts.dask or opts.scheduler:
                from .dask_runner import run_dask
                run_dask(todo, opts, on_start, on_done, on_skip)
            else:
                run_local(todo, opts, on_start, on_done, on_skip)
    finally:
        index.close()
    res.seconds = time.perf_counter() - t0
    return res
