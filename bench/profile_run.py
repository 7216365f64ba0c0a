"""Where the time goes inside each Level 0 section: one cProfile'd run of all eight sections (no figures).

The map is the one of ``bench/bench_e2e.py``: EMD-5168 (1.742 Å, t = 10, R = 6.6 Å) centred in an N³ box of
its own background noise (its own 100³ box for N ≤ 100); ``--map synthetic`` takes the helix bundle of
``gpuvalid selftest`` instead (no data needed), embedded the same way. Two runs, each in its own process after a
warm-up run of every section on a small map (CUDA context, kernel compilation, cuFFT plans, network weights):

1. a child process started with ``CUDA_LAUNCH_BLOCKING=1`` (set before CuPy or torch initialise) runs each
   section under cProfile: every kernel launch waits for its kernel, so device time is charged to the Python
   function that launched it. This inflates the totals (host and device no longer overlap; the profiler adds
   its own overhead per call), so the profiles say *where*, the next run says *how long*;
2. this process, no launch blocking and no profiler: wall seconds per section, synchronised after each, as
   ``bench_e2e.run_sections`` measures them.

It writes one text file, ``OUT/profile_<N>.txt`` (a few tens of KB): the seconds per section, then per section
the top functions by cumulative and by own time (``tottime``), then all sections together by own time; paths are
relative to the repository, to site-packages or to the standard library. The profiles are written first and
section by section, so a run stopped by a time limit keeps what it measured.

    python bench/profile_run.py [--device cuda:0] [--size 384] [--out DIR] [--top 25] [--map emd5168|synthetic]
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import platform
import pstats
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

WARMUP_MAX = 128  # edge of the warm-up map (bench_e2e warms up at 128³ too)
LABEL_MAX = 150  # characters of a function's name in the tables
OUTSIDE = "setup/release"  # MapContext before the first section, ctx.release() and free_pool() after the last
PENDING = "not measured: the run stopped before this table (time limit?); the profiles below end where it stopped\n\n"
PROFILES_HEADING = (
    "## Profiles (cProfile, CUDA_LAUNCH_BLOCKING=1)\n\n"
    "Each kernel launch waits for its kernel, so a function's time includes the device time of what it launched;\n"
    "this serialises host and device and, with the profiler's overhead, inflates every total: read the profiles\n"
    "for where the time goes, the table above for how long a section takes.\n\n")


def make_map(kind: str, n: int):
    """``(V, Ts, t, R, name)``: EMD-5168 (``bench_e2e.embedded_map``) or the selftest's synthetic helix bundle,
    centred in an ``n³`` box of its own background noise (at its own size when ``n`` is not larger)."""
    import bench_e2e as B

    if kind == "emd5168":
        return B.embedded_map(n)
    from gpuvalid.selftest import synthetic_map

    V0, ts, t, R = synthetic_map()
    if n <= max(V0.shape):
        return V0, ts, t, R, f"synthetic helix bundle ({'×'.join(map(str, V0.shape))})"
    return B.embed_in_noise(V0, t, n), ts, t, R, f"synthetic helix bundle in {n}³ noise"


def _short(path: str) -> str:
    """A source path relative to the repository, to site-packages or to the standard library."""
    p = path.replace("\\", "/")
    i = p.rfind("site-packages/")
    if i >= 0:
        return p[i + len("site-packages/"):]
    root = str(ROOT).replace("\\", "/") + "/"
    if p.startswith(root):
        return p[len(root):]
    m = re.search(r"/lib/python3\.\d+/(.*)$", p)
    return f"<stdlib>/{m.group(1)}" if m else p


def _label(func: tuple) -> str:
    file, line, name = func
    s = name if (file == "~" and line == 0) else f"{_short(file)}:{line}({name})"  # "~": a built-in
    return s if len(s) <= LABEL_MAX else s[:LABEL_MAX - 1] + "…"


def top_table(stats: pstats.Stats, key: str, n: int) -> str:
    """The ``n`` functions with the largest ``key`` ("cumulative" or "tottime") as a fixed-width table."""
    idx = {"cumulative": 3, "tottime": 2}[key]
    rows = sorted(((v, f) for f, v in stats.stats.items()
                   if "_lsprof.Profiler" not in f[2] and not f[0].endswith("profile_run.py")),  # the harness
                  key=lambda r: r[0][idx], reverse=True)[:n]
    out = [f"{'ncalls':>12} {'tottime s':>10} {'cumtime s':>10}  function"]
    for (cc, nc, tt, ct, _), f in rows:
        calls = str(nc) if cc == nc else f"{nc}/{cc}"
        out.append(f"{calls:>12} {tt:10.4f} {ct:10.4f}  {_label(f)}")
    return "\n".join(out)


def _run(be, V, ts, t, R, profile: bool):
    """Every section on one map, yielding ``(sid, title, status, seconds, Stats or None)`` as each ends, the
    context's setup and release last (as ``OUTSIDE``); each is synchronised before its clock stops."""
    from gpuvalid.analyses import SECTIONS
    from gpuvalid.context import MapContext
    from gpuvalid.runner import run_section

    def timed(fn):
        pr = cProfile.Profile() if profile else None
        t0 = time.perf_counter()
        if pr:
            pr.enable()
        try:
            r = fn()
            be.synchronize()
        finally:
            if pr:
                pr.disable()
        return r, time.perf_counter() - t0, (pstats.Stats(pr) if pr else None)

    ctx, s_setup, p_setup = timed(lambda: MapContext(be, V, ts, t, R, name="profile"))
    for sid, title, module in SECTIONS:
        res, s, st = timed(lambda: run_section(module, sid, title, ctx))
        note = res.values.get("device", "") if isinstance(res.values, dict) else ""
        yield sid, title, res.status + (f" ({note})" if note else ""), s, st
    _, s_rel, p_rel = timed(lambda: (ctx.release(), be.free_pool()))
    if p_setup is not None:
        p_setup.add(p_rel)
    yield (OUTSIDE, "MapContext; ctx.release() and be.free_pool()", "", s_setup + s_rel, p_setup)


def _machine(be) -> str:
    from gpuvalid.backend import get_backend

    info = be.info()
    dev = (f"{be.device} = {info.get('device_name')}, {info.get('memory_total_GiB')} GiB, CuPy {info.get('cupy')}, "
           f"CUDA runtime {info.get('cuda_runtime')}" if be.is_gpu else f"{be.device} (no GPU)")
    return (f"{platform.node() or 'host'}: {os.cpu_count()} CPU cores "
            f"({get_backend('cpu').info().get('device_name')}), Python {platform.python_version()}; device {dev}")


def _describe(m) -> str:
    """The map's name with its box (once)."""
    shape = "×".join(map(str, m[0].shape))
    return m[4] if shape in m[4] else f"{m[4]} ({shape})"


def _load(tmp: Path, which: str):
    meta = json.loads((tmp / f"{which}.json").read_text())
    return np.load(tmp / f"{which}.npy"), meta["ts"], meta["t"], meta["R"], meta["name"]


def child_profile(tmp: Path, device: str, out: Path, top: int) -> int:
    """The profiled run (in a process started with CUDA_LAUNCH_BLOCKING=1): appends to ``out`` section by
    section; the profiled seconds go to ``tmp/profiled.json``."""
    from gpuvalid.backend import get_backend

    be = get_backend(device)
    with out.open("a") as f:
        f.write(f"machine: {_machine(be)}\n")
        f.write(f"CUDA_LAUNCH_BLOCKING={os.environ.get('CUDA_LAUNCH_BLOCKING', '(unset)')} in the profiled process\n")
    W = _load(tmp, "warm")
    t0 = time.perf_counter()
    for _ in _run(be, *W[:4], profile=False):
        pass
    warm_s = time.perf_counter() - t0
    V, ts, t, R, name = _load(tmp, "big")
    with out.open("a") as f:
        f.write(f"warm-up: every section once on {_describe(W)} in "
                f"{warm_s:.1f} s, not profiled\n")
    profiled, total = {}, None
    for sid, title, status, s, st in _run(be, V, ts, t, R, profile=True):
        profiled[sid] = s
        (tmp / "profiled.json").write_text(json.dumps(profiled))
        total = st if total is None else total.add(st)
        with out.open("a") as f:
            f.write(f"\n### {sid} {title}: {s:.3f} s profiled{f', {status}' if status else ''}\n\n"
                    f"top {top} by cumulative time (the function and everything it called)\n"
                    f"{top_table(st, 'cumulative', top)}\n\n"
                    f"top {top} by own time (tottime: in the function itself, with launch blocking its "
                    f"kernels' time)\n{top_table(st, 'tottime', top)}\n")
    if total is not None:
        with out.open("a") as f:
            f.write(f"\n### all sections and {OUTSIDE} together: {sum(profiled.values()):.3f} s profiled\n\n"
                    f"top {2 * top} by own time\n{top_table(total, 'tottime', 2 * top)}\n")
    return 0


def _seconds_table(rows, profiled: dict) -> str:
    out = ["| section | title | status | seconds | profiled s (blocking + cProfile) |", "|---|---|---|---|---|"]
    for sid, title, status, s, _ in rows:
        p = profiled.get(sid)
        out.append(f"| {sid} | {title} | {status} | {s:.3f} | {f'{p:.3f}' if p is not None else '—'} |")
    secs = [r for r in rows if r[0] != OUTSIDE]
    ps = [profiled[r[0]] for r in secs if r[0] in profiled]
    out.append(f"| **eight sections** | | | {sum(r[3] for r in secs):.3f} | "
               f"{f'{sum(ps):.3f}' if len(ps) == len(secs) else '—'} |")
    return "\n".join(out)


def _git_commit() -> str:
    try:
        r = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                           text=True, timeout=10)
        return r.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda:0", help="cuda:N or cpu")
    ap.add_argument("--size", type=int, default=384, help="box edge N of the profiled map")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "out", help="folder of profile_<N>.txt")
    ap.add_argument("--top", type=int, default=25, help="functions per table")
    ap.add_argument("--map", choices=["emd5168", "synthetic"], default="emd5168")
    ap.add_argument("--child", type=Path, help=argparse.SUPPRESS)  # internal: the profiled process
    args = ap.parse_args(argv)
    out = args.out / f"profile_{args.size}.txt"
    if args.child:
        return child_profile(args.child, args.device, out, args.top)

    from gpuvalid import __version__
    from gpuvalid.backend import get_backend

    args.out.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="gv_profile_"))  # the two maps (a 384³ map is 226 MB) for the child
    on_term = signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a time limit still removes tmp
    try:
        t0 = time.perf_counter()
        for which, n in (("big", args.size), ("warm", min(args.size, WARMUP_MAX))):
            V, ts, t, R, name = make_map(args.map, n)
            np.save(tmp / f"{which}.npy", V)
            (tmp / f"{which}.json").write_text(json.dumps(dict(ts=ts, t=t, R=R, name=name)))
            del V
        big = _load(tmp, "big")
        print(f"# profile_run: {_describe(big)} built in {time.perf_counter() - t0:.1f} s", flush=True)
        head = (f"# Level 0 profile: {_describe(big)} ({big[1]:.3f} Å, t = {big[2]:g}, R = {big[3]:g} Å), "
                f"all eight sections, no figures, on {args.device}\n"
                f"gpuvalid {__version__} (commit {_git_commit()}), "
                f"{time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}; "
                f"bench/profile_run.py --device {args.device} --size {args.size} --map {args.map}\n\n"
                "## Seconds per section (no launch blocking, no profiler; synchronised after each section)\n\n")
        out.write_text(head + PENDING + PROFILES_HEADING)
        env = dict(os.environ, CUDA_LAUNCH_BLOCKING="1")
        t0 = time.perf_counter()
        rc = subprocess.call([sys.executable, str(Path(__file__).resolve()), "--child", str(tmp), "--device",
                              args.device, "--size", str(args.size), "--out", str(args.out), "--top",
                              str(args.top), "--map", args.map], env=env)
        print(f"# profile_run: profiled run rc={rc} in {time.perf_counter() - t0:.1f} s", flush=True)
        rest = out.read_text()[len(head) + len(PENDING):]  # the profiles
        if rc != 0:
            rest += f"\n(the profiled process stopped with exit code {rc}: its messages are in the step's log)\n"
        profiled = json.loads((tmp / "profiled.json").read_text()) if (tmp / "profiled.json").is_file() else {}

        os.environ.pop("CUDA_LAUNCH_BLOCKING", None)  # (this process's CUDA context starts only now)
        be = get_backend(args.device)
        W = _load(tmp, "warm")
        for _ in _run(be, *W[:4], profile=False):
            pass
        rows = list(_run(be, *big[:4], profile=False))
        table = _seconds_table(rows, profiled)
        print(table, flush=True)
        out.write_text(head + f"machine (this process): {_machine(be)}\n\n{table}\n\n" + rest)
        print(f"# profile_run: wrote {out} ({out.stat().st_size / 1024:.1f} KiB)", flush=True)
        return 1 if rc != 0 else 0
    finally:
        signal.signal(signal.SIGTERM, on_term)
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
