"""Validate one archive entry end to end and record the outcome (the unit every runner executes).

Steps and their timings (seconds, in ``status.json`` and the index): ``read`` (read the stored
file and hash it), ``decompress`` (inflate a ``.gz``), ``load`` (parse the MRC, check it, merge the
header metadata), ``compute`` (all analyses), ``write`` (``report.md`` + ``results.json``).
``read``/``decompress`` normally happen ahead, in a prefetch process (:mod:`.prefetch`).
Any problem ends the entry as ``failed`` with a one-line reason; it never stops the batch.
"""

from __future__ import annotations

import json
import os
import socket
import time
import traceback
from dataclasses import dataclass
from pathlib import Path

from .. import __version__
from ..errors import GpuvalidError
from ..report.files import atomic_write_text, file_mode
from .prefetch import Prefetched, prefetch
from .record import DONE, FAILED, STATUS_FILE, EntryRecord, write_record


@dataclass
class EntryTask:
    """What one entry needs (picklable: sent to worker processes and Dask workers)."""

    emdb_id: str
    map_path: str | None
    header_path: str | None
    out_dir: str
    problem: str | None = None           # known before running (missing header, missing map …)
    known_sha256: str | None = None      # hash recorded by an earlier run (skip when unchanged)
    prior_finished: float | None = None  # ``finished`` of status.json when planned (changed: done elsewhere)


@dataclass
class EntryOptions:
    """How each entry is validated: device, figures, saved maps, and the spool folder of inflated maps."""

    device: str = "cpu"
    figures: bool = False
    save_maps: bool = False
    spool_dir: str | None = None


def worker_name() -> str:
    """Return this process's name, ``host:pid`` (recorded as the entry's worker)."""
    return f"{socket.gethostname()}:{os.getpid()}"


def _one_line(exc: BaseException) -> str:
    return " ".join(str(exc).split())


def process_entry(task: EntryTask, opts: EntryOptions, pf: Prefetched | None = None,
                  worker: str | None = None) -> EntryRecord:
    """Run ``task`` (using ``pf`` when its map was prefetched) and write its ``status.json``.

    A known problem, a failed prefetch or an unloadable map becomes the record's one-line ``reason`` (the entry
    ends as ``failed``); it is not raised to the caller.
    """
    from .. import pipeline  # looked up at call time (tests replace pipeline.validate)
    from ..backend import get_backend
    from ..io import load_map_input

    t_start = time.perf_counter()
    out = Path(task.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    (out / STATUS_FILE).unlink(missing_ok=True)  # an entry interrupted from here on is redone
    rec = EntryRecord(task.emdb_id, FAILED, version=__version__, map_path=task.map_path, out_dir=str(out),
                      device=opts.device, worker=worker or worker_name(), started=time.time())
    seconds: dict = {}
    be = None
    try:
        if task.map_path and Path(task.map_path).is_file():
            st = Path(task.map_path).stat()
            rec.input_bytes, rec.input_mtime_ns = st.st_size, st.st_mtime_ns
        if task.problem:
            raise GpuvalidError(task.problem)
        if pf is None:
            pf = prefetch(task.emdb_id, task.map_path, opts.spool_dir)
        seconds.update(pf.seconds)
        rec.input_sha256, rec.input_bytes, rec.input_mtime_ns = pf.sha256, pf.input_bytes, pf.input_mtime_ns
        if pf.error:
            raise GpuvalidError(pf.error)

        t0 = time.perf_counter()
        try:
            inp = load_map_input(pf.data_path, header=task.header_path, sha256=pf.sha256)
        except GpuvalidError as exc:  # name the archive file, not the spool copy
            raise GpuvalidError(str(exc).replace(Path(pf.data_path).name, Path(task.map_path).name)) from None
        inp.path = Path(task.map_path)  # the report names the archive file, not the spool copy
        seconds["load"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        be = get_backend(opts.device)
        halves = entry_half_maps(task.map_path)
        kw = {"halves": halves} if halves else {}
        report = pipeline.validate(inp, be, out, figures=opts.figures, save_maps=opts.save_maps, **kw)
        seconds["compute"] = time.perf_counter() - t0

        t0 = time.perf_counter()
        _write_report(report, out)
        seconds["write"] = time.perf_counter() - t0
        rec.status, rec.score_passed, rec.score_evaluable = DONE, report.passed, report.evaluable
    except GpuvalidError as exc:
        rec.reason = _one_line(exc)
    except MemoryError:
        rec.reason = "out of memory"
    except Exception as exc:  # a bug or an unforeseen map: record it, keep the batch going
        rec.reason = f"internal error ({type(exc).__name__}: {_one_line(exc)})"
        with open(out / "errors.log", "a") as fh:
            fh.write(f"{task.emdb_id}:\n{traceback.format_exc()}\n")
    finally:
        if pf is not None:
            pf.cleanup()
        if be is not None:
            try:
                be.free_pool()
            except Exception:
                pass
    if rec.status == FAILED:
        (out / "results.json").unlink(missing_ok=True)  # never leave an older run's results beside a failure
    seconds["total"] = time.perf_counter() - t_start
    rec.seconds = {k: round(v, 4) for k, v in seconds.items()}
    rec.finished = time.time()
    write_record(out, rec)
    return rec


def entry_half_maps(map_path: str | None) -> list[str] | None:
    """Return the entry's two half maps in the archive layout (``other/emd_N_half_map_{1,2}.map.gz``), or None.

    They are read (and inflated, bounded by their headers) by Level 1's loader in the compute process, which
    checks them against the primary map; an entry without both halves runs Level 0 only.
    """
    if not map_path:
        return None
    from ..level1 import halves_beside

    found = halves_beside(Path(map_path))
    return [str(p) for p in found] if found else None


def _write_report(report, out: Path) -> None:
    try:
        from ..report import write_report
    except ImportError:  # the report writer is not installed in this tree yet: numbers only
        write_report = None
    if write_report is not None:
        write_report(report, out)
        for name in ("results.json", "report.md"):  # ordinary permissions (a mkstemp file is 0600)
            try:
                os.chmod(out / name, file_mode())
            except OSError:
                pass
        return
    d = {"gpuvalid_version": report.version,
         "input": {"file": report.input.path.name, "sha256": report.input.sha256,
                   "box_zyx": list(report.input.data.shape), "voxel_size_A": report.input.voxel_size,
                   "threshold": report.input.threshold, "resolution_A": report.input.resolution},
         "score": {"passed": report.passed, "evaluable": report.evaluable},
         "sections": {k: s.to_json() for k, s in report.sections.items()}}
    atomic_write_text(out / "results.json", json.dumps(d, indent=1))
