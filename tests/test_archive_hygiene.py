"""Archive mode hygiene: one-line errors, spool folders, claims, worker death, Dask clamp, kill -9 + concurrency."""

import fcntl
import json
import os
import random
import signal
import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from gpuvalid.errors import InputError
from gpuvalid.archive import spool as spool_mod
from gpuvalid.archive.batch import BatchOptions, run_batch
from gpuvalid.archive.entry import EntryTask
from gpuvalid.archive.index import ResultsIndex
from gpuvalid.archive.local_runner import worker_devices
from gpuvalid.archive.manifest import read_manifest, scan_archive, write_manifest
from gpuvalid.archive.mirror import add_entry
from gpuvalid.archive.record import EntryRecord, write_record
from gpuvalid.archive.stages import Dispatcher
from gpuvalid.report.files import atomic_write_text
from gpuvalid.cli import app
from gpuvalid.io.mrc import write_mrc

N_ENTRIES = 12


def blob_map(path: Path, seed: int, n: int = 24) -> Path:
    """A Gaussian blob (σ ≈ 3 Å at 1 Å/voxel) plus weak noise: a map every section can process quickly."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n]
    c = n / 2 + rng.uniform(-2, 2, 3)
    v = np.exp(-((z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2) / 20.0)
    return write_mrc(path, (v + 0.02 * rng.standard_normal(v.shape)).astype(np.float32), 1.0)


@pytest.fixture(scope="module")
def small_mirror(tmp_path_factory):
    base = tmp_path_factory.mktemp("small")
    root = base / "mirror"
    for i in range(N_ENTRIES):
        add_entry(root, f"EMD-{7000 + i}", blob_map(base / f"m{i}.mrc", i), box_zyx=(24,) * 3, voxel_size=1.0,
                  contour=0.3, resolution=8.0, compresslevel=1)
    man = write_manifest(scan_archive(root), base / "manifest.tsv")
    return root, man


def one_line_error(result) -> str:
    err = result.stderr if result.stderr is not None else result.output
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert result.exit_code != 0, result.output
    assert len(lines) == 1 and lines[0].startswith("gpuvalid: error: "), err
    assert "Traceback" not in result.output
    return lines[0]


# ---- one-line errors ------------------------------------------------------------------------------
def test_batch_summary_manifest_errors_are_one_line(tmp_path):
    run = CliRunner().invoke
    long_ids = tmp_path / "long.txt"
    long_ids.write_text("EMD-" + "1" * 5000 + "\n")
    abc = tmp_path / "abc.txt"
    abc.write_text("EMD-abc\n")
    markup = tmp_path / "markup.txt"
    markup.write_text("EMD-[/]x\n")
    a_file = tmp_path / "a_file"
    a_file.write_text("x")
    corrupt = tmp_path / "corrupt.sqlite"
    corrupt.write_bytes(b"this is not a database" * 10)
    folder = tmp_path / "folder"
    folder.mkdir()

    assert "is not an EMDB id" in one_line_error(run(app, ["batch", str(long_ids), "--out", str(tmp_path / "o1")]))
    msg = one_line_error(run(app, ["batch", str(abc), "--out", str(tmp_path / "o2")]))
    assert "names no valid EMDB entry" in msg and "'EMD-abc'" in msg
    assert not (tmp_path / "o2").exists()  # not read as a header row giving an empty batch
    assert "'EMD-[/]x'" in one_line_error(run(app, ["batch", str(markup), "--out", str(tmp_path / "o3")]))
    ok = tmp_path / "ok.txt"
    ok.write_text("EMD-1234\n")
    assert "is a file, not a folder" in one_line_error(run(app, ["batch", str(ok), "--out", str(a_file), "-q"]))
    assert "is a folder" in one_line_error(run(app, ["batch", str(ok), "--out", str(tmp_path / "o4"),
                                                     "--index", str(folder), "-q"]))
    assert "not a usable SQLite database" in one_line_error(
        run(app, ["batch", str(ok), "--out", str(tmp_path / "o5"), "--index", str(corrupt), "-q"]))

    out = tmp_path / "o6"  # summary on a folder whose index is corrupt; --rebuild-index replaces it
    write_record(out / "EMD-1234", EntryRecord("EMD-1234", "failed", reason="test", version="x"))
    (out / "index.sqlite").write_bytes(corrupt.read_bytes())
    assert "--rebuild-index" in one_line_error(run(app, ["summary", str(out)]))
    r = run(app, ["summary", str(out), "--rebuild-index"])
    assert r.exit_code == 0 and "1 entries: 0 done, 1 failed" in r.output, r.output
    assert len(list(out.glob("index.sqlite.corrupt-*"))) == 1

    assert "not a folder" in one_line_error(run(app, ["manifest", "--archive", str(a_file)]))
    assert "is a folder" in one_line_error(run(app, ["manifest", "--archive", str(folder), "-o", str(folder)]))


def test_bad_lines_are_failed_entries(small_mirror, tmp_path):
    """Invalid UTF-8, a non-id and a 5,000-digit id beside valid ids: the bad lines are failed entries."""
    root, _ = small_mirror
    ids = tmp_path / "ids.txt"
    ids.write_bytes(b"EMD-7000\n\xff\xfe bad bytes\nEMD-abc\nEMD-" + b"9" * 5000 + b"\n7001\n")
    rows = read_manifest(ids)
    assert [r["emdb_id"] for r in rows if not r.get("invalid")] == ["EMD-7000", "EMD-7001"]
    bad = [r["invalid"] for r in rows if r.get("invalid")]
    assert len(bad) == 3 and "line 2: not UTF-8" in bad[0] and "'EMD-abc' is not an EMDB id" in bad[1]
    out = tmp_path / "out"
    r = CliRunner().invoke(app, ["batch", str(ids), "--out", str(out), "--archive", str(root), "--prefetch", "0",
                                 "--device", "cpu", "-q", "--spool", str(tmp_path / "spool")])
    assert r.exit_code == 0, r.output
    assert "2 done, 3 failed" in r.output
    st = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/status.json")}
    failed = sorted(v["reason"] for v in st.values() if v["status"] == "failed")
    assert len(failed) == 3 and all(k.startswith(("EMD-", "invalid-")) for k in st)
    r = CliRunner().invoke(app, ["batch", str(ids), "--out", str(out), "--archive", str(root), "-q",
                                 "--spool", str(tmp_path / "spool")])
    assert "0 done, 0 failed, 5 skipped" in r.output, r.output  # resumable like any failure


# ---- spool, claims, modes, device clamps ------------------------------------------------------------
def test_spool_folders_cleaned_on_start_and_exit(tmp_path):
    base = tmp_path / "spool"
    dead = base / f"{spool_mod.RUN_PREFIX}1-dead"
    dead.mkdir(parents=True)
    (dead / spool_mod.LOCK_NAME).touch()
    (dead / "EMD-1-x.mrc").write_bytes(b"0" * 100)
    live = base / f"{spool_mod.RUN_PREFIX}2-live"
    live.mkdir()
    fd = os.open(live / spool_mod.LOCK_NAME, os.O_RDWR | os.O_CREAT)
    fcntl.flock(fd, fcntl.LOCK_EX)  # a run that is still going
    try:
        with spool_mod.RunSpool(base) as sp:
            assert not dead.exists() and live.is_dir() and sp.path.is_dir()
            assert sp.path.name.startswith(spool_mod.RUN_PREFIX + str(os.getpid()))
            mine = sp.path
            (mine / "EMD-2-y.mrc").write_bytes(b"1")
        assert not mine.exists() and live.is_dir()
    finally:
        os.close(fd)
    spool_mod.clean_stale(base)
    assert list(base.iterdir()) == []


def test_claims_between_runs(tmp_path):
    idx = ResultsIndex(tmp_path / "index.sqlite")
    other = ResultsIndex(tmp_path / "index.sqlite")
    assert idx.claim("EMD-0001", "runA") is None
    assert idx.claim("EMD-0001", "runA") is None  # its own claim
    holder = other.claim("EMD-0001", "runB")
    assert holder is not None and holder["run_id"] == "runA" and holder["pid"] == os.getpid()
    idx.release("EMD-0001", "runA")
    assert other.claim("EMD-0001", "runB") is None

    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    with idx.db:  # a claim of a process that no longer exists (a killed run) is taken over
        idx.db.execute("UPDATE claims SET run_id = 'dead', pid = ? WHERE emdb_id = 'EMD-0001'", (gone.pid,))
    assert idx.claim("EMD-0001", "runC") is None
    with idx.db:  # another host's claim: taken over only once its lease has expired
        idx.db.execute("UPDATE claims SET run_id = 'far', host = 'elsewhere', expires = ?", (time.time() + 60,))
    assert idx.claim("EMD-0001", "runC") is not None
    with idx.db:
        idx.db.execute("UPDATE claims SET expires = ?", (time.time() - 1,))
    assert idx.claim("EMD-0001", "runC") is None
    idx.renew("runC", 100.0)
    assert idx.claims()[0]["expires"] > time.time() + 90
    idx.release_run("runC")
    assert idx.claims() == []
    idx.close()
    other.close()


def test_dispatcher_defers_claimed_and_skips_finished(tmp_path):
    idx = ResultsIndex(tmp_path / "index.sqlite")
    tasks = [EntryTask(f"EMD-000{i}", None, None, str(tmp_path / f"EMD-000{i}")) for i in (1, 2, 3)]
    assert idx.claim("EMD-0002", "other") is None  # held by another live run (this pid)
    skipped = []
    d = Dispatcher(tasks, idx, "me", lambda rec: skipped.append(rec.emdb_id), retry_s=0.05)
    assert d.take().emdb_id == "EMD-0001"
    assert d.take().emdb_id == "EMD-0003" and d.take() is None and bool(d)
    write_record(tmp_path / "EMD-0002", EntryRecord("EMD-0002", "done", version="x", finished=time.time()))
    idx.release("EMD-0002", "other")  # the other run finished it
    time.sleep(0.06)
    assert d.take() is None and not d and skipped == ["EMD-0002"] and d.by_other == 1
    idx.close()


def test_written_files_have_ordinary_permissions(tmp_path):
    old = os.umask(0o022)
    try:
        atomic_write_text(tmp_path / "a.json", "{}")
        assert stat.S_IMODE((tmp_path / "a.json").stat().st_mode) == 0o644
    finally:
        os.umask(old)


def test_compute_workers_share_fewer_gpus():
    assert worker_devices("cuda", 3, ["0"]) == (["cuda:0"] * 3, worker_devices("cuda", 3, ["0"])[1])
    assert "1 visible GPU" in worker_devices("cuda", 3, ["0"])[1]
    assert worker_devices("cuda", 2, ["0", "1"]) == (["cuda:0", "cuda:1"], None)
    assert worker_devices("cuda", 2, None) == (["cuda:0", "cuda:1"], None)
    assert worker_devices("cpu", 2, []) == (["cpu", "cpu"], None)


def test_dask_cuda_cluster_clamped_to_visible_gpus(monkeypatch):
    """dask-cuda refuses more workers than visible GPUs; the runner asks for at most that many."""
    from gpuvalid.archive import dask_runner
    from gpuvalid.archive.dask_runner import cuda_cluster_plan

    assert cuda_cluster_plan("cuda", 2, ["0"])[:2] == (1, ["0"])
    assert "only 1 GPU(s) visible" in cuda_cluster_plan("cuda", 2, ["0"])[2]
    assert cuda_cluster_plan("cuda", 2, ["3", "5", "7"]) == (2, ["3", "5"], None)
    assert cuda_cluster_plan("cuda:1", 1, ["3", "5"]) == (1, ["5"], None)
    n, ids, note = cuda_cluster_plan("cuda:0", 2, ["0"])  # bench/bench_archive.py --device cuda:0
    assert (n, ids) == (1, ["0"]) and "one Dask worker" in note
    assert cuda_cluster_plan("cuda", 4, None) == (4, None, None)  # unknown count: nothing to clamp
    for dev, vis in (("cuda", []), ("cuda:2", ["0", "1"])):
        with pytest.raises(InputError):
            cuda_cluster_plan(dev, 1, vis)

    made = {}

    class FakeLocalCUDACluster:  # what dask-cuda checks before starting workers
        def __init__(self, n_workers, CUDA_VISIBLE_DEVICES=None, **kw):
            visible = CUDA_VISIBLE_DEVICES or os.environ.get("CUDA_VISIBLE_DEVICES", "0").split(",")
            if n_workers > len(visible):
                raise ValueError("Can not scale beyond visible devices", visible)
            made.update(n=n_workers, visible=visible)

    class FakeDistributed:
        @staticmethod
        def Client(cluster):
            return cluster

    fake = type(sys)("dask_cuda")
    fake.LocalCUDACluster = FakeLocalCUDACluster
    monkeypatch.setitem(sys.modules, "dask_cuda", fake)
    monkeypatch.setattr(dask_runner, "_import_distributed", lambda: FakeDistributed)
    monkeypatch.setattr(dask_runner, "visible_gpus", lambda: ["0"])
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "0")
    for dev in ("cuda:0", "cuda"):
        made.clear()
        dask_runner.start_client(BatchOptions(out_dir=Path("x"), device=dev, workers=2, dask=True))
        assert made == {"n": 1, "visible": ["0"]}


def test_visible_gpu_ids_from_environment():
    from gpuvalid.archive.gpus import visible_gpu_ids
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": "0,2"}) == ["0", "2"]
    assert visible_gpu_ids({"CUDA_VISIBLE_DEVICES": ""}) == []


# ---- kill -9 at random moments, two processes on one folder -----------------------------------------
WRAPPER = '''
import os, sys, time
import gpuvalid.pipeline as _p
_orig = _p.validate
def _logged(inp, *a, **k):
    with open(os.environ["GV_LOG"], "a") as fh:
        fh.write(f"{inp.path.name} {os.getpid()} {time.time()}\\n")
    time.sleep(float(os.environ.get("GV_SLEEP", "0.3")))
    return _orig(inp, *a, **k)
_p.validate = _logged
if __name__ == "__main__":
    from gpuvalid.cli import app
    sys.argv[0] = "gpuvalid"
    app()
'''


def _children(pid: int) -> set[int]:
    """Every descendant of ``pid`` (from /proc)."""
    parent = {}
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                parent[int(d.name)] = int((d / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                pass
    out, todo = set(), [pid]
    while todo:
        p = todo.pop()
        kids = {c for c, pp in parent.items() if pp == p}
        out |= kids
        todo.extend(kids)
    return out


def _alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def _maps_semaphores(pids) -> list[str]:
    found = []
    for p in pids:
        try:
            found += [ln for ln in (Path("/proc") / str(p) / "maps").read_text().splitlines() if "/sem." in ln]
        except OSError:
            pass
    return found


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="uses /proc")
def test_kill9_and_two_processes_compute_each_entry_once(small_mirror, tmp_path):
    """Process A is killed (SIGKILL at a random moment, then SIGTERM while computing; main process only)
    and restarted while process B runs on the same folder: each entry is computed once (except those A
    was computing when killed, never two at a time), A's workers die with it, and no spool file,
    semaphore, claim or process is left."""
    root, man = small_mirror
    out, spool, log = tmp_path / "out", tmp_path / "spool", tmp_path / "computed.log"
    script = tmp_path / "gv.py"
    script.write_text(WRAPPER)
    env = dict(os.environ, GV_LOG=str(log), PYTHONWARNINGS="ignore")
    base = [sys.executable, str(script), "batch", str(man), "--out", str(out), "--device", "cpu", "--quiet",
            "--spool", str(spool)]
    rng = random.Random(20261126)
    old_umask = os.umask(0o022)
    procs, killed = [], {}
    try:
        # paced so that work is left for the SIGTERM phase whatever the machine's speed: in the SIGKILL phase
        # (≤ 6.3 s) B computes at most 3 entries (3 s each) and A at most 7 (1 s each), fewer than N_ENTRIES
        b = subprocess.Popen(base + ["--prefetch", "1"], env=dict(env, GV_SLEEP="3.0"), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, start_new_session=True)
        procs.append(b)
        sems = []
        for sig in (signal.SIGKILL, signal.SIGTERM):
            a = subprocess.Popen(base + ["--prefetch", "1"], env=dict(env, GV_SLEEP="1.0"), stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True, start_new_session=True)
            procs.append(a)
            t_end = time.monotonic() + rng.uniform(2.0, 6.0)
            kids = set()
            while a.poll() is None and (time.monotonic() < t_end if sig == signal.SIGKILL else
                                        f" {a.pid} " not in (log.read_text() if log.exists() else "")):
                kids |= _children(a.pid)
                sems += _maps_semaphores({a.pid, b.pid} | kids | _children(b.pid))
                time.sleep(0.1)
            time.sleep(rng.uniform(0.0, 0.3))
            kids |= _children(a.pid)
            killed[a.pid] = time.time()
            for k in kids:
                killed.setdefault(k, killed[a.pid])
            a.send_signal(sig)  # the main process only: its workers must follow by themselves
            _, err = a.communicate(timeout=30)
            if sig == signal.SIGTERM:  # SLURM's time limit / scancel: a clean stop
                assert f" {a.pid} " in log.read_text(), "no entry was left for the SIGTERM phase (pacing)"
                assert a.returncode == 143 and err.strip().startswith("gpuvalid: error: terminated (SIGTERM)"), err
                assert len(err.strip().splitlines()) == 1, err
                assert not list(spool.glob(f"*-run-{a.pid}-*")), "spool folder left by a terminated run"
            t0 = time.monotonic()
            while any(_alive(k) for k in kids) and time.monotonic() - t0 < 10:
                time.sleep(0.05)
            assert not [k for k in kids if _alive(k)], "worker processes outlived their killed parent"
        a = subprocess.run(base + ["--workers", "2", "--prefetch", "1"], env=env, capture_output=True, text=True,
                           timeout=240)
        assert a.returncode == 0, a.stderr
        rb_out, rb_err = b.communicate(timeout=240)
        assert b.returncode == 0, rb_err
        assert not sems, sems  # no POSIX named semaphore ever opened by a batch process
    finally:
        os.umask(old_umask)
        for p in procs:
            if p.poll() is None:
                os.killpg(p.pid, signal.SIGKILL)
                p.wait(10)

    st = {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/status.json")}
    assert len(st) == N_ENTRIES and all(v["status"] == "done" for v in st.values()), st
    runs: dict = {}
    for line in log.read_text().splitlines():
        name, pid, t = line.split()
        runs.setdefault(name, []).append((float(t), int(pid)))
    assert len(runs) == N_ENTRIES
    for name, starts in runs.items():
        starts.sort()
        for (t, pid), (t_next, _) in zip(starts, starts[1:]):
            # computed again only when the earlier computation's process was killed, and only afterwards
            assert pid in killed and killed[pid] <= t_next, (name, starts, killed)
    assert sum(len(s) for s in runs.values()) <= N_ENTRIES + len(killed)
    db = sqlite3.connect(out / "index.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT emdb_id) FROM entries").fetchone() == (N_ENTRIES,) * 2
    assert db.execute("SELECT COUNT(*) FROM claims").fetchone()[0] == 0
    db.close()
    assert list(spool.iterdir()) == []  # the killed runs' spool folders were removed by later runs
    for eid in st:
        for name in ("results.json", "report.md", "status.json"):
            assert stat.S_IMODE((out / eid / name).stat().st_mode) == 0o644, (eid, name)
    assert not [p for p in procs if _alive(p.pid)]


def test_download_validates_header_before_caching(tmp_path, monkeypatch):
    """A header that is an HTML page or another entry's header is refused and never cached."""
    import http.server
    import threading
    from functools import partial

    from gpuvalid.archive import download as dl
    from gpuvalid.archive.ids import layout
    from gpuvalid.archive.resolve import resolve_entry

    monkeypatch.setattr(dl._LIMITER, "interval", 0.0)
    srv = tmp_path / "server"
    m = blob_map(tmp_path / "m.mrc", 0)
    add_entry(srv, "EMD-7100", m, voxel_size=1.0, contour=0.3, resolution=8.0)
    add_entry(srv, "EMD-7101", m, voxel_size=1.0, contour=0.3, resolution=8.0)
    add_entry(srv, "EMD-7102", m, voxel_size=1.0, contour=0.3, resolution=8.0)
    (srv / layout("7101").header).write_text("<html><body>Service unavailable</body></html>")
    (srv / layout("7102").header).write_text((srv / layout("7100").header).read_text())  # EMD-7100's
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(srv))
    handler.log_message = lambda *a: None
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    th = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    th.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    cache = tmp_path / "cache"
    try:
        _, h = resolve_entry("EMD-7100", download=True, base_url=url, cache_dir=cache)
        assert h == cache / layout("7100").header and h.is_file()
        with pytest.raises(InputError, match="not an EMDB header"):
            resolve_entry("EMD-7101", download=True, base_url=url, cache_dir=cache)
        with pytest.raises(InputError, match="header of EMD-7100"):
            resolve_entry("EMD-7102", download=True, base_url=url, cache_dir=cache)
    finally:
        httpd.shutdown()
        httpd.server_close()
        th.join(timeout=5)
    for eid in ("7101", "7102"):
        assert not (cache / layout(eid).header).exists()
    assert not list(cache.rglob("*.part"))


def test_dead_claims_dropped(tmp_path):
    idx = ResultsIndex(tmp_path / "index.sqlite")
    gone = subprocess.Popen([sys.executable, "-c", "pass"])
    gone.wait()
    idx.claim("EMD-0001", "live")
    idx.claim("EMD-0002", "dead")
    with idx.db:
        idx.db.execute("UPDATE claims SET pid = ? WHERE run_id = 'dead'", (gone.pid,))
    assert idx.drop_dead_claims() == 1 and [c["emdb_id"] for c in idx.claims()] == ["EMD-0001"]
    idx.close()


def test_prefetch_refuses_gzip_bomb(tmp_path):
    """A .gz that inflates far beyond the size its MRC header declares is stopped early, nothing left."""
    import gzip

    from gpuvalid.archive.prefetch import declared_bytes, prefetch

    plain = blob_map(tmp_path / "m.mrc", 1).read_bytes()
    assert declared_bytes(plain[:1024]) == 1024 + 24 ** 3 * 4 == len(plain)  # mode 2, no extended header
    good, bomb = tmp_path / "good.map.gz", tmp_path / "bomb.map.gz"
    good.write_bytes(gzip.compress(plain[:3000], 1) + gzip.compress(plain[3000:], 1))  # two gzip members
    bomb.write_bytes(gzip.compress(plain + bytes(40 << 20), 1))
    spool = tmp_path / "spool"
    pf = prefetch("EMD-1", str(good), str(spool))
    assert pf.error is None and Path(pf.data_path).read_bytes() == plain
    pf.cleanup()
    pf = prefetch("EMD-2", str(bomb), str(spool))
    assert "inflates to more than the 56,320 bytes its MRC header declares" in pf.error
    assert list(spool.iterdir()) == []


@pytest.mark.skipif(not Path("/dev/shm").is_dir(), reason="no /dev/shm")
def test_recorded_semaphores_of_a_dead_run_are_unlinked(tmp_path):
    """Dask's processes use POSIX named semaphores: those a run had mapped are unlinked with its spool."""
    import mmap
    import uuid

    name = f"sem.mp-gvtest{uuid.uuid4().hex[:10]}"  # a named semaphore is a small file in /dev/shm
    sem = Path("/dev/shm") / name
    sem.write_bytes(bytes(32))
    try:
        with open(sem, "r+b") as fh, mmap.mmap(fh.fileno(), 32):
            sp = spool_mod.RunSpool(tmp_path / "spool")
            sp.open()
            assert spool_mod.record_semaphores(sp.path) >= 1
            assert name in (sp.path / spool_mod.SEM_LIST).read_text().split()
        os.close(sp._fd)  # the run dies: its lock is released but its folder is not removed
        sp._fd = None
        assert sem.exists()
        spool_mod.clean_stale(tmp_path / "spool")
        assert not sem.exists() and list((tmp_path / "spool").iterdir()) == []
    finally:
        sem.unlink(missing_ok=True)


def test_manifest_tables_and_lists(tmp_path):
    """A table needs an emdb_id column (quoted or not); anything else is a list of ids, one per line."""
    q = tmp_path / "q.csv"
    q.write_text('"emdb_id","map_path"\n"EMD-1234",""\nemd_1235,/x.map\n')
    assert read_manifest(q) == [{"emdb_id": "EMD-1234", "map_path": None},
                                {"emdb_id": "EMD-1235", "map_path": "/x.map"}]
    lst = tmp_path / "ids.txt"
    lst.write_text("# ids\nid\n1234\n\n" + "x" * 300000 + "\n")  # 'id' is not a header: a bad line
    rows = read_manifest(lst)
    assert rows[1]["emdb_id"] == "EMD-1234"
    assert [r["invalid"].split(":")[0] for r in rows if r.get("invalid")] == ["ids.txt line 2", "ids.txt line 5"]
    bin_ = tmp_path / "map.mrc"
    bin_.write_bytes(b"\x00" * 2048)
    with pytest.raises(InputError, match="binary file"):
        read_manifest(bin_)
