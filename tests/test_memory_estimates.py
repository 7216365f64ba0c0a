"""The device-memory estimates of :mod:`gpuvalid.memory` (what decides that a section runs on the CPU) are
upper bounds of what each Level 0 section really allocates on the device, and grow at least as fast as it
with the map: measured with :class:`gpuvalid.memory.PeakMeter` on two real maps, each centred in boxes of
two sizes of its own background noise.

GPU tests (``-m gpu``): on a CUDA node the device's CuPy pool and torch allocator are measured; with
``GPUVALID_CUPY_STANDIN=1`` the stand-in's pool counts the live device buffers (no cuFFT work areas, no
torch activations: those are what the estimates' allowances are for).  Batches that trade memory for
speed at small sizes (the spiral engine's shells, the network's tiles) are held to one shell and 256 MiB
here; their extra is bounded by ``FIXED_BYTES`` (checked below).

Level 1 (:func:`test_level1_estimates_bound_the_device_peaks`): simulated half maps of 1OEL at 48³ and 64³,
each section on a fresh Level 1 context (the halves held, the spectra it caches built by itself, as when the
section before it ran on the CPU).  There the comparison leaves ``FIXED_BYTES`` out: each Level 1 entry must
bound the stand-in's peak with its own terms (which include allowances for cuFFT's work areas).
"""

from __future__ import annotations

import numpy as np
import pytest

from gpuvalid import memory, spiral
from gpuvalid.analyses import SECTIONS
from gpuvalid.context import MapContext
from gpuvalid.io import load_map_input
from gpuvalid.runner import run_section

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
    _assert_bounds(got, [s[0] for s in SECTIONS], SIZES)


def _assert_bounds(got: dict, sids: list[str], sizes: tuple[int, int]) -> None:
    """``got[(sid, n)] = (measured peak, estimate)`` bytes: each peak ≤ its estimate at both box sizes, and
    the peak's growth from the smaller box to the larger ≤ the estimate's."""
    lines, bad = [], []
    for sid in sids:
        if (sid, sizes[0]) not in got or (sid, sizes[1]) not in got:
            continue
        (p1, e1), (p2, e2) = got[(sid, sizes[0])], got[(sid, sizes[1])]
        v1, v2 = sizes[0] ** 3, sizes[1] ** 3
        lines.append(f"{sid}: peak {p1 / v1:.1f}/{p2 / v2:.1f} B per voxel, estimate {e1 / v1:.1f}/{e2 / v2:.1f},"
                     f" growth {(p2 - p1) / 2**20:.1f} vs {(e2 - e1) / 2**20:.1f} MiB")
        if p1 > e1 or p2 > e2 or (p2 - p1) > (e2 - e1):
            bad.append(lines[-1])
    print("\n".join(lines))
    assert not bad, "estimates below the measured peaks:\n" + "\n".join(bad)


L1_SIZES = (48, 64)


def _l1_halves(data_dir, n: int):
    from gpuvalid.level1.simhalves import simulate_halves

    model = data_dir / "models" / "1oel.pdb"
    if not model.is_file():
        pytest.skip(f"model {model} not found")
    sim = simulate_halves(model, 1.0, n, bfactor_A2=60.0, noise_rel=1.0, seed=0)
    return sim.primary, sim.h1, sim.h2


def test_level1_estimates_bound_the_device_peaks(gpu, data_dir, monkeypatch):
    """Each Level 1 entry of ``BYTES_PER_VOXEL`` bounds the device peak its section adds (without
    ``FIXED_BYTES``) at 48³ and 64³, and its growth between the two.

    The two chunks that trade memory for speed are held small, because at these sizes their full size
    would hide the per-voxel terms under a constant, and a chunk that is full at one size only would count as
    growth: 1.c's boxes (the raw-kernel engine's chunk, ``local_fsc.KERNEL_MIN_CHUNK`` boxes of
    ``KERNEL_BOX_BYTES``, and its group of ``GROUP_ROWS`` FSCs) to 4 (the 10-voxel margin leaves 5 boxes at
    48³) and 1.b's permuted coefficients (``memory.l1_perm_chunk``, at least ``L1_PERM_MIN``) to 2¹⁸.  The
    estimates' fixed parts are scaled to the held chunks, and the full chunks are checked to be what the
    estimates allow.
    """
    from pathlib import Path

    from gpuvalid.context import RunOptions
    from gpuvalid.level1 import SECTIONS1, local_fsc
    from gpuvalid.level1.context import HalfMaps, Level1Context

    assert memory.BYTES_PER_VOXEL["1.c"]["fixed"] == (local_fsc.KERNEL_MIN_CHUNK * local_fsc.KERNEL_BOX_BYTES
                                                      + local_fsc.GROUP_ROWS * memory.L1_FSC_ROW_BYTES)
    assert memory.BYTES_PER_VOXEL["1.b"]["fixed"] == memory.L1_PERM_MIN * memory.L1_PERM_BYTES
    for n in (64, 128, 384, 768, 1024):       # the chunk above its floor: within the per-voxel part
        chunk = memory.l1_perm_chunk(n ** 3)
        assert memory.L1_PERM_MIN <= chunk <= memory.L1_PERM_CHUNK
        assert chunk == memory.L1_PERM_MIN or chunk * memory.L1_PERM_BYTES <= n ** 3 * (
            memory.BYTES_PER_VOXEL["1.b"]["input"] - 64)
    boxes, perm = 4, 2 ** 18          # 1.c: 5 boxes at 48³ (the box's 10-voxel margin), 10,373 at 64³
    monkeypatch.setattr(local_fsc, "MIN_CHUNK_BOXES", boxes)
    monkeypatch.setattr(local_fsc, "KERNEL_MIN_CHUNK", boxes)
    monkeypatch.setattr(local_fsc, "KERNEL_MAX_CHUNK", boxes)
    monkeypatch.setattr(local_fsc, "GROUP_ROWS", boxes)
    monkeypatch.setattr(memory, "L1_PERM_MIN", perm)
    assert memory.l1_perm_chunk(64 ** 3) == perm
    monkeypatch.setitem(memory.BYTES_PER_VOXEL, "1.c", {**memory.BYTES_PER_VOXEL["1.c"], "fixed": boxes * (
        local_fsc.KERNEL_BOX_BYTES + memory.L1_FSC_ROW_BYTES)})
    monkeypatch.setitem(memory.BYTES_PER_VOXEL, "1.b", {**memory.BYTES_PER_VOXEL["1.b"],
                                                        "fixed": perm * memory.L1_PERM_BYTES})
    pool = gpu.xp.get_default_memory_pool()
    got = {}
    for n in L1_SIZES:
        P, h1, h2 = _l1_halves(data_dir, n)
        gpu.free_pool()
        ctx0 = MapContext(gpu, P, 1.0, float(np.quantile(P, 0.94)), 3.0, RunOptions(), name="estimates")
        _ = ctx0.soft_mask, ctx0.hard_mask
        hm = HalfMaps((Path("h1.mrc"), Path("h2.mrc")), (h1, h2), ("-", "-"), ((1.0,) * 3, (1.0,) * 3))
        for sid, title, module in SECTIONS1:
            ctx1 = Level1Context(ctx0, hm)
            _ = ctx1.h1, ctx1.h2                                   # the halves section holds them
            base = int(pool.used_bytes())
            res = run_section(module, sid, title, ctx1)
            ctx1.release()
            assert res.evaluable, (sid, n, res.reason)
            assert "fallback" not in str(res.values.get("device", "")), (sid, res.values.get("device"))
            got[(sid, n)] = (res.peak_device_bytes - base, res.estimated_device_bytes - memory.FIXED_BYTES)
        ctx0.release()
    assert all((s[0], n) in got for s in SECTIONS1 for n in L1_SIZES)
    _assert_bounds(got, [s[0] for s in SECTIONS1], L1_SIZES)
