"""GPU (CuPy) results equal the CPU results for the mask sections. Tolerance: 1e-5 relative on floats
(float64 reductions on both backends), exact on voxel counts. Skips without CUDA."""

import numpy as np
import pytest

from gpuvalid.context import MapContext
from gpuvalid.io import load_map_input
from gpuvalid.pipeline import run_section

pytestmark = pytest.mark.gpu


def _flat(v):
    if isinstance(v, dict):
        for k, x in v.items():
            yield from ((f"{k}.{a}", b) for a, b in _flat(x))
    elif isinstance(v, (list, tuple)):
        for i, x in enumerate(v):
            yield from ((f"[{i}]{a}", b) for a, b in _flat(x))
    else:
        yield "", v


@pytest.mark.parametrize("sid,module", [("0.a", "gpuvalid.analyses.mass"), ("0.b", "gpuvalid.analyses.mask"),
                                        ("0.c", "gpuvalid.analyses.background")])
def test_sections_gpu_equal_cpu(sid, module, cpu, gpu, data_dir):
    inp = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)
    a = run_section(module, sid, sid, MapContext(cpu, inp.data, inp.voxel_size, 10.0, 6.6))
    b = run_section(module, sid, sid, MapContext(gpu, inp.data, inp.voxel_size, 10.0, 6.6))
    assert a.status == b.status and a.warnings == b.warnings
    for (ka, va), (kb, vb) in zip(_flat(a.values), _flat(b.values)):
        assert ka == kb
        if isinstance(va, float):
            assert vb == pytest.approx(va, rel=1e-5, abs=1e-12), ka
        else:
            assert va == vb, ka


def test_masks_gpu_equal_cpu(cpu, gpu, data_dir):
    from gpuvalid import masks
    inp = load_map_input(data_dir / "emd_5168.map")
    hc = masks.hard_mask(cpu, inp.data, 10.0, inp.voxel_size)
    hg = gpu.to_host(masks.hard_mask(gpu, gpu.asarray(inp.data), 10.0, inp.voxel_size))
    np.testing.assert_array_equal(hc, hg)
    rc, _ = masks.resize_for_resolution(cpu, inp.data, inp.voxel_size, 6.6)
    rg, _ = masks.resize_for_resolution(gpu, gpu.asarray(inp.data), inp.voxel_size, 6.6)
    np.testing.assert_allclose(gpu.to_host(rg), rc, rtol=0, atol=1e-4 * float(np.abs(rc).max()))


def test_peak_meter_sees_a_known_allocation(gpu):
    """A 64 MiB array allocated and freed inside the meter: peak − entry use is 64 MiB (pool rounding ≤ 1 MiB)."""
    from gpuvalid.memory import PeakMeter

    xp = gpu.xp
    keep = xp.zeros(2**20, dtype=xp.float32)  # 4 MiB held before: counted in peak, not in added
    with PeakMeter(gpu) as m:
        a = xp.ones(16 * 2**20, dtype=xp.float32)
        del a
    assert 64 * 2**20 <= m.added <= 65 * 2**20
    assert m.peak >= m.added + keep.nbytes


def test_budget_fallback_on_a_real_device(cpu, gpu, data_dir, monkeypatch):
    """GPUVALID_DEVICE_BUDGET below the estimate: the section runs on the CPU, same numbers, noted."""
    from gpuvalid import memory

    inp = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)
    monkeypatch.setenv(memory.ENV_BUDGET, "1MiB")
    a = run_section("gpuvalid.analyses.mask", "0.b", "0.b", MapContext(cpu, inp.data, inp.voxel_size, 10.0, 6.6))
    b = run_section("gpuvalid.analyses.mask", "0.b", "0.b", MapContext(gpu, inp.data, inp.voxel_size, 10.0, 6.6))
    assert b.values.pop("device").startswith("cpu (fallback: needs")
    assert a.values == b.values
    monkeypatch.delenv(memory.ENV_BUDGET)
    c = run_section("gpuvalid.analyses.mask", "0.b", "0.b", MapContext(gpu, inp.data, inp.voxel_size, 10.0, 6.6))
    assert "device" not in c.values and c.peak_device_bytes > 0
