"""Batch validation of many entries: planning, resume, shards, claims, and the driver.

The driver hands the entries to a runner (:mod:`.local_runner`, or :mod:`.dask_runner`; both share
:mod:`.stages`).

Resume is the default: an entry whose ``status.json`` records this gpuvalid version and the same
input hash is skipped (done or failed); ``retry_failed`` re-runs recorded failures only; ``force``
re-runs everything.  Entries are split into shards ``i/N`` by position in the id-sorted manifest
(``SLURM_ARRAY_TASK_ID``/``SLURM_ARRAY_TASK_COUNT`` give the shard when none is given).

The local runner overlaps input and compute: ``prefetch`` worker processes read, hash and inflate
maps ahead (at most ``workers + prefetch`` maps in flight), while ``workers`` compute processes
(or the calling process when ``workers == 1``) validate them; the calling process alone writes the
SQLite index and drives the progress display.  Imports point one way: this module imports the runners,
the runners import :mod:`.stages`, and none of them imports this module.

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
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..errors import InputError
from .entry import EntryTask
from .ids import layout
from .index import CLAIM_LEASE_S, ResultsIndex
from .local_runner import run_local
from .manifest import is_invalid
from .progress import BatchProgress
from .record import DONE, FAILED, EntryRecord, file_fingerprint, read_record
from .resolve import archive_root, find_in_mirror
from .spool import RunSpool
from .stages import BatchOptions, Dispatcher

INDEX_NAME = "index.sqlite"


@dataclass
class BatchResult:
    """Counts of one batch run: entries planned, skipped, done and failed, its wall time (s) and the records."""

    planned: int = 0
    skipped: int = 0
    by_other: int = 0                # of the skipped: finished by another process during this run
    done: int = 0
    failed: int = 0
    seconds: float = 0.0
    records: list = field(default_factory=list)

    @property
    def per_minute(self) -> float:
        """Entries finished (done or failed) per minute of wall time; 0 before any time has passed."""
        return 60.0 * (self.done + self.failed) / self.seconds if self.seconds > 0 else 0.0


# ---- shards ---------------------------------------------------------------------------------
def parse_shard(text: str | None, env=os.environ) -> tuple[int, int]:
    """Parse a shard: 'i/N' (0 ≤ i < N) → (i, N); None → the SLURM array task, else (0, 1).

    Raises
    ------
    InputError
        When the text is not ``i/N`` with integers, or not 0 ≤ i < N.
    """
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


# ---- driver ---------------------------------------------------------------------------------
class Terminated(BaseException):
    """SIGTERM (SLURM time limit, scancel): ends the run through its clean-up code."""


def _on_sigterm(signum, frame):
    raise Terminated()


def prepare_out(out: Path) -> None:
    """Create the output folder ``out`` (with parents) and check that it is writable.

    Raises
    ------
    InputError
        When ``out`` is a file, cannot be created, or is not writable.
    """
    if out.exists() and not out.is_dir():
        raise InputError(f"--out {out} is a file, not a folder")
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise InputError(f"cannot create the output folder {out}: {exc.strerror or exc}") from None
    if not os.access(out, os.W_OK | os.X_OK):
        raise InputError(f"the output folder {out} is not writable")


def run_batch(rows: list[dict], opts: BatchOptions) -> BatchResult:
    """Validate the manifest ``rows`` of this shard into ``opts.out_dir`` (resumable).

    Raises
    ------
    InputError
        When the archive mirror is not a folder, or the output folder is a file, cannot be created or is not
        writable.
    """
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
