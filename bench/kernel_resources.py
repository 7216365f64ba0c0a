"""What the raw kernels cost a streaming multiprocessor, from the compiler alone (no GPU needed).

Compiles every ``kernels/*.cu`` with NVRTC (``tests.nvrtc``: the ``nvidia-cuda-nvrtc`` wheel of the ``dev``
extra, the compiler CuPy uses) for sm_90 (H100, H200) and prints, per kernel: the thread block gpuvalid launches
it with, ``ptxas``'s registers, shared memory, stack frame and spills, and the theoretical occupancy those
give on one SM (resident blocks and warps of the 64 an SM holds).  Occupancy is an upper bound on latency
hiding, not a speed: the speed is what ``bench/device_check.sh`` measures on a device.

    python bench/kernel_resources.py [--arch sm_90]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from rich.console import Console  # noqa: E402
from rich.table import Table  # noqa: E402

from tests import nvrtc  # noqa: E402
from tests.test_kernels_nvrtc import BLOCKS, DEFAULT_OPTIONS, FILES, OPTIONS  # noqa: E402
from gpuvalid.backend import find_kernel_source  # noqa: E402

# Per-SM limits (CUDA C++ Programming Guide, compute capabilities 8.0, 9.0, 10.0)
SM = {
    "sm_80": dict(warps=64, blocks=32, regs=65536, smem=164 * 1024),
    "sm_90": dict(warps=64, blocks=32, regs=65536, smem=228 * 1024),
    "sm_100": dict(warps=64, blocks=32, regs=65536, smem=228 * 1024),
}
SMEM_RESERVED = 1024            # shared memory the system reserves per resident block (cc ≥ 8.0)


def occupancy(r: nvrtc.KernelResources, threads: int, arch: str) -> tuple[int, str]:
    """Resident blocks per SM and the limit that sets them."""
    lim = SM[arch]
    warps = -(-threads // nvrtc.WARP)
    by = {"warps": lim["warps"] // warps, "blocks": lim["blocks"],
          "registers": lim["regs"] // r.registers_for_block(threads),
          "shared memory": lim["smem"] // (r.smem + SMEM_RESERVED)}
    limit = min(by, key=by.get)
    return by[limit], limit


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="sm_90", choices=sorted(SM))
    a = ap.parse_args(argv)
    if nvrtc.library() is None:
        print("kernel_resources: libnvrtc not found (pip install nvidia-cuda-nvrtc, or set GPUVALID_NVRTC)")
        return 2
    major, minor = nvrtc.version()
    t = Table(title=f"raw kernels on {a.arch} (NVRTC {major}.{minor}, ptxas -v)")
    for col in ("file", "kernel", "block", "registers", "smem B", "stack B", "spills B", "blocks/SM",
                "warps/SM", "limited by"):
        t.add_column(col, justify="left" if col in ("file", "kernel", "limited by") else "right")
    for f in FILES:
        c = nvrtc.compile_source(find_kernel_source(f).read_text(), tuple(OPTIONS.get(f, DEFAULT_OPTIONS)),
                                 a.arch, f)
        for name in sorted(c.resources):
            r, threads = c.resources[name], BLOCKS[name]
            blocks, limit = occupancy(r, threads, a.arch)
            warps = blocks * -(-threads // nvrtc.WARP)
            t.add_row(f, name, str(threads), str(r.registers), str(r.smem), str(r.stack),
                      str(r.spill_stores + r.spill_loads), str(blocks), f"{warps}/{SM[a.arch]['warps']}", limit)
    Console(width=160).print(t)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
