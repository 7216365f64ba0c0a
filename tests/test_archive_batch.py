"""Archive mode: manifest scan, batch with shards / Dask (same results), faults, resume, kill-and-resume."""

import gzip
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

from gpuvalid.errors import InputError
from gpuvalid.archive.batch import BatchOptions, parse_shard, run_batch, select_shard
from gpuvalid.archive.ids import layout
from gpuvalid.archive.manifest import read_manifest, scan_archive, size_stats, write_manifest
from gpuvalid.archive.mirror import add_entry
from gpuvalid.archive.summary import collect, write_table

GOOD = {  # id: (file, box zyx, voxel Å, contour, resolution Å) as in shared/data/MANIFEST.tsv
    "EMD-5168": ("emd_5168.map", (100, 100, 100), 1.742, 10.0, 6.6),
    "EMD-5170": ("emd_5170.map", (100, 100, 100), 2.38, 0.61, 15.0),
    "EMD-2566": ("emd_2566_crop_3j6b_chain9.mrc", None, 1.34, None, 3.2),  # header without dimensions
    "EMD-3197": ("emd_3197.map", (20, 20, 20), 11.4, None, None),
}
CORRUPT, NO_HEADER, RAISES = "EMD-9001", "EMD-9002", "EMD-9003"


def build_mirror(root: Path, data_dir: Path) -> Path:
    for eid, (f, box, vs, t, r) in GOOD.items():
        add_entry(root, eid, data_dir / f, box_zyx=box, voxel_size=vs, contour=t, resolution=r,
                  half_maps=eid == "EMD-5168")
    add_entry(root, RAISES, data_dir / "emd_5170.map", box_zyx=(100,) * 3, voxel_size=2.38, contour=0.61,
              resolution=15.0)
    m, _ = add_entry(root, CORRUPT, data_dir / "emd_5170.map", box_zyx=(100,) * 3, voxel_size=2.38,
                     contour=0.61)
    blob = m.read_bytes()
    m.write_bytes(blob[: len(blob) // 2])  # truncated download
    add_entry(root, NO_HEADER, data_dir / "emd_5170.map", header=False)
    return root


@pytest.fixture(scope="module")
def mirror(tmp_path_factory, data_dir):
    return build_mirror(tmp_path_factory.mktemp("mirror"), data_dir)


@pytest.fixture(scope="module")
def manifest(mirror, tmp_path_factory):
    rows = scan_archive(mirror)
    return write_manifest(rows, tmp_path_factory.mktemp("man") / "manifest.tsv")


def results(out: Path, eid: str) -> dict:
    d = json.loads((out / eid / "results.json").read_text())
    d.pop("seconds", None)
    d.pop("backend", None)
    for s in d["sections"].values():
        s.pop("seconds", None)
    return d


def status(out: Path) -> dict:
    return {p.parent.name: json.loads(p.read_text()) for p in out.glob("*/status.json")}


def opts(out, **kw):
    kw.setdefault("prefetch", 1)
    return BatchOptions(out_dir=out, device="cpu", progress=False, spool_dir=str(out.parent / "spool"), **kw)


def test_manifest_scan(mirror, manifest):
    rows = {r["emdb_id"]: r for r in read_manifest(manifest)}
    assert set(rows) == set(GOOD) | {CORRUPT, NO_HEADER, RAISES}
    r = rows["EMD-5168"]
    assert (r["nz"], r["ny"], r["nx"], r["voxel_size_A"], r["contour"], r["resolution_A"]) == (100, 100, 100,
                                                                                                 1.742, 10.0, 6.6)
    assert r["half_maps"] == 2 and rows["EMD-5170"]["half_maps"] == 0
    assert r["map_bytes"] == (mirror / layout("5168").map).stat().st_size
    # box of the crop read from the MRC header (x,y,z = 35,52,47 per MANIFEST.tsv) since its XML has none
    assert (rows["EMD-2566"]["nx"], rows["EMD-2566"]["ny"], rows["EMD-2566"]["nz"]) == (35, 52, 47)
    assert rows[NO_HEADER]["problem"] == "header missing" and rows["EMD-3197"]["contour"] is None
    st = size_stats(list(rows.values()))
    assert st["entries"] == 7 and st["with_half_maps_pct"] == pytest.approx(100 / 7)
    ids = manifest.parent / "ids.txt"
    ids.write_text("emd_5168\n5170\n5170\n")
    assert [r["emdb_id"] for r in read_manifest(ids)] == ["EMD-5168", "EMD-5170"]


def test_shards_partition():
    rows = [{"emdb_id": f"EMD-{i:04d}"} for i in (7, 3, 12345, 1, 40)]
    parts = [select_shard(rows, (i, 3)) for i in range(3)]
    got = sorted(r["emdb_id"] for p in parts for r in p)
    assert got == sorted(r["emdb_id"] for r in rows)
    assert parse_shard("1/4") == (1, 4)
    assert parse_shard(None, env={"SLURM_ARRAY_TASK_ID": "2", "SLURM_ARRAY_TASK_COUNT": "3",
                                  "SLURM_ARRAY_TASK_MIN": "0"}) == (2, 3)
    assert parse_shard(None, env={}) == (0, 1)
    for bad in ("4/4", "x", "1/0"):
        with pytest.raises(InputError, match="bad shard"):
            parse_shard(bad)


def test_faults_resume_retry(manifest, tmp_path, monkeypatch):
    """Corrupt map, missing header and a raising analysis fail with reasons; the rest complete;
    a rerun skips everything; --retry-failed redoes only the failures."""
    import gpuvalid.pipeline as pipeline

    real = pipeline.validate

    def flaky(inp, *a, **k):
        if inp.path.name == "emd_9003.map.gz":
            raise RuntimeError("injected analysis failure")
        return real(inp, *a, **k)
    monkeypatch.setattr(pipeline, "validate", flaky)
    out = tmp_path / "out"
    rows = read_manifest(manifest)
    res = run_batch(rows, opts(out))
    assert (res.done, res.failed, res.skipped) == (4, 3, 0)
    st = status(out)
    assert {k for k, v in st.items() if v["status"] == "done"} == set(GOOD)
    assert "corrupt map file emd_9001.map.gz" in st[CORRUPT]["reason"]
    assert "EMDB header missing" in st[NO_HEADER]["reason"]
    assert st[RAISES]["reason"] == "internal error (RuntimeError: injected analysis failure)"
    assert "injected analysis failure" in (out / RAISES / "errors.log").read_text()
    for eid in GOOD:  # the results carry the archive file's hash and the header's metadata
        d = json.loads((out / eid / "results.json").read_text())
        assert d["input"]["file"] == Path(layout(eid).map).name
        assert d["input"]["sha256"] == st[eid]["input_sha256"]
        assert d["input"]["threshold"] == GOOD[eid][3] and d["input"]["resolution_A"] == GOOD[eid][4]
        assert set(st[eid]["seconds"]) >= {"read", "decompress", "load", "compute", "write", "total"}
    db = sqlite3.connect(out / "index.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT emdb_id) FROM entries").fetchone() == (7, 7)
    assert dict(db.execute("SELECT status, COUNT(*) FROM entries GROUP BY status").fetchall()) == \
        {"done": 4, "failed": 3}
    db.close()

    before = {k: v["finished"] for k, v in st.items()}
    res = run_batch(rows, opts(out))  # resume: nothing to do
    assert (res.done, res.failed, res.skipped) == (0, 0, 7)
    assert {k: v["finished"] for k, v in status(out).items()} == before

    os.utime(Path(st["EMD-5168"]["map_path"]))  # same bytes, new mtime: re-hashed, still skipped
    res = run_batch(rows, opts(out))
    assert (res.done, res.failed, res.skipped) == (0, 0, 7)

    monkeypatch.setattr(pipeline, "validate", real)  # the bug is fixed: retry the failures only
    res = run_batch(rows, opts(out, retry_failed=True))
    assert (res.done, res.failed, res.skipped) == (1, 2, 4)
    st2 = status(out)
    assert st2[RAISES]["status"] == "done"
    assert all(st2[k]["finished"] == before[k] for k in GOOD)

    rows_sum = collect(out, rebuild=True)
    assert len(rows_sum) == 7 and sum(r["status"] == "done" for r in rows_sum) == 5
    assert all("0.a.status" in r for r in rows_sum if r["status"] == "done")
    csv_path = write_table(rows_sum, tmp_path / "summary.csv")
    assert len(csv_path.read_text().strip().splitlines()) == 8
    from gpuvalid.cli import app
    r = CliRunner().invoke(app, ["summary", str(out), "--csv", str(tmp_path / "s.tsv")])
    assert r.exit_code == 0, r.output
    assert "5 done, 2 failed" in r.output


def test_two_shards_equal_two_dask_workers(manifest, tmp_path):
    pytest.importorskip("distributed")
    rows = read_manifest(manifest)
    a, b = tmp_path / "shards", tmp_path / "dask"
    r0 = run_batch(rows, opts(a, shard=(0, 2)))
    r1 = run_batch(rows, opts(a, shard=(1, 2)))
    assert r0.planned + r1.planned == 7 and min(r0.planned, r1.planned) >= 3
    rd = run_batch(rows, opts(b, dask=True, workers=2))
    assert (rd.done, rd.failed) == (5, 2)
    sa, sb = status(a), status(b)
    assert {k: v["status"] for k, v in sa.items()} == {k: v["status"] for k, v in sb.items()}
    assert {k: v["reason"] for k, v in sa.items()} == {k: v["reason"] for k, v in sb.items()}
    assert len({v["worker"] for v in sb.values() if v["status"] == "done"}) >= 1
    for eid, v in sa.items():
        if v["status"] == "done":
            assert results(a, eid) == results(b, eid), eid


def test_kill_and_resume(tmp_path):
    """A batch killed with SIGKILL midway completes on rerun without redoing or duplicating entries."""
    import numpy as np

    from gpuvalid.io.mrc import write_mrc

    root = tmp_path / "mirror"
    ids = [f"EMD-{1000 + i}" for i in range(10)]
    z, y, x = np.mgrid[:24, :24, :24]
    for i, eid in enumerate(ids):  # small Gaussian blobs (1 Å voxels): quick entries
        v = np.exp(-((z - 12 - i % 3) ** 2 + (y - 12) ** 2 + (x - 11) ** 2) / 20.0).astype(np.float32)
        f = write_mrc(tmp_path / f"m{i}.mrc", v + np.float32(0.01 * np.sin(i + z + 2 * y)), 1.0)
        add_entry(root, eid, f, box_zyx=(24,) * 3, voxel_size=1.0, contour=0.3, resolution=8.0,
                  compresslevel=1)
    man = write_manifest(scan_archive(root), tmp_path / "m.tsv")
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "gpuvalid.cli", "batch", str(man), "--out", str(out), "--device", "cpu",
           "--prefetch", "1", "--quiet", "--spool", str(tmp_path / "spool")]
    p = subprocess.Popen(cmd, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    t0 = time.monotonic()
    while time.monotonic() - t0 < 120:
        if len(list(out.glob("*/status.json"))) >= 3 or p.poll() is not None:
            break
        time.sleep(0.02)
    os.killpg(p.pid, signal.SIGKILL)
    p.wait(timeout=30)
    before = status(out)
    assert 3 <= len(before) < len(ids), "the batch was not killed midway"
    db = sqlite3.connect(out / "index.sqlite")
    n_idx = db.execute("SELECT COUNT(*) FROM entries").fetchone()[0]
    db.close()
    assert n_idx <= len(before)  # folder first, index second

    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    after = status(out)
    assert len(after) == len(ids) and all(v["status"] == "done" for v in after.values())
    assert all(after[k]["finished"] == v["finished"] for k, v in before.items())  # not redone
    assert f"{len(ids) - len(before)} done, 0 failed, {len(before)} skipped" in r.stdout
    db = sqlite3.connect(out / "index.sqlite")
    assert db.execute("SELECT COUNT(*), COUNT(DISTINCT emdb_id) FROM entries").fetchone() == (10, 10)
    assert db.execute("SELECT COUNT(*) FROM entries WHERE status = 'done'").fetchone()[0] == 10
    db.close()
    assert not list(out.rglob("*.tmp"))
    with gzip.open(root / layout(ids[0]).map) as fh:  # the mirror is untouched
        assert len(fh.read(1024)) == 1024


@pytest.mark.gpu
def test_batch_on_gpu_matches_cpu(manifest, tmp_path):
    """The CUDA batch path (1 GPU worker) gives the CPU's statuses and scores (values within 1e-3)."""
    from gpuvalid.backend import cuda_available
    if not cuda_available():
        pytest.skip("no CUDA device / CuPy not installed")
    rows = [r for r in read_manifest(manifest) if r["emdb_id"] in GOOD]
    a, b = tmp_path / "cpu", tmp_path / "gpu"
    run_batch(rows, opts(a))
    rg = run_batch(rows, BatchOptions(out_dir=b, device="cuda", progress=False, prefetch=1,
                                      spool_dir=str(tmp_path / "spool")))
    assert rg.done == len(GOOD)
    for eid in GOOD:
        ca, cb = results(a, eid), results(b, eid)
        assert ca["score"] == cb["score"]
        for sid, s in ca["sections"].items():
            assert s["status"] == cb["sections"][sid]["status"], (eid, sid)
            for k, v in s["values"].items():
                if isinstance(v, float):
                    assert cb["sections"][sid]["values"][k] == pytest.approx(v, rel=1e-3, abs=1e-6), (eid, sid, k)


def test_batch_runs_level1_on_an_entry_with_half_maps(data_dir, tmp_path):
    """An archive entry with both half maps gets Level 1 in batch mode; its halves are the archive files."""
    import mrcfile
    import numpy as np

    with mrcfile.open(data_dir / "emd_5168.map", permissive=True) as f:
        V = np.asarray(f.data, dtype=np.float32)[26:74, 26:74, 26:74].copy()  # a 48³ piece of the filament
    rng = np.random.default_rng(5)
    src = tmp_path / "src"
    src.mkdir()
    paths = []
    for name, data in (("map", V), ("h1", V + rng.normal(0, 1.0, V.shape)), ("h2", V + rng.normal(0, 1.0, V.shape))):
        p = src / f"{name}.mrc"
        with mrcfile.new(p) as f:
            f.set_data(data.astype(np.float32))
            f.voxel_size = 1.742
        paths.append(p)
    root = tmp_path / "mirror"
    add_entry(root, "EMD-9100", paths[0], box_zyx=V.shape, voxel_size=1.742, contour=10.0, resolution=6.6)
    lay = layout("EMD-9100")
    for i, p in ((1, paths[1]), (2, paths[2])):
        dst = root / lay.half_map(i)
        dst.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "rb") as s, gzip.open(dst, "wb") as d:
            d.write(s.read())
    rows = scan_archive(root)
    assert rows[0]["half_maps"] == 2
    out = tmp_path / "out"
    res = run_batch(rows, BatchOptions(out_dir=out, prefetch=0))
    assert res.done == 1, res
    js = json.loads((out / "EMD-9100" / "results.json").read_text())
    assert js["half_maps"]["files"] == ["emd_9100_half_map_1.map.gz", "emd_9100_half_map_2.map.gz"]
    assert js["sections"]["1.a"]["status"] in ("ok", "warnings")
    assert js["sections"]["0.a"]["status"] in ("ok", "warnings")  # Level 0 as before
