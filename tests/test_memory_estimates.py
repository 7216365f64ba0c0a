"""The device-memory estimates of :mod:`gpuvalid.memory` (what decides that a section runs on the CPU) are
upper bounds of what each Level 0 section really allocates on the device, and grow at least as fast as it
with the map: measured with :class:`gpuvalid.memory.PeakMeter` on two real maps, each centred in boxes of
two sizes of its own background noise.

GPU tests (``-m gpu``): on a CUDA node the device's CuPy pool and torch allocator are measured; with
``GPUVALID_CUPY_STANDIN=1`` the stand-in's pool counts the live device buffers (no cuFFT work areas, no
torch activations: those are what the estimates' allowances are for).  Batches that trade memory for
speed at small sizes (the spiral engine's shells, the network's tiles) are held to one shell and 256 MiB
here; their extra is bounded by ``FIXED_BYTES`` (checked below).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuvalid import memory, spiral
from gpuvalid.analyses import SECTIONS
from gpuvalid.context import MapContext
from gpuvalid.io import load_map_input
from gpuvalid.pipeline import run_section

pytestmark = pytest.mark.gpu

MAPS = [("emd_5168.map", 10.0, 6.6), ("emd_3488.mrc", 0.09, 3.2)]   # 1.742 Å and 1.05 Å per voxel
SIZES = (112, 160)


def embedded(data_dir, name: str, t: float, R: float, n: int):
    """The real map centred in an ``n³`` box of Gaussian noise with its background's mean and SD."""
    inp = load_map_input(data_dir / name, threshold=t, resolution=R)
    V0 = inp.data
    bg = V0[V0 < t]
    V = np.random.default_rng(0).normal(float(bg.mean()), float(bg.std()), (n, n, n)).astype(np.float32)
    o = [(n - m) // 2 for m in V0.shape]
    V[o[0]:o[0] + V0.shape[0], o[1]:o[1] + V0.shape[1], o[2]:o[2] + V0.shape[2]] = V0
    return V, inp.voxel_size


def test_batches_stay_within_the_fixed_allowance():
    from gpuvalid.models import infer

    assert spiral.BATCH_VOXELS * spiral.BYTES_PER_SHELL_VOXEL <= memory.FIXED_BYTES * 2
    assert infer.BATCH_BYTES <= 8 * memory.FIXED_BYTES


@pytest.mark.parametrize("name,t,R", MAPS, ids=[m[0] for m in MAPS])
def test_estimates_bound_the_device_peaks(gpu, data_dir, monkeypatch, name, t, R):
    from gpuvalid.models import infer

    monkeypatch.setattr(spiral, "BATCH_VOXELS", 1)                 # one shell per launch
    monkeypatch.setattr(infer, "BATCH_BYTES", 256 * 2 ** 20)        # the network's smallest batch
    pool = gpu.xp.get_default_memory_pool()
    got = {}
    for n in SIZES:
        V, ts = embedded(data_dir, name, t, R, n)
        for sid, title, module in SECTIONS:
            gpu.free_pool()
            ctx = MapContext(gpu, V, ts, t, R, name="estimates")
            base = int(pool.used_bytes())
            res = run_section(module, sid, title, ctx)
            ctx.release()
            assert "fallback" not in str(res.values.get("device", "")), (sid, res.values.get("device"))
            if res.peak_device_bytes is None:                       # not run on the device (not applicable)
                continue
            got[(sid, n)] = (res.peak_device_bytes - base, res.estimated_device_bytes)
    lines, bad = [], []
    for sid, _title, _module in SECTIONS:
        if (sid, SIZES[0]) not in got or (sid, SIZES[1]) not in got:
            continue
        (p1, e1), (p2, e2) = got[(sid, SIZES[0])], got[(sid, SIZES[1])]
        lines.append(f"{sid}: peak {p1 / 2**20:.0f}/{p2 / 2**20:.0f} MiB, estimate {e1 / 2**20:.0f}/{e2 / 2**20:.0f} MiB,"
                     f" growth {(p2 - p1) / 2**20:.0f} vs {(e2 - e1) / 2**20:.0f} MiB")
        if p1 > e1 or p2 > e2 or (p2 - p1) > (e2 - e1):
            bad.append(lines[-1])
    print("\n".join(lines))
    assert not bad, "estimates below the measured peaks:\n" + "\n".join(bad)
