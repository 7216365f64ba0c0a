"""Host memory of the CPU path, section by section, against the host estimates of :mod:`gpuvalid.memory`.

Each section runs in its own process (memory freed by an earlier section and kept by the allocator would
hide a later one's), torch imported first (its libraries are a fixed cost, not a section's), the map and its
masks made before the section starts.  Per section: the growth of the process's resident memory (RSS,
sampled every 2 ms) over what it held when the section started, in bytes per voxel of the input map and of
the larger of the input map and 0.e's 1 Å working grid, beside :func:`gpuvalid.memory.estimate_host_bytes` (what the CPU path's guard
compares with the memory available), and, between two sizes of the same map, the growth of both: the
estimate must bound the peak at each size and grow at least as fast with the map.

Maps: Level 0 on EMD-5168 (1.742 Å) and EMD-3488 (1.05 Å, where 0.h applies), each centred in boxes of
its own background noise (``--sizes``); Level 1 on simulated 1OEL half maps (``--l1-sizes``, 1 Å).

    python bench/host_peaks.py [--sizes 192 288] [--l1-sizes 96 128 160] [--sections 0.e 1.e] [--md out.md]

Exit status 1 when a section's growth exceeds its estimate.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
DATA = Path(os.environ.get("GPUVALID_DATA", ROOT.parent / "shared" / "data"))
from gpuvalid.memory import rss_bytes  # noqa: E402

MAPS = {"EMD-5168": ("emd_5168.map", 10.0, 6.6), "EMD-3488": ("emd_3488.mrc", 0.09, 3.2)}


class RssPeak:
    """Largest RSS seen (every 2 ms) inside ``with RssPeak() as p:`` → ``p.peak``."""

    def __enter__(self) -> "RssPeak":
        self.peak, self._stop = rss_bytes(), False
        self._t = threading.Thread(target=self._watch, daemon=True)
        self._t.start()
        return self

    def _watch(self) -> None:
        while not self._stop:
            self.peak = max(self.peak, rss_bytes())
            time.sleep(0.002)

    def __exit__(self, *exc) -> bool:
        self._stop = True
        self._t.join()
        self.peak = max(self.peak, rss_bytes())
        return False


def _measured(map_name: str, section: tuple, ctx, voxels: int, work_voxels: int, estimate: int) -> list[dict]:
    """Run ``section`` (sid, title, module) on ``ctx`` inside :class:`RssPeak`: its row."""
    from gpuvalid.runner import run_section

    sid, title, module = section
    base = rss_bytes()
    with RssPeak() as p:
        res = run_section(module, sid, title, ctx)
    return [dict(map=map_name, section=sid, status=res.status, seconds=res.seconds, voxels=voxels,
                 work_voxels=work_voxels, added=p.peak - base, estimate=estimate)]


def _sections_level0(key: str, n: int, sid: str) -> list[dict]:
    sys.path.insert(0, str(ROOT / "bench"))
    from bench_e2e import embed_in_noise

    from gpuvalid import memory
    from gpuvalid.analyses import SECTIONS
    from gpuvalid.backend import get_backend
    from gpuvalid.context import MapContext
    from gpuvalid.io import load_map_input

    f, t, R = MAPS[key]
    inp = load_map_input(DATA / f, threshold=t, resolution=R)
    V = embed_in_noise(inp.data, t, n) if n > max(inp.data.shape) else inp.data
    ts = inp.voxel_size
    ctx = MapContext(get_backend("cpu"), V, ts, t, R, name="host-peaks")
    _ = ctx.hard_mask, ctx.soft_mask
    section = next(s for s in SECTIONS if s[0] == sid)
    return _measured(f"{key} in {n}³", section, ctx, int(V.size), memory.working_voxels(V.shape, ts),
                     memory.estimate_host_bytes(sid, V.shape, ts, R))


def _sections_level1(n: int, sid: str) -> list[dict]:
    import numpy as np

    from gpuvalid import memory
    from gpuvalid.backend import get_backend
    from gpuvalid.context import MapContext, RunOptions
    from gpuvalid.level1 import SECTIONS1
    from gpuvalid.level1.context import HalfMaps, Level1Context
    from gpuvalid.level1.simhalves import simulate_halves

    sim = simulate_halves(DATA / "models" / "1oel.pdb", 1.0, n, bfactor_A2=60.0, noise_rel=1.0, seed=0)
    P = sim.primary
    ctx0 = MapContext(get_backend("cpu"), P, 1.0, float(np.quantile(P, 0.94)), 3.0, RunOptions(), name="host-peaks")
    mask = int(np.count_nonzero(ctx0.hard_mask))
    _ = ctx0.soft_mask
    hm = HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (sim.h1, sim.h2), ("-", "-"), ((1.0,) * 3, (1.0,) * 3))
    ctx1 = Level1Context(ctx0, hm)
    _ = ctx1.h1, ctx1.h2                      # the halves section holds them
    section = next(s for s in SECTIONS1 if s[0] == sid)
    return _measured(f"1OEL halves {n}³", section, ctx1, int(P.size), 0,
                     memory.estimate_host_bytes(sid, P.shape, 1.0, 3.0, mask))


def measure(kind: str, n: int, sid: str) -> list[dict]:
    """The row of section ``sid`` on one map, measured in a fresh process (``kind``: a key of MAPS, or 'L1')."""
    out = subprocess.run([sys.executable, __file__, "--one", kind, str(n), sid], capture_output=True, text=True,
                         check=False)
    if out.returncode != 0:
        last = out.stderr.strip().splitlines()[-1] if out.stderr.strip() else f"exit status {out.returncode}"
        raise RuntimeError(f"{kind} {n}³ {sid}: {last}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def _growth(rows: list[dict]) -> dict:
    """``{id(row): (measured growth, estimated growth)}`` from the same map's and section's previous size."""
    prev, out = {}, {}
    for r in rows:
        key = (r["map"].split(" in ")[0].split(" halves")[0], r["section"])
        if key in prev:
            p = prev[key]
            out[id(r)] = (r["added"] - p["added"], r["estimate"] - p["estimate"])
        prev[key] = r
    return out


def failures(rows: list[dict]) -> list[str]:
    """Rows whose peak exceeds the estimate, or whose growth from the previous size exceeds the estimate's."""
    g = _growth(rows)
    return [f"{r['map']} {r['section']}" for r in rows
            if r["added"] > r["estimate"] or (id(r) in g and g[id(r)][0] > g[id(r)][1])]


def table(rows: list[dict]) -> str:
    head = "| map | section | status | CPU s | RSS growth MiB | B/voxel (input) | B/voxel (max(input, 1 Å grid)) | " \
           "estimate MiB | growth from the smaller box, MiB: measured / estimate | within |"
    out = [head, "|" + "---|" * 10]
    g = _growth(rows)
    bad = set(failures(rows))
    for r in rows:
        nv = max(r["voxels"], r["work_voxels"])
        gr = f"{g[id(r)][0] / 2**20:.0f} / {g[id(r)][1] / 2**20:.0f}" if id(r) in g else "—"
        out.append(f"| {r['map']} | {r['section']} | {r['status']} | {r['seconds']:.1f} | {r['added'] / 2**20:.0f} | "
                   f"{r['added'] / r['voxels']:.1f} | {r['added'] / nv:.1f} | {r['estimate'] / 2**20:.0f} | {gr} | "
                   f"{'NO' if (r['map'] + ' ' + r['section']) in bad else 'yes'} |")
    return "\n".join(out)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", type=int, nargs="*", default=[192, 288])
    ap.add_argument("--maps", nargs="*", default=list(MAPS))
    ap.add_argument("--l1-sizes", type=int, nargs="*", default=[96, 128, 160])
    ap.add_argument("--sections", nargs="*", help="only these section ids")
    ap.add_argument("--md", type=Path)
    ap.add_argument("--one", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    if args.one:
        import torch  # noqa: F401  (a fixed cost: imported before any section is measured)

        kind, n, sid = args.one[0], int(args.one[1]), args.one[2]
        print(json.dumps(_sections_level1(n, sid) if kind == "L1" else _sections_level0(kind, n, sid)))
        return 0
    from gpuvalid.analyses import SECTIONS
    from gpuvalid.level1 import SECTIONS1

    rows = []
    cases = [(key, n, s[0]) for key in args.maps for n in args.sizes for s in SECTIONS if s[2]]
    cases += [("L1", n, s[0]) for n in args.l1_sizes for s in SECTIONS1 if s[2]]
    cases = [c for c in cases if not args.sections or c[2] in args.sections]
    for kind, n, sid in cases:
        rows += measure(kind, n, sid)
        print(f"# {kind} {n}³ {sid}: {rows[-1]['added'] / 2**20:.0f} MiB", flush=True)
    text = f"{os.cpu_count()} CPU cores\n\n{table(rows)}"
    print(text)
    if args.md:
        args.md.write_text(text + "\n")
    return 1 if failures(rows) else 0


if __name__ == "__main__":
    sys.exit(main())
