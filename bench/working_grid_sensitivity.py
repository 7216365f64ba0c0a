"""How much 0.e's network median moves when its working grid is not exactly 1 Å: the cost of choosing box edges
with small prime factors (``gpuvalid.resample.fft_length``: voxel within 1 % of 1 Å).

For every real map of shared/data with a contour and a resolution, 0.e's network runs on working grids whose
voxel is 3 % and 1.5 % above and below the exact one (``N·Ts/M`` for edges ``M`` near ``N·Ts``), and the
median over the hard mask is printed per grid, with its change against the grid nearest 1 Å, in % per % of
voxel size.  CPU, a few seconds per map and grid.

    python bench/working_grid_sensitivity.py [--factors 0.97 0.985 1 1.015 1.03]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--factors", type=float, nargs="+", default=[0.97, 0.985, 1.0, 1.015, 1.03],
                    help="working-grid edges as fractions of the exact N·Ts/1 Å")
    args = ap.parse_args(argv)
    from bench_e2e import real_maps

    from gpuvalid import masks
    from gpuvalid.backend import get_backend
    from gpuvalid.models import infer
    from gpuvalid.models import preprocess as P

    be = get_backend("cpu")
    net = infer.load("locres", None, "cpu")
    chosen = P.working_shape
    print("| map | Ts (Å) | exact edge | edge M | voxel (Å) | network median (Å) | change | % per % of voxel |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        for make in real_maps():
            V, ts, t, R, name = make()
            if max(net.LO, 2 * ts) >= net.HI:
                continue                                           # 0.e does not apply (Nyquist too coarse)
            hard = masks.hard_mask(be, V, t, ts)
            exact = V.shape[0] * ts
            rows = []
            for f in args.factors:
                m = int(round(exact * f))
                P.working_shape = lambda shape, vs, nv=1.0, m=m: tuple(
                    int(round(n * vs / nv * m / exact)) for n in shape)
                out = infer.predict_locres(V, ts, hard, "cpu", kind="locres")
                rows.append((m, exact / m, float(np.nanmedian(out[hard]))))
            ref = min(rows, key=lambda r: abs(r[1] - 1.0))
            for m, vox, med in rows:
                dv, dm = 100 * (vox / ref[1] - 1), 100 * (med / ref[2] - 1)
                slope = f"{dm / dv:+.2f}" if abs(dv) > 1e-9 else "—"
                print(f"| {name} | {ts:g} | {exact:.1f} | {m} | {vox:.4f} | {med:.3f} | {dm:+.2f} % | {slope} |")
    finally:
        P.working_shape = chosen
    return 0


if __name__ == "__main__":
    sys.exit(main())
