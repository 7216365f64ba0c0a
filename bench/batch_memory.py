"""Two compute workers of one batch in a memory cgroup, with the machine's memory ledger off and on.

Builds an archive mirror of two maps (EMD-5168 centred in ``N³`` boxes of its own background noise, seeds 0
and 1), then runs ``gpuvalid batch --workers 2 --prefetch 0 --device cpu`` inside a memory cgroup limited to
``--limit`` bytes, first with ``$GPUVALID_MEMORY_LEDGER=off`` (each worker checks the memory alone), then
with a ledger (:mod:`gpuvalid.ledger`), and prints one row per run: entries done and failed, sections not
measured, sections that waited for the other worker, the cgroup's peak use, the kernel's out-of-memory kills
in it, and the wall time.

It needs a memory cgroup it can create (cgroup v1's ``memory`` controller, or v2 with ``memory`` in the
parent's ``cgroup.subtree_control``): usually root, or a delegated systemd scope; otherwise it says why and
exits with 2.  Example (bench/RESULTS.md, "Two workers in one memory cgroup")::

    python bench/batch_memory.py --size 384 --limit 9e9
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))


class Cgroup:
    """A memory cgroup of its own under this process's (v1 or v2); ``reason`` says why not when it cannot."""

    def __init__(self, name: str):
        self.path: Path | None = None
        self.v2 = False
        self.reason = ""
        try:
            lines = Path("/proc/self/cgroup").read_text().splitlines()
        except OSError as exc:
            self.reason = f"no /proc/self/cgroup ({exc.strerror})"
            return
        for line in lines:
            hid, ctrl, path = (line.split(":", 2) + ["", ""])[:3]
            if "memory" in ctrl.split(","):
                base = Path(f"/sys/fs/cgroup/memory{path}")
                break
        else:
            base = Path(f"/sys/fs/cgroup{next((ln.split(':', 2)[2] for ln in lines if ln.startswith('0::')), '/')}")
            self.v2 = True
            ctl = base / "cgroup.subtree_control"
            if not ctl.exists() or "memory" not in ctl.read_text().split():
                self.reason = f"no memory controller to delegate at {base} (cgroup v2 without 'memory' in {ctl})"
                return
        try:
            p = base / name
            p.mkdir(exist_ok=True)
        except OSError as exc:
            self.reason = f"cannot create a memory cgroup under {base} ({exc.strerror}): run as root"
            return
        self.path = p

    def _file(self, v1: str, v2: str) -> Path:
        return self.path / (v2 if self.v2 else v1)

    def limit(self, nbytes: int) -> None:
        """Limit the cgroup to ``nbytes`` and reset its peak (v1; v2's ``memory.peak`` is per cgroup)."""
        if not self.v2:
            try:
                self._file("memory.max_usage_in_bytes", "").write_text("0")
            except OSError:
                pass
        self._file("memory.limit_in_bytes", "memory.max").write_text(str(int(nbytes)))

    def peak(self) -> int | None:
        """The cgroup's peak memory use in bytes (None where the kernel does not keep it)."""
        try:
            return int(self._file("memory.max_usage_in_bytes", "memory.peak").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def oom_kills(self) -> int | None:
        """Processes the kernel killed in the cgroup for want of memory so far."""
        try:
            text = self._file("memory.oom_control", "memory.events").read_text()
        except OSError:
            return None
        return next((int(ln.split()[1]) for ln in text.splitlines() if ln.startswith("oom_kill ")), None)

    def enter(self) -> None:
        """Move the calling process into the cgroup (the batch's ``preexec_fn``)."""
        (self.path / "cgroup.procs").write_text(str(os.getpid()))

    def remove(self) -> None:
        """Remove the cgroup (empty by then)."""
        try:
            self.path.rmdir()
        except OSError:
            pass


def build_mirror(root: Path, size: int) -> list[str]:
    """Two entries, EMD-5168 in ``size``³ noise (seeds 0 and 1), in an archive mirror at ``root``."""
    import mrcfile
    from bench_e2e import DATA, EMD5168, embed_in_noise

    from gpuvalid.archive.mirror import add_entry
    from gpuvalid.io import load_map_input

    f, t, R = EMD5168
    root.mkdir(parents=True, exist_ok=True)
    ids = []
    V0 = None
    for seed in (0, 1):
        eid = f"EMD-{90000 + seed}"
        ids.append(eid)
        if (root / "structures" / eid / "map").is_dir():
            continue
        if V0 is None:
            V0 = load_map_input(DATA / f, threshold=t, resolution=R).data
        p = root.parent / f"emd5168_{size}_{seed}.map"
        with mrcfile.new(p, overwrite=True) as m:
            m.set_data(embed_in_noise(V0, t, size, seed).astype(np.float32))
            m.voxel_size = 1.742
        add_entry(root, eid, p, voxel_size=1.742, contour=t, resolution=R)
        p.unlink()
    return ids


def summarise(out: Path, ids: list[str]) -> dict:
    """Entries done and failed (with the failures' reasons), sections not measured, sections that waited."""
    s = {"done": 0, "failed": 0, "failures": [], "not_measured": [], "waited": []}
    for eid in ids:
        res = out / eid / "results.json"
        if not res.is_file():
            s["failed"] += 1
            try:
                why = json.loads((out / eid / "status.json").read_text()).get("reason")
            except (OSError, ValueError):
                why = "no status.json"
            s["failures"].append(f"{eid}: {why}")
            continue
        s["done"] += 1
        for sid, sec in json.loads(res.read_text())["sections"].items():
            if sec["status"] == "not_measured":
                s["not_measured"].append(f"{eid} {sid}: {sec.get('reason')}")
            if "memory_wait_s" in sec:
                s["waited"].append(f"{eid} {sid} {sec['memory_wait_s']:.0f} s")
    return s


def run_once(cg: Cgroup, mirror: Path, ids: list[str], out: Path, limit: int, ledger: str) -> dict:
    """One ``gpuvalid batch`` of ``ids`` with two CPU workers in the cgroup; its summary, peak and wall time."""
    import shutil

    shutil.rmtree(out, ignore_errors=True)
    out.mkdir(parents=True)
    (out.parent / "ids.txt").write_text("\n".join(ids) + "\n")
    cg.limit(limit)
    kills0 = cg.oom_kills() or 0
    env = dict(os.environ, GPUVALID_MEMORY_LEDGER=ledger)
    cmd = [sys.executable, "-m", "gpuvalid.cli", "batch", str(out.parent / "ids.txt"), "--archive", str(mirror),
           "--out", str(out), "--device", "cpu", "--workers", "2", "--prefetch", "0", "--quiet"]
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, env=env, preexec_fn=cg.enter, capture_output=True, text=True)
    wall = time.perf_counter() - t0
    s = summarise(out, ids)
    s.update(ledger="off" if ledger == "off" else "on", rc=proc.returncode, wall_s=wall, peak=cg.peak(),
             oom_kills=(cg.oom_kills() or 0) - kills0, limit=limit, last=proc.stdout.strip().splitlines()[-1:])
    return s


def table(rows: list[dict], size: int) -> str:
    """The Markdown table of the runs."""
    out = ["| maps | cgroup limit GB | ledger | done | failed | not measured | waited | peak GB | OOM kills | wall s |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        peak = "—" if r["peak"] is None else f"{r['peak'] / 1e9:.2f}"
        out.append(f"| 2 × {size}³ | {r['limit'] / 1e9:.1f} | {r['ledger']} | {r['done']} | {r['failed']} | "
                   f"{len(r['not_measured'])} | {', '.join(r['waited']) or '—'} | {peak} | {r['oom_kills']} | "
                   f"{r['wall_s']:.1f} |")
    return "\n".join(out)


def main(argv=None) -> int:
    """Build the mirror, run the batch with the ledger off and on, print the table and the failures."""
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--size", type=int, default=384, help="box edge of the two maps (voxels)")
    ap.add_argument("--limit", type=float, default=9e9, help="the cgroup's memory limit (bytes)")
    ap.add_argument("--work", type=Path, default=Path("/tmp/gpuvalid-batch-memory"), help="mirror and outputs")
    args = ap.parse_args(argv)
    cg = Cgroup(f"gpuvalid-bench-{os.getpid()}")
    if cg.path is None:
        print(f"batch_memory: {cg.reason}", file=sys.stderr)
        return 2
    try:
        mirror = args.work / f"mirror{args.size}"
        ids = build_mirror(mirror, args.size)
        rows = [run_once(cg, mirror, ids, args.work / f"out_{mode}", int(args.limit),
                         "off" if mode == "off" else str(args.work / "ledger")) for mode in ("off", "on")]
    finally:
        cg.remove()
    print(table(rows, args.size))
    for r in rows:
        for line in r["failures"] + r["not_measured"]:
            print(f"ledger {r['ledger']}: {line}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
