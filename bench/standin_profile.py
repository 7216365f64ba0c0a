"""Device memory, host/device copies and host work of each Level 0 section's GPU code path, measured on the
CuPy stand-in (tests/standin; no GPU needed): what a GPU run would hold and move, before a GPU session.

    python bench/standin_profile.py --sizes 256 384 [--sections 0.e 0.f] [--top 5] [--level1] [--level1-run]
    python bench/standin_profile.py --sizes 128 --whole-run
    python bench/standin_profile.py --sizes 384 --level1-run --sections 1.c --stub-local-fsc
    python bench/standin_profile.py --launches --sizes 384 [--level1]

``--launches`` counts instead what a GPU run's time is made of besides arithmetic: per section, the device
operations it would launch (CuPy element-wise/reduction/copy kernels, raw kernels, cuFFT transforms,
cupyx.ndimage calls), the points where the host waits for the device (a device value read as a number, a
``get``, a data-sized result), the bytes those operations read and write, and a floor on the section's GPU
seconds from a stated model (:func:`floor_seconds`), with the gpuvalid lines that launch the most.
``--level1`` does the same for the Level 1 sections on two simulated half maps of the same box (without
``--launches``: their device high-water marks, per voxel of one half map, with the buffers alive at each).
``--level1-run`` measures the same maps through one ``run_level1`` instead (its run order, and what it frees
between sections): each section's high-water mark with what the context holds; 1.c only when ``--sections``
names it (its raw kernels run as NumPy transcriptions on the stand-in: slow).  ``--whole-run`` runs the
whole validation of those maps with their halves (``pipeline.validate``: the Level 0 sections, then Level 1 on
what they leave in the primary map's context) and prints every section's high-water mark, per voxel of one
half map; 1.c likewise only when ``--sections`` names it.  ``--stub-local-fsc`` replaces 1.c's two raw kernels
by no-ops (every shell sum 1): its buffers are allocated as in a real run, but no FSC is computed, so 1.c's
peak can be counted at 256³–384³ in seconds (its numbers then mean nothing).

For each section (on a fresh context, as ``bench_e2e.run_sections``): the device high-water mark in bytes
per voxel of the input map and of the larger of the input and 0.e's 1 Å working grid (the issue-14
measure), the buffers alive at that peak with the line that allocated each, the bytes copied device→host
and host→device (in map sizes), and the seconds spent in NumPy/SciPy on host arrays called straight from
gpuvalid code (host work a GPU run would do on the CPU).  Not seen: cuFFT work areas, torch's activations,
speed (the stand-in computes on the CPU).  Maps: EMD-5168 centred in N³ boxes of its own background noise.
"""

from __future__ import annotations

import argparse
import contextlib
import cProfile
import pstats
import sys
from pathlib import Path

import numpy as np

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


# The floor model of --launches (an H100 SXM; assumptions, not measurements: see docs/gpu.md):
LAUNCH_S = 8e-6        # host time to launch one CuPy kernel (Python dispatch + cuLaunchKernel)
NDIMAGE_S = 30e-6      # one cupyx.scipy.ndimage call (argument checks, a few kernels)
FFT_S = 30e-6          # one cuFFT transform (plan-cache lookup, execution call)
SYNC_S = 20e-6         # one host wait: the device queue drains, then a small copy back
HBM_BPS = 2.3e12       # bytes/s the kernels reach (≈ 70 % of the H100's 3.35 TB/s)
NET_FLOPS = 10e12      # float32 (no TF32) 3-D convolutions of 8–16 channels in cuDNN, flop/s (≈ 15 % of peak)
FFT_PASSES = 3         # a 3-D cuFFT transform reads and writes its array about this many times


def floor_seconds(ops: dict) -> tuple[float, float, float]:
    """``(host_s, device_s, floor_s)``: the host's launch and wait time, the device's memory time, and the
    floor max(host, device) + waits (launches are asynchronous: the host and the device overlap until the
    host waits).  ``ops``: ``standin.TRACE["ops"]``."""
    per = {"kernel": LAUNCH_S, "raw": LAUNCH_S, "ndimage": NDIMAGE_S, "fft": FFT_S, "h2d": LAUNCH_S, "sync": 0.0,
           "net": 0.0}
    host = sum(per.get(k, LAUNCH_S) * c for (k, _s), (c, _b) in ops.items())
    waits = sum(SYNC_S * c for (k, _s), (c, _b) in ops.items() if k == "sync")
    dev = sum(b * (FFT_PASSES if k == "fft" else 1) for (k, _s), (_c, b) in ops.items() if k != "net") / HBM_BPS
    dev += sum(b for (k, _s), (_c, b) in ops.items() if k == "net") / NET_FLOPS
    return host + waits, dev, max(host, dev) + waits


def net_flops(net, shape) -> int:
    """Floating-point operations (2 per multiply-add) of ``net``'s convolutions on an input of ``shape``
    (B, 1, D, H, W): each valid 3-D convolution shrinks every axis by its kernel size − 1."""
    import torch

    b, dims, flops = int(shape[0]), [int(v) for v in shape[2:]], 0
    for m in net.modules():
        if isinstance(m, torch.nn.Conv3d):
            k = m.kernel_size
            dims = [d - (kk - 1) for d, kk in zip(dims, k)]
            flops += 2 * b * int(np.prod(dims)) * m.in_channels * m.out_channels * int(np.prod(k))
    return flops


def count_network() -> None:
    """Count each network call as one "net" operation whose "bytes" are its flops (see floor_seconds)."""
    from gpuvalid.models import infer

    run = infer._run_net
    if getattr(run, "counted", False):
        return

    def counted(net, blk, xp):
        standin._op("net", net_flops(net, blk.shape))
        return run(net, blk, xp)

    counted.counted = True
    infer._run_net = counted


def launch_row(sid: str, status: str, ops: dict) -> tuple[str, list[str]]:
    n = {k: 0 for k in ("kernel", "raw", "fft", "ndimage", "sync")}
    for (k, _s), (c, _b) in ops.items():
        n[k] = n.get(k, 0) + c
    host, dev, floor = floor_seconds(ops)
    gb = sum(b for (k, _s), (_c, b) in ops.items() if k != "net") / 1e9
    tf = sum(b for (k, _s), (_c, b) in ops.items() if k == "net") / 1e12
    row = (f"| {sid} | {status} | {n['kernel']} | {n['raw']} | {n['fft']} | {n['ndimage']} | {n['sync']} | {gb:.1f} |"
           f" {tf:.3g} | {host:.3f} | {dev:.3f} | {floor:.3f} |")
    by_site: dict = {}
    for (k, site), (c, b) in ops.items():
        v = by_site.setdefault(site, [0, 0])
        v[0] += c
        v[1] += b
    return row, sorted([f"{sid}: {c:6d} ops {b / 1e9:7.2f} GB  {site}" for site, (c, b) in by_site.items()],
                       key=lambda line: -int(line.split()[1]))


LAUNCH_HEAD = ("| section | status | kernels | raw | FFTs | ndimage | host waits | GB touched | network Tflop | host s |"
               " device s | floor s |\n|---|---|---|---|---|---|---|---|---|---|---|---|")


def traced_rows(runs, top: int, with_total: bool) -> None:
    """Print one table row per ``(sid, run)`` of ``runs`` (``run()`` returns the section's result), each
    run traced on its own, with ``with_total`` a row of their sum, then the lines that launch the most."""
    print(LAUNCH_HEAD)
    notes, total = [], {}
    for sid, run in runs:
        standin.trace(True)
        res = run()
        row, lines = launch_row(sid, res.status, standin.TRACE["ops"])
        for k, v in standin.TRACE["ops"].items():
            total[k] = [a + b for a, b in zip(total.get(k, [0, 0]), v)]
        print(row, flush=True)
        notes += lines[:top]
    standin.trace(False)
    if total and with_total:
        print(launch_row("**all**", "", total)[0])
    print("\nLines launching the most operations:\n")
    print("\n".join(f"    {line}" for line in notes))


def launches(args, be) -> int:
    import bench_e2e as B
    from gpuvalid.analyses import SECTIONS

    count_network()
    for n in args.sizes:
        V, ts, t, R, name = B.embedded_map(n)
        print(f"\n## {name}: {V.size / 1e6:.1f} M input voxels — device operations (model floor, not a measurement)\n")
        traced_rows([(sid, lambda sid=sid: B.run_sections(be, V, ts, t, R, only={sid})[sid][0])
                     for sid, _title, _mod in SECTIONS if not args.sections or sid in args.sections], args.top, True)
        if args.level1:
            level1_launches(n, be, args)
    return 0


def level1_launches(n: int, be, args) -> None:
    """Every Level 1 section on the simulated half maps of ``bench_level1_local`` (1oel, n³ box)."""
    import bench_level1_local as L
    from gpuvalid.context import MapContext, RunOptions
    from gpuvalid.level1 import SECTIONS1
    from gpuvalid.level1.context import HalfMaps, Level1Context
    from gpuvalid.runner import run_section

    ts, h1, h2, P, _ = L.simulated(n)
    ctx0 = MapContext(be, P, ts, float(np.quantile(P, 0.94)), 3.0, RunOptions())
    ctx1 = Level1Context(ctx0, HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (h1, h2), ("-", "-"), ((ts,) * 3,) * 2))
    print(f"\n## Level 1, two simulated {n}³ half maps (1oel, {ts:g} Å) — device operations (model floor)\n")
    traced_rows([(sid, lambda sid=sid, title=title, mod=mod: run_section(mod, sid, title, ctx1))
                 for sid, title, mod in SECTIONS1
                 if mod is not None and (not args.sections or sid in args.sections)], args.top, False)
    ctx1.release()
    ctx0.release()


def stub_local_fsc(be) -> None:
    """Make ``be.kernel`` return no-ops for ``kernels/local_fsc.cu``: ``lfsc_planes`` leaves its planes as they
    are and ``lfsc_shells`` sets every shell sum to 1 (every FSC 1), so that 1.c allocates what it does in a
    real run without the stand-in's NumPy transcription of the kernels (3,000 s at 256³)."""
    from gpuvalid.level1.local_fsc import KERNELS

    real = type(be).kernel

    def kernel(self, filename, name, *a, **k):
        if filename != KERNELS:
            return real(self, filename, name, *a, **k)

        def noop(grid, block, args):
            if name == "lfsc_shells":
                args[2].fill(1.0)
        return noop

    type(be).kernel = kernel


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="+", default=[256])
    ap.add_argument("--sections", nargs="*", default=None)
    ap.add_argument("--top", type=int, default=4, help="buffers (or launching lines) listed per section")
    ap.add_argument("--launches", action="store_true", help="count device operations and host waits instead")
    ap.add_argument("--level1", action="store_true",
                    help="also the Level 1 sections (two simulated half maps of the same box)")
    ap.add_argument("--level1-run", action="store_true",
                    help="also the Level 1 sections through one run_level1 (its order and what it frees)")
    ap.add_argument("--whole-run", action="store_true",
                    help="only the whole validation with half maps (Level 0, then Level 1), every section's peak")
    ap.add_argument("--stub-local-fsc", action="store_true",
                    help="1.c's raw kernels as no-ops: its device memory only, its numbers meaningless")
    args = ap.parse_args(argv)
    be = standin.install()
    if args.stub_local_fsc:
        stub_local_fsc(be)
    if args.launches:
        return launches(args, be)
    if args.whole_run:
        for n in args.sizes:
            whole_run_peaks(n, be, args)
        return 0
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
        if args.level1:
            level1_peaks(n, be, args)
        if args.level1_run:
            level1_run_peaks(n, be, args)
    return 0


def level1_peaks(n: int, be, args) -> None:
    """Device high-water mark of each Level 1 section on the simulated half maps of ``bench_level1_local``,
    in bytes per voxel of one half map and per voxel of its mask, with the buffers alive at the peak."""
    import bench_level1_local as L
    from gpuvalid.context import MapContext, RunOptions
    from gpuvalid.level1 import SECTIONS1
    from gpuvalid.level1.context import HalfMaps, Level1Context
    from gpuvalid.runner import run_section

    ts, h1, h2, P, _ = L.simulated(n)
    ctx0 = MapContext(be, P, ts, float(np.quantile(P, 0.94)), 3.0, RunOptions())
    ctx1 = Level1Context(ctx0, HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (h1, h2), ("-", "-"), ((ts,) * 3,) * 2))
    print(f"\n## Level 1, two simulated {n}³ half maps (1oel, {ts:g} Å)\n")
    print("| section | status | peak B/voxel (one half) | estimate B/voxel |\n|---|---|---|---|")
    notes = []
    for sid, title, mod in SECTIONS1:
        if mod is None or (args.sections and sid not in args.sections):
            continue
        standin.trace(True)
        res = run_section(mod, sid, title, ctx1)
        peak = res.peak_device_bytes or 0
        est = res.estimated_device_bytes or 0
        print(f"| {sid} | {res.status} | {peak / P.size:.1f} | {est / P.size:.1f} |", flush=True)
        notes += [f"{sid}: {b / P.size:6.2f} B/voxel  {site}" for b, site in standin.TRACE["live"][:args.top]]
    standin.trace(False)
    print("\nBuffers alive at each section's peak (bytes per voxel of one half, allocating line):\n")
    print("\n".join(f"    {line}" for line in notes))
    ctx1.release()
    ctx0.release()


@contextlib.contextmanager
def simulated_halves(n: int, wanted: set):
    """Yield ``(ts, P, paths)``: the simulated primary map and half maps of ``bench_level1_local`` at ``n``³, the
    halves written to a temporary folder, with only the Level 1 sections in ``wanted`` run meanwhile."""
    import tempfile

    import bench_level1_local as L

    import gpuvalid.level1 as L1
    from gpuvalid.io.mrc import write_mrc

    ts, h1, h2, P, _ = L.simulated(n)
    saved = L1.SECTIONS1
    with tempfile.TemporaryDirectory() as tmp:
        paths = [write_mrc(Path(tmp) / f"h{i}.mrc", h, ts) for i, h in enumerate((h1, h2), 1)]
        L1.SECTIONS1 = [(sid, t, m if sid in wanted else None) for sid, t, m in saved]   # the others: not run
        try:
            yield ts, P, paths
        finally:
            L1.SECTIONS1 = saved


def peak_rows(sections: dict, voxels: int, key: bool = False) -> None:
    """Print each section's status, peak (bytes per voxel of one half map), seconds (and key) as table rows."""
    for sid, res in sections.items():
        peak = "—" if res.peak_device_bytes is None else f"{res.peak_device_bytes / voxels:.1f}"
        print(f"| {sid} | {res.status} | {peak} | {res.seconds:.2f} |" + (f" {res.key} |" if key else ""))


def level1_run_peaks(n: int, be, args) -> None:
    """Print the device high-water mark of each Level 1 section in one ``run_level1``.

    On the simulated half maps of ``bench_level1_local``, in bytes per voxel of one half map, what the context
    holds included.
    """
    import gpuvalid.level1 as L1
    from gpuvalid.context import MapContext, RunOptions

    wanted = set(args.sections) if args.sections else {sid for sid, _t, _m in L1.SECTIONS1 if sid != "1.c"}
    with simulated_halves(n, wanted) as (ts, P, paths):
        ctx0 = MapContext(be, P, ts, float(np.quantile(P, 0.94)), 3.0, RunOptions())
        _ = ctx0.soft_mask.shape    # as Level 0 leaves it (no reference kept here: run_level1 may let it go)
        out, _info = L1.run_level1(ctx0, paths)
    print(f"\n## Level 1 through run_level1, two simulated {n}³ half maps (1oel, {ts:g} Å)\n")
    print("| section | status | peak B/voxel (one half) | s | key |\n|---|---|---|---|---|")
    peak_rows(out, P.size, key=True)
    print("estimates:", out["1"].values.get("resolution_estimates_A"))
    ctx0.release()


def whole_run_peaks(n: int, be, args) -> None:
    """Print the device high-water mark of every section in one whole validation with half maps.

    ``pipeline.validate`` on the simulated primary map and half maps of ``bench_level1_local`` (contour at the
    94th percentile, R = 3 Å, no figures), in bytes per voxel of one half map, what the contexts hold included;
    1.c only when ``--sections`` names it.
    """
    from gpuvalid.context import MapInput
    from gpuvalid.pipeline import validate

    wanted = set(args.sections or []) | {"1.a", "1.b", "1.d", "1.e", "1.f", "1.g", "1.h"}
    with simulated_halves(n, wanted) as (ts, P, paths):
        inp = MapInput(paths[0].parent / "primary.mrc", P, ts, float(np.quantile(P, 0.94)), 3.0, "-")
        rep = validate(inp, be, None, figures=False, halves=paths)
    print(f"\n## Whole validation with half maps, simulated {n}³ maps (1oel, {ts:g} Å)\n")
    print("| section | status | peak B/voxel (one half) | s |\n|---|---|---|---|")
    peak_rows(rep.sections, P.size)


if __name__ == "__main__":
    raise SystemExit(main())
