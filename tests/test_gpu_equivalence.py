"""GPU (CuPy) results equal the CPU results for the mask sections. Tolerance: 1e-5 relative on floats
(float64 reductions on both backends), exact on voxel counts. Skips without CUDA."""

import numpy as np
import pytest

from gpuvalid.context import MapContext
from gpuvalid.io import load_map_input
from gpuvalid.runner import run_section
from tests.helpers import assert_backends_agree

pytestmark = pytest.mark.gpu


@pytest.mark.parametrize("sid,module", [("0.a", "gpuvalid.analyses.mass"), ("0.b", "gpuvalid.analyses.mask"),
                                        ("0.c", "gpuvalid.analyses.background")])
def test_sections_gpu_equal_cpu(sid, module, cpu, gpu, data_dir):
    inp = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)

    def section(be):        # the context takes the host map and moves it to its device
        res = run_section(module, sid, sid, MapContext(be, inp.data, inp.voxel_size, 10.0, 6.6))
        return {"status": res.status, "warnings": res.warnings, "values": res.values}

    assert_backends_agree(section, cpu, gpu, rtol=1e-5, atol=1e-12)


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


# ---- 0.e on the device --------------------------------------------------------------------------------------
# Tolerances: the 1 Å working grid within 1e-5 of the map's largest |value| (cuFFT vs pocketFFT, float32);
# the local-RMS input within 1e-4 (values of order 1; CuPy's Gaussian filter sums in another order); the mask
# mapping exactly (integer voxel indices × the same float64 scale); trilinear sampling within 1e-5; the
# network (full float32 convolutions on both) within 1e-4 Å per voxel; the whole 0.e result within 0.05 Å.

def _emd5168(data_dir, cpu):
    inp = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)
    ctx = MapContext(cpu, inp.data, inp.voxel_size, 10.0, 6.6)
    return inp, ctx.hard_mask


def test_locres_preprocessing_gpu_equals_cpu(cpu, gpu, data_dir):
    from gpuvalid.models import preprocess as P

    inp, mask = _emd5168(data_dir, cpu)
    ts = inp.voxel_size
    V1c, t1c = P.to_working_grid(inp.data, ts, be=cpu)
    V1g, t1g = P.to_working_grid(gpu.asarray(inp.data), ts, be=gpu)
    assert t1c == t1g and V1g.shape == V1c.shape and not isinstance(V1g, np.ndarray)
    np.testing.assert_allclose(gpu.to_host(V1g), V1c, rtol=0, atol=1e-5 * float(np.abs(V1c).max()))
    xc = P.locres_input(V1c, cpu)
    xg = P.locres_input(gpu.asarray(V1c), gpu)
    np.testing.assert_allclose(gpu.to_host(xg), xc, rtol=0, atol=1e-4)
    m1c, pc = P.mask_to_grid(mask, ts, t1c, V1c.shape, 2, cpu)
    m1g, pg = P.mask_to_grid(gpu.asarray(mask), ts, t1c, V1c.shape, 2, gpu)
    np.testing.assert_array_equal(gpu.to_host(m1g), m1c)
    np.testing.assert_array_equal(gpu.to_host(pg), pc)
    np.testing.assert_allclose(gpu.to_host(P.sample_coords(gpu.asarray(xc), pg, gpu)), P.sample_coords(xc, pc, cpu),
                               rtol=0, atol=1e-5)


@pytest.mark.parametrize("batch_bytes", [2 ** 40, 1])   # the whole map in one call; one 64³ tile per batch
def test_locres_network_tiles_gpu_equal_cpu(cpu, gpu, torch_device, batch_bytes):
    torch = pytest.importorskip("torch")
    from gpuvalid.models import infer, nets

    torch.manual_seed(0)
    net_c = nets.build("locres").eval()
    net_g = nets.build("locres").eval()
    net_g.load_state_dict(net_c.state_dict())
    net_g = net_g.to(torch_device)
    x = np.random.default_rng(0).normal(size=(76, 70, 82)).astype(np.float32)
    where = np.zeros(x.shape, bool)
    where[3:9, 50:60, 70:75] = True
    c = infer.apply_fcn(net_c, x, where, "cpu")
    g = gpu.to_host(infer.apply_fcn(net_g, gpu.asarray(x), gpu.asarray(where), gpu.device, be=gpu,
                                    batch_bytes=batch_bytes))
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c))
    np.testing.assert_allclose(g, c, rtol=0, atol=1e-4)


def test_predict_locres_gpu_equals_cpu(cpu, gpu, data_dir):
    """EMD-5168: the shipped network's local resolution on cuda within 0.05 Å of the CPU path at every voxel
    of the hard mask, computed from device arrays and returned on the device."""
    pytest.importorskip("torch")
    from gpuvalid import models
    from gpuvalid.models import infer

    if not models.weights_path("locres").is_file():
        pytest.skip("the shipped weights are missing")
    inp, mask = _emd5168(data_dir, cpu)
    c = infer.predict_locres(inp.data, inp.voxel_size, mask, "cpu")
    g = infer.predict_locres(gpu.asarray(inp.data), inp.voxel_size, gpu.asarray(mask), gpu.device, be=gpu)
    assert not isinstance(g, np.ndarray)
    g = gpu.to_host(g)
    np.testing.assert_array_equal(np.isnan(g), np.isnan(c))
    assert float(np.nanmax(np.abs(g - c))) <= 0.05


def test_locres_section_gpu_equals_cpu(cpu, gpu, data_dir):
    """0.e on EMD-5168: same method and status; percentiles within 0.05 Å; R's percentile within 0.5 %."""
    inp = load_map_input(data_dir / "emd_5168.map", threshold=10, resolution=6.6)
    a = run_section("gpuvalid.analyses.locres", "0.e", "0.e", MapContext(cpu, inp.data, inp.voxel_size, 10.0, 6.6))
    b = run_section("gpuvalid.analyses.locres", "0.e", "0.e", MapContext(gpu, inp.data, inp.voxel_size, 10.0, 6.6))
    assert a.status == b.status and a.values["method"] == b.values["method"]
    np.testing.assert_allclose(b.values["percentiles_A"], a.values["percentiles_A"], rtol=0, atol=0.05)
    assert b.values["resolution_percentile"] == pytest.approx(a.values["resolution_percentile"], abs=0.5)
    assert b.values["mask_voxels"] == a.values["mask_voxels"]
