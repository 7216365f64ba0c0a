"""End-to-end benchmark: all eight sections (no figures) on CPU and GPU for archive-sized maps.

Maps: the real EMD-5168 (100³, 1.742 Å, t = 10, R = 6.6 Å) centred in an N³ box filled with its own
background noise (Gaussian with the mean, SD and nearest-neighbour correlation of the map's background:
voxels below t farther than 6 voxels from the contour), N from ``--sizes``; ``--real`` adds the real maps of
shared/data at their own size.  Per section: seconds on the CPU and on ``--device`` (after a warm-up run on
a small map: CUDA context, cuFFT plans and kernel compilation are not counted), their ratio, the device
high-water mark of the section (CuPy pool + torch allocator, :class:`gpuvalid.memory.PeakMeter`) in bytes
per voxel of the input map and of the larger of the input map and 0.e's 1 Å working grid, the memory
estimate of :mod:`gpuvalid.memory`, and whether the numbers agree within the GPU tests' tolerances; for the CPU
run, each section's resident-memory growth beside its host estimate (a second table).

    python bench/bench_e2e.py [--sizes 128 256 384 512 768] [--device cuda:0] [--cpu-max 384]
                              [--real] [--md out.md] [--json out.json]
    python bench/bench_e2e.py --compare gpu.json cpu.json    # device results of one run vs CPU results of another

``--device cpu`` runs the CPU only (one column); ``--cpu-max`` skips the CPU run above that box edge (the
GPU columns are still measured, the ratio is then "—").
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

from gpuvalid import memory  # noqa: E402
from gpuvalid.analyses import SECTIONS  # noqa: E402
from gpuvalid.backend import cuda_available, get_backend  # noqa: E402
from gpuvalid.context import MapContext  # noqa: E402
from gpuvalid.analyses.base import SectionResult, jsonable  # noqa: E402
from gpuvalid.selftest import TOLERANCE, compare, run_timed  # noqa: E402

DATA = Path(os.environ.get("GPUVALID_DATA", ROOT.parent / "shared" / "data"))
EMD5168 = ("emd_5168.map", 10.0, 6.6)


def background_model(V: np.ndarray, t: float) -> tuple[float, float, float]:
    """Mean, SD and lag-1 correlation (mean over the three axes) of the background of ``V``: voxels below
    ``t`` farther than 6 voxels from any voxel at or above ``t``."""
    from scipy import ndimage

    far = ndimage.distance_transform_edt(V < t) > 6
    b = V[far].astype(np.float64)
    mu, sd = float(b.mean()), float(b.std())
    cors = []
    for ax in range(3):
        a = np.moveaxis(V, ax, 0)
        m = np.moveaxis(far, ax, 0)
        both = m[1:] & m[:-1]
        x, y = a[1:][both] - mu, a[:-1][both] - mu
        cors.append(float(np.mean(x * y) / max(sd * sd, 1e-30)))
    return mu, sd, float(np.clip(np.mean(cors), 0.0, 0.95))


def _sigma_for_correlation(rho: float) -> float:
    """σ (voxels) of the Gaussian filter giving white noise the nearest-neighbour correlation ``rho``
    (for a Gaussian kernel, corr(1) = exp(−1/(4σ²)))."""
    return 0.0 if rho <= 1e-3 else float(np.sqrt(-1.0 / (4.0 * np.log(rho))))


def embedded_map(n: int, seed: int = 0):
    """EMD-5168 centred in an ``n³`` box of its own background noise: ``(V, Ts, t, R, name)``."""
    from gpuvalid.io import load_map_input

    f, t, R = EMD5168
    inp = load_map_input(DATA / f, threshold=t, resolution=R)
    V0 = inp.data
    if n <= max(V0.shape):
        return V0, inp.voxel_size, t, R, f"{f} ({'×'.join(map(str, V0.shape))})"
    return embed_in_noise(V0, t, n, seed), inp.voxel_size, t, R, f"EMD-5168 in {n}³ noise"


def embed_in_noise(V0: np.ndarray, t: float, n: int, seed: int = 0) -> np.ndarray:
    """``V0`` centred in an ``n³`` box (``n`` ≥ its largest edge) of Gaussian noise with the mean, SD and
    nearest-neighbour correlation of its background (:func:`background_model` at contour ``t``)."""
    from scipy import ndimage

    mu, sd, rho = background_model(V0, t)
    rng = np.random.default_rng(seed)
    noise = rng.standard_normal((n, n, n), dtype=np.float32)
    s = _sigma_for_correlation(rho)
    if s > 0:
        ndimage.gaussian_filter(noise, s, output=noise, mode="wrap")
        noise *= np.float32(1.0 / max(float(noise.std()), 1e-30))
    V = noise
    V *= np.float32(sd)
    V += np.float32(mu)
    o = [(n - m) // 2 for m in V0.shape]
    V[o[0]:o[0] + V0.shape[0], o[1]:o[1] + V0.shape[1], o[2]:o[2] + V0.shape[2]] = V0
    return V


def real_maps():
    """The maps of shared/data with a contour and a resolution (MANIFEST.tsv), at their own size."""
    from gpuvalid.io import load_map_input

    out = []
    for line in (DATA / "MANIFEST.tsv").read_text().splitlines()[1:]:
        c = line.split("\t")
        if len(c) < 7 or c[5] in ("-", "") or c[6] in ("-", "") or not (DATA / c[0]).is_file():
            continue
        try:
            inp = load_map_input(DATA / c[0], threshold=float(c[5]), resolution=float(c[6]))
        except Exception:
            continue
        out.append((lambda inp=inp, c=c: (inp.data, inp.voxel_size, inp.threshold, inp.resolution, c[0])))
    return out


def run_sections(be, V, ts, t, R, only=None, host: dict | None = None):
    """``{sid: (SectionResult, seconds)}`` for one map on one backend (figures off).

    The traceback of a section's internal error goes to stderr (the table gives its one-line reason).
    ``host`` (a dict, CPU runs) receives each section's resident-memory growth in bytes (sampled every 2 ms;
    a lower bound of its peak, as the allocator may reuse what an earlier section freed) and its host
    estimate, made just before it ran (torch's import counts until a section has loaded it).
    """
    ctx = MapContext(be, V, ts, t, R, name="bench")
    errors: list[str] = []
    if host is None:
        out = run_timed(be, ctx, SECTIONS, only, error_log=errors)
    else:
        from host_peaks import RssPeak

        out = {}
        for sec in SECTIONS:
            est = memory.estimate_host_bytes(sec[0], V.shape, ts, R)
            base = memory.rss_bytes()
            with RssPeak() as peak:
                got = run_timed(be, ctx, [sec], only, error_log=errors)
            out.update(got)
            host.update({sid: (peak.peak - base, est) for sid in got})
    ctx.release()
    be.free_pool()
    for e in errors:
        if "Traceback" in e:
            print(f"# {be.device}: {e}", file=sys.stderr, flush=True)
    return out


def bench_one(name, V, ts, t, R, dev, cpu, run_cpu: bool, only=None) -> list[dict]:
    n = V.size
    n1 = memory.working_voxels(V.shape, ts)
    est = memory.estimate_run(V.shape, ts, R)
    got = run_sections(dev, V, ts, t, R, only) if dev.is_gpu else None
    host: dict = {}
    ref = run_sections(cpu, V, ts, t, R, only, host) if (run_cpu or not dev.is_gpu) else None
    rows = []
    base = ref if ref is not None else got
    for sid in base:
        r_cpu, s_cpu = ref[sid] if ref else (None, None)
        r_dev, s_dev = got[sid] if got else (None, None)
        peak = r_dev.peak_device_bytes if r_dev is not None else None
        agree = "—"
        if r_cpu is not None and r_dev is not None:
            ok, detail = compare(r_cpu, r_dev, *TOLERANCE.get(sid, (1e-5, 1e-9)))
            agree = "yes" if ok else f"NO: {detail}"
        res = r_dev or r_cpu
        host_bytes, host_est = host.get(sid, (None, None))
        rows.append(dict(map=name, box="×".join(map(str, V.shape)), voxels=n, work_voxels=n1, section=sid,
                         status=res.status, reason=_reasons(r_cpu, r_dev),
                         device_note=res.values.get("device", ""), cpu_s=s_cpu, dev_s=s_dev,
                         peak_bytes=peak, estimate_bytes=est.get(sid), agree=agree,
                         host_bytes=host_bytes, host_estimate_bytes=host_est,
                         result_cpu=_stored(r_cpu), result_dev=_stored(r_dev)))
    return rows


def _stored(res) -> dict | None:
    """What :func:`gpuvalid.selftest.compare` reads of a result (status, warnings, values), for the JSON rows."""
    return None if res is None else {"status": res.status, "warnings": list(res.warnings),
                                     "values": jsonable(res.values)}


def _restored(sid: str, d: dict) -> SectionResult:
    return SectionResult(sid, sid, status=d["status"], warnings=list(d["warnings"]), values=d["values"])


def compare_runs(dev_json: Path, cpu_json: Path) -> list[tuple[str, str, str]]:
    """``(map, section, agreement)`` of the device results of one run's JSON against the CPU results of
    another's, for each map and section both hold (the device check's 384³ map: GPU in step 5a, CPU in 5d).

    A first file from a CPU-only run (a rehearsal) gives its CPU results.
    """
    dev_rows = json.loads(Path(dev_json).read_text())["rows"]
    cpu_rows = {(r["map"], r["section"]): r for r in json.loads(Path(cpu_json).read_text())["rows"]
                if r.get("result_cpu")}
    side = "result_dev" if any(r.get("result_dev") for r in dev_rows) else "result_cpu"   # a CPU-only first run
    out = []
    for r in dev_rows:
        c = cpu_rows.get((r["map"], r["section"]))
        if c is None or not r.get(side):
            continue
        sid = r["section"]
        ok, detail = compare(_restored(sid, c["result_cpu"]), _restored(sid, r[side]),
                             *TOLERANCE.get(sid, (1e-5, 1e-9)))
        out.append((r["map"], sid, "yes" if ok else f"NO: {detail}"))
    return out


def _reasons(r_cpu, r_dev) -> str:
    """Why a section was not measured (or does not apply), per device where they differ ("" when measured)."""
    ran = {k: r for k, r in (("CPU", r_cpu), ("device", r_dev)) if r is not None}
    got = {k: r.reason for k, r in ran.items() if r.status not in ("ok", "warnings") and r.reason}
    if not got:
        return ""
    if len(ran) == 1 or (len(got) == len(ran) and len(set(got.values())) == 1):
        return next(iter(got.values()))
    return "; ".join(f"{k}: {v}" for k, v in got.items())


def _fmt(rows, device: str) -> str:
    head = ["map", "box", "section", "status", "CPU s", f"{device} s", "ratio CPU/GPU", "peak B/voxel (input)",
            "peak B/voxel (max(input, 1 Å grid))", "estimate GiB", "agree"]
    keep = [0, 1, 2, 3, 4, 9] if device == "cpu" else list(range(len(head)))  # CPU only: no device columns
    head = [head[i] for i in keep]
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    by_map: dict = {}
    for r in rows:
        by_map.setdefault((r["map"], r["box"]), []).append(r)
    for (m, box), rs in by_map.items():
        for r in rs + [_total(rs)]:
            c, d, p = r["cpu_s"], r["dev_s"], r["peak_bytes"]
            ratio = f"{c / d:.1f}×" if (c and d) else "—"
            status = r["status"] + (f" ({r['device_note']})" if r.get("device_note") else "")
            cells = [m, box, r["section"], status, f"{c:.2f}" if c is not None else "—",
                     f"{d:.3f}" if d is not None else "—", ratio,
                     f"{p / r['voxels']:.0f}" if p is not None else "—",
                     f"{p / max(r['voxels'], r['work_voxels']):.0f}" if p is not None else "—",
                     f"{r['estimate_bytes'] / 2**30:.2f}" if r.get("estimate_bytes") else "—", r["agree"]]
            out.append("| " + " | ".join(cells[i] for i in keep) + " |")
    why = [f"- {r['map']}, {r['section']} ({r['status']}): {r['reason']}" for r in rows
           if r.get("reason") and r["status"] != "not_applicable"]
    return "\n".join(out + ([""] + why if why else []) + _fmt_host(rows))


def _fmt_host(rows) -> list[str]:
    """The CPU run's host memory per section against ``memory.estimate_host_bytes`` (the CPU path's guard)."""
    rs = [r for r in rows if r.get("host_bytes") is not None]
    if not rs:
        return []
    out = ["", "| map | section | CPU run: RSS growth MiB | host estimate MiB | within |", "|---|---|---|---|---|"]
    for r in rs:
        h, e = r["host_bytes"], r["host_estimate_bytes"]
        out.append(f"| {r['map']} | {r['section']} | {h / 2**20:.0f} | {e / 2**20:.0f} | {'yes' if h <= e else 'NO'} |")
    return out


def _total(rs) -> dict:
    def tot(k):
        v = [r[k] for r in rs]
        return None if any(x is None for x in v) else sum(v)

    peaks = [r["peak_bytes"] for r in rs if r["peak_bytes"] is not None]
    bad = [r["section"] for r in rs if r["agree"].startswith("NO")]
    agree = "—" if all(r["agree"] == "—" for r in rs) else ("yes" if not bad else "NO: " + ", ".join(bad))
    return dict(rs[0], section="**all**", status="", reason="", device_note="", cpu_s=tot("cpu_s"), dev_s=tot("dev_s"),
                peak_bytes=max(peaks) if peaks else None, estimate_bytes=None, agree=agree)


def _write(args, machine: str, rows: list[dict], device: str) -> None:
    if args.md:
        args.md.write_text(f"machine: {machine}\n\n{_fmt(rows, device)}\n")
    if args.json:
        args.json.write_text(json.dumps({"machine": machine, "rows": rows}, indent=1, default=str))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[128, 256, 384, 512, 768])
    ap.add_argument("--device", default="auto", help="cuda:N, auto or cpu")
    ap.add_argument("--cpu-max", type=int, default=384, help="largest box edge also run on the CPU")
    ap.add_argument("--real", action="store_true", help="also the real maps of shared/data")
    ap.add_argument("--sections", nargs="*", default=None, help="only these section ids")
    ap.add_argument("--md", type=Path, help="write the Markdown table here too")
    ap.add_argument("--json", type=Path, help="write the rows as JSON here")
    ap.add_argument("--compare", type=Path, nargs=2, metavar=("DEVICE_JSON", "CPU_JSON"),
                    help="run nothing: the agreement of the device results of one --json file with the CPU "
                         "results of another, per map and section")
    args = ap.parse_args(argv)
    if args.compare:
        pairs = compare_runs(*args.compare)
        print("| map | section | agree (device of the first file vs CPU of the second) |\n|---|---|---|")
        for m, sid, a in pairs:
            print(f"| {m} | {sid} | {a} |")
        if not pairs:
            print("no map and section in both files")
        return 1 if (not pairs or any(a.startswith("NO") for _, _, a in pairs)) else 0

    dev = get_backend("cuda:0" if args.device == "auto" and cuda_available() else
                      ("cpu" if args.device == "auto" else args.device))
    cpu = get_backend("cpu")
    only = set(args.sections) if args.sections else None
    info = dev.info()
    machine = (f"{platform.node() or 'host'}: {os.cpu_count()} CPU cores ({cpu.info().get('device_name')}); "
               f"device {dev.device}" + (f" = {info.get('device_name')}, {info.get('memory_total_GiB')} GiB, "
                                        f"CuPy {info.get('cupy')}, CUDA runtime {info.get('cuda_runtime')}"
                                        if dev.is_gpu else " (no GPU)"))
    print(f"# machine: {machine}", flush=True)
    if dev.is_gpu:  # warm-up on a small map: context, plans, kernels
        V, ts, t, R, _ = embedded_map(128)
        run_sections(dev, V, ts, t, R, only)
    cases = []
    if args.real:
        cases += real_maps()
    cases += [(lambda n=n: embedded_map(n)) for n in args.sizes]
    rows = []
    for make in cases:
        t0 = time.perf_counter()
        V, ts, t, R, name = make()
        run_cpu = max(V.shape) <= args.cpu_max
        rows += bench_one(name, V, ts, t, R, dev, cpu, run_cpu, only)
        print(f"# {name}: done in {time.perf_counter() - t0:.1f} s", flush=True)
        print(_fmt([r for r in rows if r["map"] == name], dev.device), flush=True)
        del V
        _write(args, machine, rows, dev.device)  # after every map: a run stopped by a time limit keeps its rows
    return 1 if any(r["agree"].startswith("NO") for r in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
