"""Level 1 local resolution (issue 12): seconds of sections 1.c–1.f on simulated half maps.

``python bench/bench_level1_local.py [--sizes 128,256] [--device cpu|cuda:0] [--append]``
``python bench/bench_level1_local.py --jobs cuda:0:128,cuda:0:256,cpu:128,cuda:0:384 --md out.md --json out.json``

Half maps of a real model (``shared/data/models/1oel.pdb``, Gaussian atoms, B = 60 Å², noise σ = the
signal's σ, independent per half), R = 3 Å; the primary map is their mean and the contour keeps 6 % of the
box.  Each section runs through its ``run(ctx1)`` (figures off); 1.e and 1.f share the half-map spectra,
charged to 1.e.  On a device each cell also gives the section's peak device memory per voxel of one half
map (:class:`gpuvalid.memory.PeakMeter`: the CuPy pool's high-water mark, what the context holds included;
no cuFFT work areas).  Reference column for 1.c: the direct local FSC, one box at a time in NumPy
(``numpy.fft`` on the full 40³ grid, complex128), timed on ``--direct-boxes`` boxes and scaled to every
selected voxel (marked "scaled"; 0 boxes: not timed).  ``--append`` adds the table to ``bench/RESULTS.md``.

``--jobs`` lists ``device:box`` runs in order (the device check: the GPU at 128³ first, which also warms
CuPy's kernels and cuFFT plans, then 256³, the CPU at 128³ for a same-machine ratio, then 384³); the
table and JSON are rewritten after every section, so a run stopped by a time limit keeps what it measured.
``--local-fsc-step K`` fixes 1.c's step (default: automatic, every voxel on a GPU).  ``--compare-engines
128,256`` times 1.c's two device engines (raw kernels, the default, and batched cuFFT) once more on their own
at those boxes on a GPU, with the fraction of voxels where they agree within 0.02 Å (a line under the table).
``--global`` first runs Level 1's global sections (1.a, 1.b, 1.g, 1.h) on the same context, as ``run_level1``
does, and drops their cached spectra before 1.c–1.f: a second table gives their seconds and device peaks, so
that one device run shows every Level 1 section's memory.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import time
from pathlib import Path

import numpy as np

from gpuvalid.backend import get_backend
from gpuvalid.context import MapContext, RunOptions
from gpuvalid.level1 import LOCAL_SECTIONS, SECTIONS1, prepare
from gpuvalid.level1.context import HalfMaps, Level1Context
from gpuvalid.level1.simhalves import simulate_halves
from gpuvalid.memory import PeakMeter

REPO = Path(__file__).resolve().parents[1]
_DATA = Path(os.environ.get("GPUVALID_DATA", REPO.parent / "shared" / "data"))
MODEL = next((m for m in (_DATA / "models" / "1oel.pdb", REPO / ".devdata" / "models" / "1oel.pdb",
                          REPO.parent / "shared" / "data" / "models" / "1oel.pdb") if m.is_file()),
             REPO.parent / "shared" / "data" / "models" / "1oel.pdb")
SECTIONS = [("1.c", "local_fsc"), ("1.d", "resmap"), ("1.e", "monores_half"), ("1.f", "monodir")]
GLOBAL_SECTIONS = [sid for sid, _t, m in SECTIONS1 if m is not None and sid not in LOCAL_SECTIONS]
RUN_ORDER = ["1.e", "1.f", "1.d", "1.c"]   # the least certain on a GPU (1.c, every voxel) last: a time limit
                                           # cuts it, not the others (1.f reuses 1.e's spectra either way)


def direct_box_seconds(h1, h2, soft, n_boxes: int, seed: int = 0) -> tuple[float, int]:
    """Seconds per box of the direct one-box-at-a-time local FSC, and the number of selected voxels."""
    sel = np.argwhere((soft >= 0.5))
    N = h1.shape
    sel = sel[np.all((sel >= 10) & (sel <= np.array(N) - 10), axis=1)]
    rng = np.random.default_rng(seed)
    pick = sel[rng.choice(len(sel), size=min(n_boxes, len(sel)), replace=False)]
    i = np.arange(20)
    w1 = 0.5 - 0.5 * np.cos(2 * np.pi * (i + 0.5) / 20)
    win = w1[:, None, None] * w1[None, :, None] * w1[None, None, :]
    f = np.fft.fftfreq(40)
    k = np.rint(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2) * 40).astype(int).ravel()
    t0 = time.perf_counter()
    for c in pick:
        sl = tuple(slice(ci - 10, ci + 10) for ci in c)
        F = []
        for h in (h1, h2):
            b = h[sl].astype(np.float64)
            P = np.zeros((40, 40, 40))
            P[:20, :20, :20] = (b - b.mean()) * win
            F.append(np.fft.fftn(P).ravel())
        cross = np.bincount(k, (F[0] * F[1].conj()).real)
        p1 = np.bincount(k, np.abs(F[0]) ** 2)
        p2 = np.bincount(k, np.abs(F[1]) ** 2)
        fsc = cross / np.sqrt(p1 * p2)
        below = np.flatnonzero(fsc[2:] < 0.5)
        _ = below[0] if below.size else None
    return (time.perf_counter() - t0) / max(len(pick), 1), len(sel)


_SIM: dict = {}


def simulated(box: int):
    """(voxel size, halves, primary) of the bench's 1oel simulation at ``box`` (cached per box)."""
    if box not in _SIM:
        ts = 1.0 if box <= 128 else 128.0 / box
        t0 = time.perf_counter()
        sim = simulate_halves(MODEL, ts, box, bfactor_A2=60.0, noise_rel=1.0, seed=0)
        _SIM[box] = (ts, sim.h1, sim.h2, sim.primary, time.perf_counter() - t0)
    return _SIM[box]


def compare_engines(be, ctx1, ts: float) -> dict:
    """Seconds of ``local_fsc`` at every voxel with each device engine, and their agreement.

    The raw-kernel engine runs twice: with its default chunk (``memory.l1_box_chunk``: 8 B per voxel of the map,
    at least ``KERNEL_MIN_CHUNK`` boxes) and with ``KERNEL_MAX_CHUNK``-box chunks (``"kernel_max"``), to see what
    the smaller launches cost; the two give the same map (each box is computed on its own).
    """
    from gpuvalid.level1.local_fsc import ENGINES, KERNEL_BOX_BYTES, KERNEL_MAX_CHUNK, local_fsc

    out, maps = {}, {}
    for eng, budget in [(e, None) for e in ENGINES] + [("kernel_max", KERNEL_MAX_CHUNK * KERNEL_BOX_BYTES)]:
        be.synchronize()
        t0 = time.perf_counter()
        r = local_fsc(be, ctx1.h1, ctx1.h2, ctx1.ctx0.soft_mask, ts, step=1, engine=eng.split("_")[0],
                      budget_bytes=budget)
        be.synchronize()
        out[eng] = time.perf_counter() - t0
        maps[eng] = r["map"]
    a, b = maps[ENGINES[0]], maps[ENGINES[1]]
    ok = np.isfinite(a) & np.isfinite(b)
    out["agree_0.02A"] = float(np.mean(np.abs(a[ok] - b[ok]) <= 0.02)) if ok.any() else None
    out["chunks_same_map"] = bool(np.array_equal(maps["kernel"], maps["kernel_max"], equal_nan=True))
    out["boxes"] = int(ok.sum())
    return out


def timed_section(be, module: str, ctx1, box: int) -> tuple:
    """Run a section's ``run(ctx1)`` and measure it.

    Returns (wall s, CPU s of this process, its result, its peak device memory in bytes per voxel of one half
    map: the device's high-water mark, None on the CPU).
    """
    t0, c0 = time.perf_counter(), time.process_time()
    with PeakMeter(be) as meter:
        res = importlib.import_module(module).run(ctx1)
        be.synchronize()
    return (time.perf_counter() - t0, time.process_time() - c0, res,
            None if meter.peak is None else meter.peak / box ** 3)


def run_size(be, box: int, direct_boxes: int, step: int | None = None, on_section=None,
             engines: bool = False, with_global: bool = False) -> dict:
    ts, h1, h2, P, sim_s = simulated(box)
    thr = float(np.quantile(P, 0.94))
    opts = RunOptions()
    opts.local_fsc_step = step
    ctx0 = MapContext(be, P, ts, thr, 3.0, opts)
    _ = ctx0.soft_mask.shape        # as Level 0 leaves it (no reference kept here: run_level1 may let it go)
    hm = HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (h1, h2), ("-", "-"), ((ts,) * 3, (ts,) * 3))
    ctx1 = Level1Context(ctx0, hm)
    ctx1.shed_level0()              # as run_level1
    _ = ctx1.h1.shape, ctx1.h2.shape   # the halves section holds them
    be.synchronize()
    row = {"box": box, "ts": ts, "device": be.device, "simulate_s": sim_s,
           "mask_voxels": int(be.to_host(be.xp.count_nonzero(ctx0.hard_mask)))}
    if with_global:            # as run_level1: the global sections first, then their cached spectra dropped
        row["global"] = {}
        for sid, _title, module in SECTIONS1:
            if module is None or sid in LOCAL_SECTIONS:
                continue
            t0, c0 = time.perf_counter(), time.process_time()
            try:                   # a failure here must not cost the local sections' rows
                w, c, res, peak = timed_section(be, module, ctx1, box)
                key = res.key
            except Exception as exc:  # noqa: BLE001 - reported in the table
                w, c, peak = time.perf_counter() - t0, time.process_time() - c0, None
                key = f"failed: {type(exc).__name__}: {exc}"
            row["global"][sid] = (w, c, key, peak)
            if on_section:
                on_section(row)
        ctx1.drop_spectra()
    mods = dict(SECTIONS)
    for sid in RUN_ORDER:
        prepare(ctx1, sid)          # what run_level1 lets go before the section (this bench's order differs)
        w, c, res, peak = timed_section(be, f"gpuvalid.level1.{mods[sid]}", ctx1, box)
        row[sid] = (w, c, res.values.get("percentiles_A"), res.values.get("step"), res.values.get("boxes"), peak)
        if on_section:
            on_section(row)
    if engines and be.is_gpu:
        row["1.c_engines"] = compare_engines(be, ctx1, ts)
        if on_section:
            on_section(row)
    if direct_boxes > 0:
        soft = be.to_host(ctx0.soft_mask)
        per_box, nsel = direct_box_seconds(h1, h2, soft, direct_boxes)
        row["direct_1c"] = (per_box * nsel, nsel, direct_boxes)
    ctx1.release()
    ctx0.release()
    be.free_pool()
    return row


def table(rows: list[dict], be=None) -> str:
    devs = sorted({r.get("device", "cpu") for r in rows})
    names = []
    for d in devs:
        info = get_backend(d).info()
        names.append(f"{d} ({info.get('device_name', d)})")
    mach = f"{platform.platform()}, {os.cpu_count()} CPU cores; " + ", ".join(names)
    out = ["## Level 1 local resolution 1.c–1.f (issue 12) — `python bench/bench_level1_local.py`", "",
           f"Simulated half maps of 1oel (B = 60 Å², noise σ = signal σ), R = 3 Å, contour keeping 6 % of the box, "
           "figures off; wall seconds (CPU seconds of this process in brackets; on a device also the peak device "
           "memory per voxel of one half map: the CuPy pool's high-water mark while the section ran, what the "
           f"context holds included). Machine: {mach}. The direct "
           "local FSC (one 40³ complex128 box at a time, NumPy) is timed on a sample of boxes and scaled to every "
           "selected voxel. GPU/CPU: the CPU row of the same box on this machine over the device row.", "",
           "| box (Ts) | device | 1.c local FSC | 1.c direct per-voxel (scaled) | 1.d ResMap-like | 1.e MonoRes | "
           "1.f directional | 1.c–1.f total | medians 1.c / 1.d / 1.e / 1.f (Å) |",
           "|---|---|---|---|---|---|---|---|---|"]
    cpu_rows = {r["box"]: r for r in rows if r.get("device", "cpu") == "cpu"}
    for r in rows:
        cells = []
        tot = 0.0
        ref = cpu_rows.get(r["box"]) if r.get("device", "cpu") != "cpu" else None
        for sid, _m in SECTIONS:
            if sid not in r:
                cells.append("not run (time limit)")
                continue
            w, c, p, step, boxes, peak = (tuple(r[sid]) + (None,))[:6]     # rows written before peaks: None
            tot += w
            extra = f", step {step}, {boxes} boxes" if sid == "1.c" else ""
            extra += "" if peak is None else f", peak {peak:.0f} B/voxel"
            ratio = f"; {ref[sid][0] / w:.0f}× the CPU" if (ref and sid in ref and w > 0) else ""
            cells.append(f"{w:.2f} ({c:.1f}{extra}{ratio})")
        if "direct_1c" in r:
            d, nsel, nb = r["direct_1c"]
            direct = f"{d:.0f} ({nsel} voxels, from {nb} boxes)"
        else:
            direct = "—"
        meds = " / ".join(f"{r[s][2][2]:.2f}" if (s in r and r[s][2]) else "—" for s, _ in SECTIONS)
        out.append(f"| {r['box']}³ ({r['ts']:.2f} Å, {r.get('mask_voxels', 0)} mask voxels) | "
                   f"{r.get('device', 'cpu')} | {cells[0]} | {direct} | "
                   f"{cells[1]} | {cells[2]} | {cells[3]} | {tot:.1f} | {meds} |")
    glob = [r for r in rows if r.get("global")]
    if glob:
        out += ["", "Level 1's global sections on the same halves, run first as `run_level1` runs them (their cached "
                "spectra dropped before 1.c–1.f): wall seconds (CPU seconds), the section's key result and, on a "
                "device, its peak device memory per voxel of one half map.", "",
                "| box | device | " + " | ".join(GLOBAL_SECTIONS) + " |", "|---|---|" + "---|" * len(GLOBAL_SECTIONS)]
        for r in glob:
            cells = []
            for sid in GLOBAL_SECTIONS:
                if sid not in r["global"]:
                    cells.append("not run")
                    continue
                w, c, key, peak = r["global"][sid]
                cells.append(f"{w:.2f} ({c:.1f}{'' if peak is None else f', peak {peak:.0f} B/voxel'}): {key}")
            out.append(f"| {r['box']}³ | {r.get('device', 'cpu')} | " + " | ".join(cells) + " |")
    eng = [r for r in rows if "1.c_engines" in r]
    if eng:
        out.append("")
        for r in eng:
            e = r["1.c_engines"]
            agree = "—" if e["agree_0.02A"] is None else f"{100 * e['agree_0.02A']:.2f} %"
            big = ("" if "kernel_max" not in e else f" ({e['kernel_max']:.2f} s in 4,096-box chunks, "
                   + ("the same map" if e.get("chunks_same_map") else "**a different map**") + ")")
            out.append(f"1.c engines at {r['box']}³ on {r['device']} ({e['boxes']} voxels): raw kernels "
                       f"{e['kernel']:.2f} s{big}, batched cuFFT {e['cufft']:.2f} s; voxels within 0.02 Å: {agree}.  ")
    return "\n".join(out) + "\n"


def write_outputs(rows: list[dict], md: str | None, js: str | None) -> None:
    if md:
        Path(md).write_text(table(rows))
    if js:
        Path(js).write_text(json.dumps(rows, indent=1, default=lambda o: o.tolist() if hasattr(o, "tolist") else str(o)))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--sizes", default="128")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--jobs", default=None, help="device:box,... in order (overrides --sizes/--device)")
    ap.add_argument("--direct-boxes", type=int, default=200)
    ap.add_argument("--local-fsc-step", type=int, default=None)
    ap.add_argument("--compare-engines", default="", help="boxes at which a GPU job also times both 1.c engines")
    ap.add_argument("--global", dest="with_global", action="store_true",
                    help="also run the global sections (1.a, 1.b, 1.g, 1.h) first, as run_level1 does")
    ap.add_argument("--md", default=None)
    ap.add_argument("--json", default=None)
    ap.add_argument("--append", action="store_true")
    a = ap.parse_args()
    if a.jobs:
        jobs = [(j.rsplit(":", 1)[0], int(j.rsplit(":", 1)[1])) for j in a.jobs.split(",") if j]
    else:
        jobs = [(a.device, int(s)) for s in a.sizes.split(",")]
    rows: list[dict] = []
    for dev, n in jobs:
        be = get_backend(dev)
        done = list(rows)

        def partial(row, done=done):
            write_outputs(done + [row], a.md, a.json)

        cmp = {int(x) for x in a.compare_engines.split(",") if x}
        rows.append(run_size(be, n, a.direct_boxes, a.local_fsc_step, partial, engines=n in cmp,
                             with_global=a.with_global))
        write_outputs(rows, a.md, a.json)
        print(table(rows), flush=True)
    text = table(rows)
    if a.append:
        with open(REPO / "bench" / "RESULTS.md", "a") as fh:
            fh.write("\n\n" + text)


if __name__ == "__main__":
    main()
