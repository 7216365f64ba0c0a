"""Batch validation of many entries: planning, resume, shards, and the local (process-pool) runner.

Resume is the default: an entry whose ``status.json`` records this gpuvalid version and the same
input hash is skipped (done or failed); ``retry_failed`` re-runs recorded failures only; ``force``
re-runs everything.  Entries are split into shards ``i/N`` by position in the id-sorted manifest
(``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` give the shard when none is given).

The local runner overlaps input and compute: ``prefetch`` worker processes read, hash and inflate
maps ahead (at most ``workers + prefetch`` maps in flight), while ``workers`` compute processes
(or the calling process when ``workers == 1``) validate them; the calling process alone writes the
SQLite index and drives the progress display.

Hygiene: every entry is claimed in the index before it is read (two processes on one folder never
compute the same entry; a killed run's claims are retaken), inflated maps go to a per-run spool
folder removed on exit and, after a crash, by the next run (:mod:`.spool`), and the worker processes
die with their parent (:mod:`.pool`).  One bad entry never stops the others: whatever happens to it
is recorded as its failure.
"""

from __future__ import annotations

import dataclasses
import os
import signal
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import GpuvalidError, InputError, one_line
from .entry import EntryOptions, EntryTask, process_entry
from .ids import layout
from .index import CLAIM_LEASE_S, ResultsIndex
from .manifest import is_invalid
from .pool import Pool, wait_any
from .prefetch import Prefetched, prefetch
from .progress import BatchProgress
from .record import DONE, FAILED, EntryRecord, file_fingerprint, read_record, write_record
from .resolve import archive_root, find_in_mirror, resolve_entry
from .spool import RunSpool

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
    by_other: int = 0                # of the skipped: finished by another process during this run
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


def _order(row: dict):
    if is_invalid(row):
        return 1, 0, row["emdb_id"]
    return 0, int(row["emdb_id"].split("-")[1]), ""


def select_shard(rows: list[dict], shard: tuple[int, int]) -> list[dict]:
    """Every N-th row (from the i-th) of the id-sorted rows; invalid manifest lines sort last."""
    i, n = shard
    return sorted(rows, key=_order)[i::n]


# ---- planning -------------------------------------------------------------------------------
def make_task(row: dict, opts: BatchOptions) -> EntryTask:
    """Where the entry's files are (manifest paths, else the mirror; downloads happen later)."""
    if is_invalid(row):  # a manifest line naming no entry: recorded as a failure under a pseudo-id
        return EntryTask(row["emdb_id"], None, None, str(Path(opts.out_dir) / row["emdb_id"]), row["invalid"])
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
        if m is None and root is None:
            problem = ("no map path in the manifest and no archive mirror given (--archive DIR or "
                       "GPUVALID_ARCHIVE); or use --download")
        elif m is None or not Path(m).is_file():
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
        task.prior_finished = prior.finished if prior is not None else None
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
        except GpuvalidError as exc:
            task.problem = one_line(exc)
            return task, None
        except OSError as exc:  # the cache folder cannot be written, …
            task.problem = f"download failed: {exc.strerror or one_line(exc)}"
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
        """The next task this process may run, or None (nothing left, or only deferred ones for now)."""
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
        if self.index is not None:
            self.index.release(task.emdb_id, self.run_id)


class Heartbeat:
    """Renews this run's claims every ``lease/4`` s from a thread (its own SQLite connection)."""

    def __init__(self, path: Path, run_id: str, lease_s: float = CLAIM_LEASE_S):
        self.path, self.run_id, self.lease_s = path, run_id, lease_s
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="gpuvalid-claims", daemon=True)

    def _run(self) -> None:
        idx = None
        try:
            while not self._stop.wait(self.lease_s / 4):
                try:
                    idx = idx or ResultsIndex(self.path)
                    idx.renew(self.run_id, self.lease_s)
                except Exception:  # a busy or vanished index: try again next time
                    pass
        finally:
            if idx is not None:
                idx.close()

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(10)


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
    """(one device per compute worker, a warning or None): cuda → cuda:0 … cuda:n-1, shared round-robin
    when fewer GPUs are visible; cpu, auto or an explicit cuda:K → the same for every worker."""
    d = (device or "cpu").lower()
    if d in ("cuda", "gpu") and n > 1:
        if visible is not None and 0 < len(visible) < n:
            return ([f"cuda:{i % len(visible)}" for i in range(n)],
                    f"{n} compute workers on {len(visible)} visible GPU(s): they share them round-robin")
        return [f"cuda:{i}" for i in range(n)], None
    return [device] * n, None


def _failed(task: EntryTask, reason: str, opts: BatchOptions) -> EntryRecord:
    rec = EntryRecord(task.emdb_id, FAILED, reason=one_line(reason), version=__version__,
                      map_path=task.map_path, out_dir=task.out_dir, device=opts.device, finished=time.time())
    try:
        write_record(Path(task.out_dir), rec)
    except OSError as exc:
        rec.reason += f" (status.json not written: {exc.strerror or exc})"
    return rec


def _log_traceback(task: EntryTask, text: str) -> None:
    try:
        with open(Path(task.out_dir) / "errors.log", "a") as fh:
            fh.write(f"{task.emdb_id}:\n{text}\n")
    except OSError:
        pass


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
            finish(t, _failed(t, f"input stage failed ({type(exc).__name__}: {one_line(exc)})", opts))

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
                    _log_traceback(t, rest[1])
                    finish(t, _failed(t, f"internal error ({rest[0]})", opts))
                else:
                    finish(t, _failed(t, rest[0], opts))

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
                    rec = _failed(t, f"internal error ({type(exc).__name__}: {one_line(exc)})", opts)
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


def warn(message: str) -> None:
    """A one-line warning on stderr."""
    from rich.console import Console
    from rich.markup import escape
    Console(stderr=True).print(f"[yellow]gpuvalid: warning:[/] {escape(one_line(message))}", highlight=False,
                               soft_wrap=True)


# ---- driver ---------------------------------------------------------------------------------
class Terminated(BaseException):
    """SIGTERM (SLURM time limit, scancel): ends the run through its clean-up code."""


def _on_sigterm(signum, frame):
    raise Terminated()


def prepare_out(out: Path) -> None:
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"the output folder {out} is not writable")


def run_batch(rows: list[dict], opts: BatchOptions) -> BatchResult:
    """Validate the manifest ``rows`` of this shard into ``opts.out_dir`` (resumable)."""
    t0 = time.perf_counter()
    out = Path(opts.out_dir)
    root = archive_root(opts.archive)
    if root is not None and not root.is_dir():
        raise InputError(f"archive mirror {root} is not a folder")
    prepare_out(out)
    rows = select_shard(rows, opts.shard)
    index_path = Path(opts.index_path or out / INDEX_NAME)
    index = ResultsIndex(index_path)
    run_id = f"{os.getpid()}-{uuid.uuid4().hex[:12]}"
    res = BatchResult()
    old_term = None
    if threading.current_thread() is threading.main_thread():
        old_term = signal.signal(signal.SIGTERM, _on_sigterm)
    spool = RunSpool(opts.spool_dir)
    try:
        spool.open()
        index.drop_dead_claims()
        ropts = dataclasses.replace(opts, spool_dir=str(spool.path))
        todo, skipped = plan(rows, ropts, index)
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

        disp = Dispatcher(todo, index, run_id, on_skip)
        with prog, Heartbeat(index_path, run_id):
            if opts.dask or opts.scheduler:
                from .dask_runner import run_dask
                run_dask(disp, ropts, on_start, on_done, on_skip)
            else:
                run_local(disp, ropts, on_start, on_done, on_skip)
        res.by_other = disp.by_other
    finally:
        spool.close()
        try:
            index.release_run(run_id)
        except Exception:
            pass
        index.close()
        if old_term is not None:
            signal.signal(signal.SIGTERM, old_term)
    res.seconds = time.perf_counter() - t0
    return res
