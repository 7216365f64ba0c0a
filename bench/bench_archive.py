"""Archive-mode throughput: entries per minute and the per-entry time split on this machine.

Builds a mirror of ``--entries`` entries (the real maps of shared/data repeated, plus some 160³
zooms of EMD-5168 so decompression matters) under bench/out/, then runs ``gpuvalid batch`` logic
with several worker/prefetch settings (``force`` so each run does all entries) and prints a
Markdown table: configuration, backend, wall seconds, entries/min, ratio to the serial run, and the
mean seconds per entry of read / decompress / load / compute / write.  Also times zlib vs isal
inflation of one large map.

    python bench/bench_archive.py [--entries 24] [--device cpu] [--data ../shared/data]
"""

from __future__ import annotations

import argparse
import gzip
import os
import statistics
import sys
import time
import zlib
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from gpuvalid.archive.batch import BatchOptions, run_batch  # noqa: E402
from gpuvalid.archive.manifest import scan_archive, size_stats  # noqa: E402
from gpuvalid.archive.mirror import add_entry, shared_entries  # noqa: E402
from gpuvalid.archive.prefetch import INFLATER, inflate  # noqa: E402
from gpuvalid.io.mrc import read_mrc, write_mrc  # noqa: E402

TIMES = ("read", "decompress", "load", "compute", "write")


def build_mirror(root: Path, data: Path, n: int) -> list[dict]:
    src = [e for e in shared_entries(data) if e["emdb_id"] in ("EMD-5168", "EMD-5170", "EMD-2566")]
    big = root.parent / "emd_5168_160.map"
    if not big.exists():
        from scipy import ndimage
        m = read_mrc(data / "emd_5168.map")
        write_mrc(big, ndimage.zoom(m.data, 1.6, order=1), 1.742 / 1.6)
    src.append({"file": big, "emdb_id": "big", "voxel_size": 1.742 / 1.6, "contour": 10.0, "resolution": 6.6})
    for i in range(n):
        e = src[i % len(src)]
        eid = f"EMD-{20000 + i}"
        if not (root / "structures" / eid / "map").is_dir():
            add_entry(root, eid, e["file"], voxel_size=e["voxel_size"], contour=e["contour"],
                      resolution=e["resolution"])
    return scan_archive(root)


def inflate_bench(data: Path, tmp: Path) -> list[str]:
    from scipy import ndimage
    m = read_mrc(data / "emd_5168.map")
    big = ndimage.zoom(m.data, 2.56, order=1).astype(np.float32)  # 256³, 64 MB
    raw = big.tobytes()
    gz = gzip.compress(raw, compresslevel=6)
    rows = []
    for name, fn in (("zlib", lambda b: zlib.decompress(b, wbits=31)), (INFLATER, inflate)):
        ts = []
        for _ in range(3):
            t0 = time.perf_counter()
            fn(gz)
            ts.append(time.perf_counter() - t0)
        rows.append((name, min(ts)))
    base = rows[0][1]
    out = ["| inflater | MB (inflated) | seconds | MB/s | ratio |", "|---|---|---|---|---|"]
    for name, t in rows:
        out.append(f"| {name} | {len(raw) / 1e6:.0f} | {t:.3f} | {len(raw) / 1e6 / t:.0f} | {base / t:.1f}× |")
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--entries", type=int, default=24)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--data", type=Path, default=REPO.parent / "shared" / "data")
    ap.add_argument("--out", type=Path, default=REPO / "bench" / "out" / "archive")
    args = ap.parse_args()
    args.out.mkdir(parents=True, exist_ok=True)
    rows = build_mirror(args.out / "mirror", args.data, args.entries)
    st = size_stats(rows)
    print(f"mirror: {st['entries']} entries, {st['total_GB'] * 1e3:.0f} MB stored, "
          f"{st['uncompressed_GB'] * 1e3:.0f} MB inflated, map MB p50={st['map_MB_percentiles'].get(50)} "
          f"max={st['map_MB_percentiles'].get(100)}, box edge max={st['box_edge_percentiles'].get(100)}")
    configs = [("1 worker, no prefetch (serial)", dict(workers=1, prefetch=0)),
               ("1 worker + 1 prefetch process", dict(workers=1, prefetch=1)),
               ("2 workers + 1 prefetch process", dict(workers=2, prefetch=1)),
               ("2 workers + 2 prefetch processes", dict(workers=2, prefetch=2))]
    try:
        import distributed  # noqa: F401
        if args.device.lower().startswith(("cuda", "gpu")):
            # dask-cuda starts at most one worker per visible GPU: the runner clamps (with a warning)
            from gpuvalid.archive.dask_runner import cuda_cluster_plan, visible_gpus
            try:
                import dask_cuda  # noqa: F401
                n = cuda_cluster_plan(args.device, 2, visible_gpus())[0]
                configs.append((f"Dask LocalCUDACluster, {n} worker(s)", dict(workers=2, prefetch=1, dask=True)))
            except ImportError:
                print("dask-cuda not installed: no Dask GPU configuration")
            except Exception as exc:  # no GPU visible, …
                print(f"no Dask GPU configuration: {exc}")
        else:
            configs.append(("Dask LocalCluster, 2 workers", dict(workers=2, prefetch=1, dask=True)))
    except ImportError:
        pass
    table = ["| configuration | backend | entries | wall s | entries/min | ratio | read | decompress | load | "
             "compute | write |", "|---|---|---|---|---|---|---|---|---|---|---|"]
    base = None
    for label, kw in configs:
        out = args.out / ("run_" + "".join(c if c.isalnum() else "_" for c in label))
        o = BatchOptions(out_dir=out, device=args.device, force=True, progress=False,
                         spool_dir=str(args.out / "spool"), **kw)
        res = run_batch(rows, o)
        rate = res.per_minute
        base = base or rate
        mean = {k: statistics.fmean([r.seconds.get(k, 0.0) for r in res.records]) for k in TIMES}
        table.append(f"| {label} | {args.device} | {res.done}+{res.failed} failed | {res.seconds:.1f} | "
                     f"{rate:.1f} | {rate / base:.2f}× | " + " | ".join(f"{mean[k]:.3f}" for k in TIMES) + " |")
        print(table[-1], flush=True)
    print("\n" + "\n".join(table))
    print("\ninflation of one 256³ float32 map (64 MB), gzip level 6, best of 3:")
    print("\n".join(inflate_bench(args.data, args.out)))
    print(f"\nmachine: {os.cpu_count()} CPU cores (shared), device {args.device}")


if __name__ == "__main__":
    main()
