"""The local batch runner's bookkeeping on its own (style lesson 6): fake pools stand in for the worker
processes, so each transition is checked without starting any process.  Every task must end in exactly one
callback, on_start must come once before on_done, and one failure fails only its entry."""

from pathlib import Path

import pytest

from gpuvalid.archive import local_runner
from gpuvalid.archive.entry import EntryTask
from gpuvalid.archive.local_runner import LocalRunner
from gpuvalid.archive.prefetch import Prefetched
from gpuvalid.archive.record import FAILED, EntryRecord, read_record
from gpuvalid.archive.stages import BatchOptions


class FakeWorker:
    def __init__(self, pool):
        self.pool, self.tag = pool, None

    def submit(self, tag, fn, *args):
        self.tag = tag
        self.pool.submitted.append((tag, fn.__name__))


class FakePool:
    """``n`` workers; ``outcomes`` is what :meth:`collect` returns next (and frees those workers)."""

    def __init__(self, n):
        self.workers = [FakeWorker(self) for _ in range(n)]
        self.submitted, self.outcomes, self.closed = [], [], False

    def idle(self):
        return next((w for w in self.workers if w.tag is None), None)

    @property
    def busy(self):
        return sum(w.tag is not None for w in self.workers)

    def collect(self, handles):
        out, self.outcomes = self.outcomes, []
        for tag, *_ in out:
            for w in self.workers:
                if w.tag is tag:
                    w.tag = None
        return out

    def close(self):
        self.closed = True


class Calls:
    def __init__(self):
        self.log = []

    def start(self, t):
        self.log.append(("start", t.emdb_id))

    def done(self, rec):
        self.log.append(("done", rec.emdb_id, rec.status, rec.reason))

    def skip(self, rec):
        self.log.append(("skip", rec.emdb_id))


def _tasks(tmp_path, n, **kw):
    return [EntryTask(f"EMD-{i}", f"/m/{i}.map", None, str(tmp_path / f"EMD-{i}"), **kw) for i in range(1, n + 1)]


def _runner(tmp_path, tasks, workers=2, prefetch=1):
    calls = Calls()
    opts = BatchOptions(out_dir=tmp_path, workers=workers, prefetch=prefetch, progress=False)
    r = LocalRunner(tasks, opts, calls.start, calls.done, calls.skip)
    r.pre = FakePool(prefetch) if prefetch else None
    r.comp = FakePool(workers) if workers > 1 else None
    return r, calls


def test_fill_keeps_workers_plus_prefetch_in_flight(tmp_path):
    r, _ = _runner(tmp_path, _tasks(tmp_path, 6), workers=2, prefetch=1)
    r.fill()
    assert [t.emdb_id for t, _ in r.pre.submitted] == ["EMD-1"]        # one prefetch worker, busy now
    r.handle([])                                                        # nothing finished yet
    r.pre.outcomes = [(r.pre.workers[0].tag, "ok", (r.pre.workers[0].tag, None))]
    r.handle([])
    assert [t.emdb_id for t, _ in r.ready] == ["EMD-1"]
    r.fill()
    r.submit_ready()
    assert [t.emdb_id for (t, _), _ in r.comp.submitted] == ["EMD-1"]
    assert len(r.ready) + r.in_flight() <= r.depth == 3


def test_a_worker_error_fails_only_its_entry_and_logs_the_traceback(tmp_path):
    tasks = _tasks(tmp_path, 2)
    for t in tasks:
        Path(t.out_dir).mkdir()
    r, calls = _runner(tmp_path, tasks, workers=2, prefetch=0)
    spool = tmp_path / "spool.map"
    spool.write_bytes(b"x")
    pf = Prefetched("EMD-1", "/m/1.map", data_path=str(spool), spooled=True)
    r.ready.extend([(tasks[0], pf), (tasks[1], None)])
    r.submit_ready()
    (tag1, _), (tag2, _) = r.comp.submitted
    ok = EntryRecord("EMD-2", "done")
    r.comp.outcomes = [(tag1, "error", "ZeroDivisionError: boom", "Traceback ...\nZeroDivisionError: boom"),
                       (tag2, "ok", ok)]
    r.handle([])
    assert calls.log == [("start", "EMD-1"), ("start", "EMD-2"),
                         ("done", "EMD-1", FAILED, "internal error (ZeroDivisionError: boom)"),
                         ("done", "EMD-2", "done", None)]
    assert not spool.exists()                                            # the spool copy is deleted
    assert "ZeroDivisionError: boom" in (Path(tasks[0].out_dir) / "errors.log").read_text()
    assert read_record(Path(tasks[0].out_dir)).status == FAILED


def test_a_dead_prefetch_worker_fails_its_entry_with_the_reason(tmp_path):
    tasks = _tasks(tmp_path, 1)
    Path(tasks[0].out_dir).mkdir()
    r, calls = _runner(tmp_path, tasks, workers=2, prefetch=1)
    r.fill()
    r.pre.outcomes = [(tasks[0], "died", "prefetch worker process died (killed by signal 9; killed or out of memory)")]
    r.handle([])
    assert calls.log == [("start", "EMD-1"),
                         ("done", "EMD-1", FAILED, "prefetch worker process died (killed by signal 9; killed or "
                                                   "out of memory)")]
    assert not r.ready and r.in_flight() == 0


def test_an_unchanged_map_is_skipped_and_a_failed_refresh_validates_again(tmp_path, monkeypatch):
    tasks = _tasks(tmp_path, 2, known_sha256="abc")
    r, calls = _runner(tmp_path, tasks, workers=1, prefetch=1)
    prior = EntryRecord("EMD-1", "done")
    outcomes = {"EMD-1": prior, "EMD-2": OSError("read-only")}

    def unchanged(task, pf):
        v = outcomes[task.emdb_id]
        if isinstance(v, Exception):
            raise v
        return v

    monkeypatch.setattr(local_runner, "unchanged_record", unchanged)
    for t in tasks:
        r.take_ready(t, Prefetched(t.emdb_id, t.map_path, unchanged=True))
    assert calls.log == [("skip", "EMD-1")]
    (t2, pf2), = r.ready                                                 # EMD-2 is validated again
    assert t2.emdb_id == "EMD-2" and pf2 is None and t2.known_sha256 is None


def test_an_inline_input_stage_failure_fails_only_its_entry(tmp_path, monkeypatch):
    tasks = _tasks(tmp_path, 2)
    for t in tasks:
        Path(t.out_dir).mkdir()
    r, calls = _runner(tmp_path, tasks, workers=1, prefetch=0)
    r.opts.download = True

    def stage(t, opts):
        if t.emdb_id == "EMD-1":
            raise ConnectionError("mirror down")
        return t, None

    monkeypatch.setattr(local_runner, "stage_input", stage)
    r.fill()
    assert calls.log == [("start", "EMD-1"),
                         ("done", "EMD-1", FAILED, "input stage failed (ConnectionError: mirror down)")]
    assert [t.emdb_id for t, _ in r.ready] == ["EMD-2"]


@pytest.mark.parametrize("workers", [1, 2])
def test_run_ends_every_task_in_one_callback(tmp_path, monkeypatch, workers):
    """The whole loop with the pools faked and process_entry replaced: each task is started once and done once,
    a known problem included, and the pools are closed."""
    tasks = _tasks(tmp_path, 5)
    tasks[2].problem = "no map file"
    calls = Calls()
    opts = BatchOptions(out_dir=tmp_path, workers=workers, prefetch=1, progress=False)
    r = LocalRunner(tasks, opts, calls.start, calls.done, calls.skip)
    pools = {}

    def fake_open():
        r.pre = pools["pre"] = FakePool(1)
        r.comp = pools["comp"] = FakePool(workers) if workers > 1 else None

    def fake_wait(pool_list, timeout):     # every busy worker finishes at once
        for pool in pool_list:
            if pool is None:
                continue
            for w in pool.workers:
                if w.tag is not None:
                    tag = w.tag
                    task = tag[0] if isinstance(tag, tuple) else tag
                    result = (task, None) if pool is pools["pre"] else EntryRecord(task.emdb_id, "done")
                    pool.outcomes.append((tag, "ok", result))
        return []

    monkeypatch.setattr(r, "open_pools", fake_open)
    monkeypatch.setattr(local_runner, "wait_any", fake_wait)
    monkeypatch.setattr(local_runner, "process_entry",
                        lambda t, eopts, pf: EntryRecord(t.emdb_id, FAILED if t.problem else "done", reason=t.problem))
    r.run()
    done = [c for c in calls.log if c[0] == "done"]
    started = [c for c in calls.log if c[0] == "start"]
    assert sorted(c[1] for c in done) == sorted(t.emdb_id for t in tasks)
    assert sorted(c[1] for c in started) == sorted(t.emdb_id for t in tasks)
    for t in tasks:
        assert calls.log.index(("start", t.emdb_id)) < next(i for i, c in enumerate(calls.log)
                                                            if c[0] == "done" and c[1] == t.emdb_id)
    assert pools["pre"].closed and (workers == 1 or pools["comp"].closed)
