"""Benchmark: the three isosurface views of a map (render only, and render + PNG) on CPU and GPU.

Maps: EMD-5168 as stored (100³) and resampled to 320³ (trilinear zoom, voxel size scaled so the
physical box is the same), and Gaussian-smoothed noise 320³ at its 85th percentile (surfaces fill
the whole box: the worst case for empty-space skipping).  Prints a table: map, backend, step, seconds (best of ``--repeat``), ratio
(CPU seconds / this backend's seconds for the same map and step).

    python bench/bench_views.py [--data ../shared/data] [--repeat 3] [--size 512]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
from scipy import ndimage


def _maps(data: Path):
    from gpuvalid.io import load_map_input

    inp = load_map_input(data / "emd_5168.map", threshold=10.0, resolution=6.6)
    yield "emd_5168 100³", inp.data, inp.voxel_size, 10.0
    big = ndimage.zoom(inp.data, 3.2, order=1).astype(np.float32)
    yield f"emd_5168 zoom {big.shape[0]}³", big, inp.voxel_size / 3.2, 10.0
    # worst case for the ray caster: surfaces everywhere in the box (no crop, many edges)
    rng = np.random.default_rng(0)
    noise = ndimage.gaussian_filter(rng.standard_normal((320, 320, 320), dtype=np.float32), 4.0)
    yield "smoothed noise 320³ (top 15 %)", noise, 1.0, float(np.percentile(noise, 85))


def _best(fn, repeat: int) -> float:
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--data", type=Path, default=Path(__file__).resolve().parents[2] / "shared" / "data")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--size", type=int, default=512)
    args = ap.parse_args()

    from rich.console import Console
    from rich.table import Table

    from gpuvalid.backend import cuda_available, get_backend
    from gpuvalid.context import MapContext
    from gpuvalid.figures import views as fviews
    from gpuvalid.render import SPEC_VIEWS, render_views

    backends = [get_backend("cpu")] + ([get_backend("cuda")] if cuda_available() else [])
    table = Table(title=f"Three isosurface views ({args.size} px), best of {args.repeat}")
    for col in ("map", "backend", "step", "seconds", "ratio"):
        table.add_column(col, justify="right" if col in ("seconds", "ratio") else "left")
    tmp = Path(tempfile.mkdtemp(prefix="bench_views_"))
    for name, data, vs, t in _maps(args.data):
        cpu_time = {}
        for be in backends:
            V = be.asarray(data)

            def render():
                render_views(be, V, t, SPEC_VIEWS, size=args.size)
                be.synchronize()

            def figure():
                ctx = MapContext(be, data, vs, t, None)
                ctx.V = V
                fviews.isosurface_views(ctx, tmp)

            render()  # warm-up (kernel compilation, FFT plans, imports)
            for step, fn in (("render 3 views", render), ("render + PNG", figure)):
                sec = _best(fn, args.repeat)
                if not be.is_gpu:
                    cpu_time[step] = sec
                table.add_row(name, be.device, step, f"{sec:.3f}", f"{cpu_time[step] / sec:.1f}×")
    Console().print(table)


if __name__ == "__main__":
    main()
