"""Do CuPy's data-sized operations give the right answer past 2³¹ elements? (issue 14, 768³ maps)

0.e's working grid at 1 Å of a 768³ map of 1.742 Å voxels is 1344³ = 2.43·10⁹ voxels, more than 2³¹.  CuPy
places the elements a boolean mask selects by a scan of the mask, and its scans went wrong past 2³² (or 2³¹)
elements in some versions (cupy/cupy#9841: ``cumsum`` returned its input unchanged; #10268: batch scans).
gpuvalid selects such masks by slabs (``Backend.masked``, ``Backend.flatnonzero``); this script checks the
single-call forms on the device, so that the slabs can be dropped when CuPy is right.

    python bench/big_arrays.py --device cuda:0                  # 2³¹ + 2²⁰ elements (about 30 GB of device memory)
    python bench/big_arrays.py --device cpu --elements 100000    # a dry run

Then 0.e's other steps on a cube of as many voxels (trilinear sampling, reflection padding, a Gaussian pass,
the tile-occupancy reduction), each checked at two known voxels, one of them past 2³¹ in flat order.
Prints one row per operation: right, wrong (and how) or the error, and seconds.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from gpuvalid.backend import get_backend  # noqa: E402


def _row(name, fn, check):
    t0 = time.perf_counter()
    try:
        got = fn()
        verdict = check(got)
    except Exception as exc:   # a failure of the library under test is what this script reports
        verdict = f"error: {type(exc).__name__}: {str(exc)[:160]}"
    print(f"| {name} | {verdict} | {time.perf_counter() - t0:.2f} |", flush=True)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0")
    ap.add_argument("--elements", type=int, default=2 ** 31 + 2 ** 20)
    args = ap.parse_args(argv)
    be = get_backend(args.device)
    xp, n = be.xp, int(args.elements)
    # every 1000th element selected, plus the last one: the expected answers follow from n alone
    mask = xp.zeros(n, dtype=bool)
    mask[::1000] = True
    mask[-1] = True
    want_idx_last = n - 1
    want_count = len(range(0, n, 1000)) + (0 if (n - 1) % 1000 == 0 else 1)
    vals = xp.arange(n, dtype=xp.float32) if n < 2 ** 24 else None      # exact float32 indices below 2²⁴
    a = xp.zeros(n, dtype=xp.float32)
    print(f"# {be.device}, {n} elements ({n / 2 ** 31:.3f} × 2³¹); {be.name} {xp.__version__}")
    print("| operation | result | seconds |\n|---|---|---|")
    _row("count_nonzero(mask)", lambda: int(xp.count_nonzero(mask)),
         lambda c: "right" if c == want_count else f"wrong: {c} (want {want_count})")

    def scatter():
        a[mask] = 1.0
        return float(xp.sum(a, dtype=xp.float64))

    _row("a[mask] = 1 (scatter)", scatter,
         lambda s: "right" if s == want_count else f"wrong: sum {s:.0f} (want {want_count})")
    xp.copyto(a, 1.0, where=mask)                                        # element-wise: the gathers below need it
    _row("flatnonzero(mask)", lambda: xp.flatnonzero(mask),
         lambda i: "right" if (int(i.size) == want_count and int(i[-1]) == want_idx_last and int(i[1]) == 1000)
         else f"wrong: {int(i.size)} indices, last {int(i[-1]) if i.size else None}")
    _row("a[mask] (gather)", lambda: a[mask],
         lambda g: "right" if (int(g.size) == want_count and float(xp.min(g)) == 1.0) else
         f"wrong: {int(g.size)} values, min {float(xp.min(g)) if g.size else None}")
    _row("be.masked(a, mask) (slabs)", lambda: be.masked(a, mask),
         lambda g: "right" if (int(g.size) == want_count and float(xp.min(g)) == 1.0) else f"wrong: {int(g.size)}")
    _row("be.flatnonzero(mask) (slabs)", lambda: be.flatnonzero(mask),
         lambda i: "right" if (int(i.size) == want_count and int(i[-1]) == want_idx_last) else f"wrong: {int(i.size)}")
    _row("cumsum(mask)", lambda: xp.cumsum(mask, dtype=xp.int64)[-1],
         lambda c: "right" if int(c) == want_count else f"wrong: {int(c)} (want {want_count})")
    _row("nanmedian(a[mask])", lambda: float(xp.nanmedian(a[mask])),
         lambda m: "right" if m == 1.0 else f"wrong: {m}")
    if vals is not None:
        _row("arange gather (small)", lambda: vals[mask], lambda g: "right" if float(g[-1]) == n - 1 else "wrong")
    del mask, a
    be.free_pool()              # the cube below reuses none of these blocks: hand them back (an H100 has 80 GB)
    _volume_ops(be, n)
    return 0


def _volume_ops(be, n: int) -> None:
    """0.e's other steps on a cube of at least ``n`` voxels (edge a multiple of 16) holding two known voxels:
    trilinear sampling, reflection padding, one Gaussian pass and the tile-occupancy reduction."""
    import numpy as np
    from scipy import ndimage as snd

    xp, nd = be.xp, be.ndimage
    m = -(-round(n ** (1 / 3)) // 16) * 16
    while m ** 3 < n:
        m += 16
    V = xp.zeros((m, m, m), dtype=xp.float32)
    V[m - 2, m - 3, m - 4] = 5.0                     # past 2³¹ in flat order when m³ > 2³¹
    V[1, 2, 3] = 7.0
    print(f"# cube {m}³ = {m ** 3} voxels ({m ** 3 / 2 ** 31:.3f} × 2³¹)")
    pts = xp.asarray(np.array([[m - 2, 1], [m - 3, 2], [m - 4, 3]], dtype=np.float64))
    _row("map_coordinates (order 1)", lambda: be.to_host(nd.map_coordinates(V, pts, order=1, mode="nearest")),
         lambda v: "right" if v.tolist() == [5.0, 7.0] else f"wrong: {v.tolist()}")
    r = 6

    def pad():
        P = xp.pad(V, r, mode="reflect")             # NumPy's reflect: P[r + m - 1 + k] = V[m - 1 - k]
        return float(P[r + m - 2, r + m - 3, r + m - 4]), float(P[r + m, r + m + 1, r + m + 2])

    _row("pad (reflect)", pad, lambda v: "right" if v == (5.0, 5.0) else f"wrong: {v}")
    be.free_pool()
    line = np.zeros(41, dtype=np.float32)             # the same deltas on a short line: the reflections at the
    line[[1, 39]] = 1.0                                # ends add the same weights (σ = 3, 4σ = 12 < 39 - 1)
    g = snd.gaussian_filter1d(line, 3.0, mode="reflect")
    want = (5 * float(g[39]), 7 * float(g[1]))

    def gauss():
        G = nd.gaussian_filter1d(V, 3.0, axis=0, mode="reflect")
        return float(G[m - 2, m - 3, m - 4]), float(G[1, 2, 3])

    _row("gaussian_filter1d (axis 0)", gauss,
         lambda v: "right" if np.allclose(v, want, rtol=1e-5) else f"wrong: {v} (want {want})")
    be.free_pool()
    t = 16

    def tiles():
        occ = (V != 0).reshape(m // t, t, m // t, t, m // t, t).any(axis=(1, 3, 5))
        return sorted(map(tuple, be.to_host(xp.argwhere(occ)).tolist()))

    last = (m - 1) // t
    _row("tile occupancy (6-D any)", tiles,
         lambda v: "right" if v == [(0, 0, 0), (last, last, last)] else f"wrong: {v}")


if __name__ == "__main__":
    sys.exit(main())
