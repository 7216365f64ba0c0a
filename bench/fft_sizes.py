"""Seconds of one complex64 3-D FFT per box edge on a backend: is an edge with a large prime factor slow?

0.e's working grid is the map resampled to 1 Å.  Its edge used to be N·Ts rounded: EMD-5168 (1.742 Å) in a
384³ box gave 669 = 3·223, in 256³ 446 = 2·223, which cuFFT and pocketfft transform with Bluestein's
algorithm.  It is now the nearest edge within 1 % with prime factors ≤ 7 (else ≤ 13), 672 and 448 there
(``gpuvalid.resample.fft_length``); this script measures what that saves on a device (and on the CPU).

    python bench/fft_sizes.py [--device cuda:0] [--sizes 446 448 669 672] [--repeat 3]

Prints a table (edge, prime factors, best seconds of ``--repeat`` forward transforms after one untimed
transform that makes the plan, ratio to the fastest edge per pair) and a line per pair.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def factors(n: int) -> list[int]:
    out, p = [], 2
    while p * p <= n:
        while n % p == 0:
            out.append(p)
            n //= p
        p += 1
    return out + ([n] if n > 1 else [])


def time_fft(be, n: int, repeat: int) -> float:
    xp = be.xp
    x = xp.ones((n, n, n), dtype=xp.complex64)
    be.fftn(x, overwrite_x=be.is_gpu)              # the plan (and its work area), not timed
    be.synchronize()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        be.fftn(x, overwrite_x=be.is_gpu)
        be.synchronize()
        best = min(best, time.perf_counter() - t0)
    del x
    be.free_pool()
    return best


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--sizes", type=int, nargs="+", default=[446, 448, 669, 672])
    ap.add_argument("--repeat", type=int, default=3)
    args = ap.parse_args(argv)
    from gpuvalid.backend import get_backend

    be = get_backend(args.device)
    rows = [(n, factors(n), time_fft(be, n, args.repeat)) for n in args.sizes]
    print(f"complex64 3-D FFT on {be.device}, best of {args.repeat}\n")
    print("| edge | prime factors | seconds | ratio to the fastest |\n|---|---|---|---|")
    fastest = min(s for _n, _f, s in rows)
    for n, f, s in rows:
        print(f"| {n} | {'·'.join(map(str, f))} | {s:.4f} | {s / fastest:.2f} |")
    for (n1, _f1, s1), (n2, _f2, s2) in zip(rows[::2], rows[1::2]):
        print(f"{n1}³ / {n2}³: {s1 / s2:.2f}× the time for {(n1 / n2) ** 3:.3f}× the voxels")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
