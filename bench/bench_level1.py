"""Level 1 (issue 11) per-section seconds on simulated half maps: ``python bench/bench_level1.py``.

Half maps of a real model (``shared/data/models``, Gaussian atoms, B = 60 Å², noise σ = the signal's σ,
independent per half) at 128³ and 256³ (and 384³ with ``--sizes 128,256,384``); the primary map is their
mean and the contour keeps 6 % of the box.  Sections run in report order on one :class:`Level1Context`,
so the transforms shared by several sections are charged to the first that needs them (1.a: the four
half-map FFTs; 1.g: the direction binning that 1.h reuses).  The Level 0 soft mask is built before the
clock starts and timed on its own.  Figures off.  Prints a Markdown table with the reference's cost
profile (from ``shared/spec/level1_reference.md``) beside each section.
"""

from __future__ import annotations

import argparse
import importlib
import os
import platform
import time
from pathlib import Path

import numpy as np

from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext, RunOptions
from gpuvalid.level1.context import HalfMaps, Level1Context
from gpuvalid.level1.simhalves import simulate_halves

REPO = Path(__file__).resolve().parents[1]
MODELS = REPO.parent / "shared" / "data" / "models"

REFERENCE = {
    "1": "— (the reference imports the halves only)",
    "1.a": "Xmipp `frc_dpr`: 2 float64 r2c FFTs + an atan2 pass; VRS SSNR: 2 complex128 C2C FFTs "
           "(0.72 s each at 256³ on this CPU [M]), ~10–12·N³·8 B RAM",
    "1.b": "SPOC: ~2·N⁴ element-ops of per-shell boolean masks (9×10⁹ at 256³) + 200–1000 permutations "
           "(~6×10⁸ moves at 256³) + `math.factorial(n)` per shell (0.2–1 s each for large shells [M]), single process",
    "1.g": "Xmipp FSO: 321 directions × πN³/12 coefficients ≈ 1.4×10⁹ element-ops at 256³; tens of seconds to "
           "minutes on 4 threads [D]",
    "1.h": "3DFSC: all pairs of shell points, ~10¹¹–10¹² pair tests at 256³; ~2 s (CUDA) to ~100 s (CPU) "
           "by 3DFSC's own comments",
}


def run_once(be, box: int, model: Path, seed: int = 0) -> dict:
    ts = 1.0 if box <= 128 else 128.0 / box
    sim = simulate_halves(model, ts, box, bfactor_A2=60.0, noise_rel=1.0, seed=seed)
    P = sim.primary
    thr = float(np.quantile(P, 0.94))
    ctx0 = MapContext(be, P, ts, thr, 3.0, RunOptions())
    t0 = time.perf_counter()
    _ = ctx0.soft_mask
    be.synchronize()
    out = {"soft mask (Level 0)": time.perf_counter() - t0}
    hm = HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (sim.h1, sim.h2), ("-", "-"), ((ts,) * 3, (ts,) * 3))
    ctx1 = Level1Context(ctx0, hm)
    keys, cpu = {}, {}
    for sid, mod in (("1", "halves"), ("1.a", "global_res"), ("1.b", "fdr"), ("1.g", "fso"), ("1.h", "fsc3d")):
        t0, c0 = time.perf_counter(), time.process_time()
        res = importlib.import_module(f"gpuvalid.level1.{mod}").run(ctx1)
        be.synchronize()
        out[sid] = time.perf_counter() - t0
        cpu[sid] = time.process_time() - c0
        keys[sid] = res.key
    ctx1.release()
    ctx0.release()
    return {"times": out, "cpu": cpu, "keys": keys, "ts": ts}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--sizes", default="128,256")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--model", default=str(MODELS / "6gyn.pdb"))
    ap.add_argument("--repeat", type=int, default=1)
    a = ap.parse_args()
    be = get_backend(a.device)
    info = be.info()
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPU cores; device {info.get('device')} "
          f"({info.get('device_name', '')})")
    rows = []
    for n in [int(s) for s in a.sizes.split(",")]:
        best = None
        for r in range(a.repeat):
            res = run_once(be, n, Path(a.model), seed=r)
            if best is None or sum(res["times"].values()) < sum(best["times"].values()):
                best = res
        t = best["times"]
        total = t["1.a"] + t["1.b"] + t["1.g"] + t["1.h"]
        print(f"\n{n}³ (Ts {best['ts']:.3f} Å): " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items())
              + f"; 1.a+1.b+1.g+1.h = {total:.2f} s")
        print("   keys: " + "; ".join(f"{k}: {v}" for k, v in best["keys"].items()))
        c = best["cpu"]
        print("   process CPU seconds: " + ", ".join(f"{k} {v:.2f}" for k, v in c.items()))
        rows.append((n, t, total))
    print("\n| section | " + " | ".join(f"{n}³ {a.device} (s)" for n, _, _ in rows) + " | reference cost profile |")
    print("|---|" + "---|" * len(rows) + "---|")
    for sid in ("soft mask (Level 0)", "1", "1.a", "1.b", "1.g", "1.h"):
        print(f"| {sid} | " + " | ".join(f"{t[sid]:.2f}" for _, t, _ in rows) + f" | {REFERENCE.get(sid, '—')} |")
    print("| **1.a+1.b+1.g+1.h** | " + " | ".join(f"**{tot:.2f}**" for _, _, tot in rows) + " | |")


if __name__ == "__main__":
    main()
