"""Device memory, host/device copies and host work of each Level 0 section's GPU code path, measured on the
CuPy stand-in (tests/standin; no GPU needed): what a GPU run would hold and move, before a GPU session.

    python bench/standin_profile.py --sizes 256 384 [--sections 0.e 0.f] [--top 5]

For each section (on a fresh context, as ``bench_e2e.run_sections``): the device high-water mark in bytes
per voxel of the input map and of the larger of the input and 0.e's 1 Å working grid (the issue-14
measure), the buffers alive at that peak with the line that allocated each, the bytes copied device→host
and host→device (in map sizes), and the seconds spent in NumPy/SciPy on host arrays called straight from
gpuvalid code (host work a GPU run would do on the CPU).  Not seen: cuFFT work areas, torch's activations,
speed (the stand-in computes on the CPU).  Maps: EMD-5168 centred in N³ boxes of its own background noise.
"""

from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(ROOT), str(ROOT / "bench")]

from tests import standin  # noqa: E402


def host_seconds(prof: cProfile.Profile) -> float:
    """Cumulative seconds of NumPy/SciPy functions whose caller is a gpuvalid frame (not the stand-in)."""
    total = 0.0
    for func, (_cc, _nc, _tt, _ct, callers) in pstats.Stats(prof).stats.items():
        if not ("numpy" in func[0] or "scipy" in func[0]):
            continue
        for caller, (_a, _b, _c, cct) in callers.items():
            if "/gpuvalid/" in caller[0] and "/tests/" not in caller[0]:
                total += cct
    return total


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--sections", nargs="*", default=None)
    ap.add_argument("--top", type=int, default=4, help="buffers listed at each peak")
    args = ap.parse_args(argv)
    be = standin.install()
    import bench_e2e as B
    from gpuvalid import memory
    from gpuvalid.analyses import SECTIONS

    for n in args.sizes:
        V, ts, t, R, name = B.embedded_map(n)
        grid = max(memory.working_voxels(V.shape, ts), V.size)
        print(f"\n## {name}: {V.size / 1e6:.1f} M input voxels, {grid / 1e6:.1f} M in the larger grid\n")
        print("| section | status | peak B/voxel (input) | peak B/voxel (larger grid) | estimate B/voxel (input) |"
              " d2h maps | h2d maps | host NumPy s |")
        print("|---|---|---|---|---|---|---|---|")
        notes = []
        for sid, _title, _mod in SECTIONS:
            if args.sections and sid not in args.sections:
                continue
            standin.trace(True)
            prof = cProfile.Profile()
            prof.enable()
            res = B.run_sections(be, V, ts, t, R, only={sid})[sid][0]
            prof.disable()
            peak = res.peak_device_bytes or 0
            est = memory.estimate_bytes(sid, V.shape, ts, R)
            cp = standin.TRACE["copies"]
            d2h = sum(b for (d, _s), (_c, b) in cp.items() if d == "d2h") / V.nbytes
            h2d = sum(b for (d, _s), (_c, b) in cp.items() if d == "h2d") / V.nbytes
            print(f"| {sid} | {res.status} | {peak / V.size:.1f} | {peak / grid:.1f} | {est / V.size:.1f} | {d2h:.2f} |"
                  f" {h2d:.2f} | {host_seconds(prof):.2f} |")
            notes += [f"{sid}: {b / V.size:6.2f} B/voxel  {site}" for b, site in standin.TRACE["live"][:args.top]]
        standin.trace(False)
        print("\nBuffers alive at each section's peak (bytes per input voxel, allocating line):\n")
        print("\n".join(f"    {line}" for line in notes))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
