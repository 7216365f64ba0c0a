"""Do CuPy's data-sized operations give the right answer past 2³¹ elements? (issue 14, 768³ maps)

0.e's working grid at 1 Å of a 768³ map of 1.742 Å voxels is 1344³ = 2.43·10⁹ voxels, more than 2³¹.  CuPy
places the elements a boolean mask selects by a scan of the mask, and its scans went wrong past 2³² (or 2³¹)
elements in some versions (cupy/cupy#9841: ``cumsum`` returned its input unchanged; #10268: batch scans).
gpuvalid selects such masks by slabs (``Backend.masked``, ``Backend.flatnonzero``); this script checks the
single-call forms on the device, so that the slabs can be dropped when CuPy is right.

    python bench/big_arrays.py --device cuda:0                  # 2³¹ + 2²⁰ elements (about 11 GB of device memory)
    python bench/big_arrays.py --device cpu --elements 100000    # a dry run

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
    return 0


if __name__ == "__main__":
    sys.exit(main())
