"""Device memory budget: estimates from the map shape, the CPU fallback of a section that does not fit
(simulated small device: a fake GPU backend and $GPUVALID_DEVICE_BUDGET), the report saying so."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from gpuvalid import memory
from gpuvalid.analyses import SECTIONS
from gpuvalid.backend import Backend, get_backend
from gpuvalid.context import MapContext
from gpuvalid.runner import run_section

CPU = get_backend("cpu")


class FakeGpu(Backend):
    """NumPy arrays, but ``is_gpu`` and a device with ``free`` bytes (sections must never run on it)."""

    def __init__(self, free: int):
        super().__init__("numpy", "cuda:0", np, scipy.ndimage, scipy.fft, device_id=0)
        self.is_gpu = True
        self.free = free

    def free_memory_bytes(self):
        return self.free

    def free_pool(self):
        pass

    def info(self):
        return {"backend": "fake", "device": self.device}


def blob_map(n=40, seed=0):
    """Two Gaussian blobs plus weak noise: every mask section has something to measure."""
    rng = np.random.default_rng(seed)
    z, y, x = np.mgrid[:n, :n, :n].astype(np.float32)
    V = (np.exp(-((x - 15) ** 2 + (y - 20) ** 2 + (z - 20) ** 2) / 30.0)
         + 0.7 * np.exp(-((x - 26) ** 2 + (y - 20) ** 2 + (z - 18) ** 2) / 20.0))
    return (V + 0.01 * rng.standard_normal(V.shape)).astype(np.float32)


def test_working_grid_and_estimates_scale_with_voxels():
    # 1 Å working grid of a (10, 20, 30) map at 2 Å: (20, 40, 60) voxels
    assert memory.working_voxels((10, 20, 30), 2.0) == 20 * 40 * 60
    assert memory.working_voxels((3, 3, 3), 0.5) == 4 ** 3  # never below 4 voxels per axis
    small = memory.estimate_run((64, 64, 64), 1.0)
    big = memory.estimate_run((128, 128, 128), 1.0)
    for sid, _, _ in SECTIONS:
        assert small[sid] > 0
        # 8× the voxels: 8× the variable part (0.e's network phase also holds its smallest batch of tiles)
        fixed = memory.FIXED_BYTES + (memory.NETWORK_BATCH_MIN_BYTES if sid == "0.e" else 0)
        assert big[sid] - fixed == 8 * (small[sid] - fixed)
    # a 1.742 Å map's working grid is 1.742³ ≈ 5.3× larger: sections on that grid grow with it (174.2 voxels
    # per 100: the edge 175 = 5²·7, the nearest with small prime factors)
    per = memory.BYTES_PER_VOXEL["0.h"]
    assert memory.estimate_bytes("0.h", (100, 100, 100), 1.742) == (
        per.get("input", 0) * 10**6 + per.get("work", 0) * 175**3 + memory.FIXED_BYTES)
    # the map resampled to R/2 = 3.3 Å: round(100·1.742/3.3) = 53 voxels per axis (0.f/0.g)
    assert memory.resized_voxels((100, 100, 100), 1.742, 6.6) == 53**3
    assert memory.resized_voxels((100, 100, 100), 1.742, None) == 10**6
    per = memory.BYTES_PER_VOXEL["0.g"]
    assert memory.estimate_bytes("0.g", (100, 100, 100), 1.742, 6.6) == (
        per.get("input", 0) * 10**6 + per.get("resized", 0) * 53**3 + memory.FIXED_BYTES)


def test_sequential_phases_peak_at_the_larger_one():
    """0.e's monogenic estimate (input grid) and network (1 Å grid) run one after the other: the estimate is
    the larger phase, not their sum (a 1.742 Å map's working grid holds 175³ voxels per 100³)."""
    phases = memory.BYTES_PER_VOXEL["0.e"]["phases"]
    by_phase = [ph.get("fixed", 0) + ph.get("input", 0) * 10**6 + ph.get("work", 0) * 175**3 for ph in phases]
    assert memory.estimate_bytes("0.e", (100, 100, 100), 1.742) == max(by_phase) + memory.FIXED_BYTES
    assert max(by_phase) < sum(by_phase)


def test_parse_bytes():
    assert memory.parse_bytes("8GiB") == 8 * 2**30
    assert memory.parse_bytes("512 MiB") == 512 * 2**20
    assert memory.parse_bytes("2GB") == 2 * 10**9
    assert memory.parse_bytes("3e9") == 3 * 10**9
    with pytest.raises(ValueError):
        memory.parse_bytes("lots")


def test_no_budget_and_no_peak_on_the_cpu(monkeypatch):
    monkeypatch.setenv(memory.ENV_BUDGET, "1MiB")
    assert memory.available_bytes(CPU) is None
    with memory.PeakMeter(CPU) as m:
        np.ones(1000)
    assert m.peak is None and m.added is None
    res = run_section("gpuvalid.analyses.mask", "0.b", "Mask analysis", MapContext(CPU, blob_map(), 1.5, 0.3, 6.0))
    assert "device" not in res.values and res.peak_device_bytes is None


def _flat(d, prefix=""):
    for k, v in d.items():
        if isinstance(v, dict):
            yield from _flat(v, f"{prefix}{k}.")
        else:
            yield f"{prefix}{k}", v


@pytest.mark.parametrize("how", ["free", "env"])
def test_section_that_does_not_fit_runs_on_the_cpu(how, monkeypatch):
    if how == "free":      # a device with 1 MiB free
        be = FakeGpu(free=2**20 + memory.RESERVE_BYTES)
    else:                  # a large device capped by the environment
        be = FakeGpu(free=2**40)
        monkeypatch.setenv(memory.ENV_BUDGET, "1MiB")
    V = blob_map()
    for sid, module in (("0.a", "gpuvalid.analyses.mass"), ("0.b", "gpuvalid.analyses.mask"),
                        ("0.c", "gpuvalid.analyses.background")):
        ref = run_section(module, sid, sid, MapContext(CPU, V, 1.5, 0.3, 6.0))
        got = run_section(module, sid, sid, MapContext(be, V, 1.5, 0.3, 6.0))
        assert got.status == ref.status and got.status in ("ok", "warnings"), (sid, got.reason)
        note = got.values.pop("device")
        need = memory.estimate_bytes(sid, V.shape, 1.5, 6.0)
        assert note == f"cpu (fallback: needs {memory.gib(need)} of device memory (estimate), budget 0.00 GiB)"
        assert "Computed on the CPU" in got.blocks[0]
        assert dict(_flat(got.values)) == dict(_flat(ref.values))  # same numbers as the CPU run


def test_device_out_of_memory_reruns_on_the_cpu():
    class OutOfMemoryError(MemoryError):  # the name CuPy's and torch's errors carry
        pass

    be = FakeGpu(free=2**40)
    ctx = MapContext(be, blob_map(), 1.5, 0.3, 6.0)
    seen = []

    def run(c):
        seen.append(c.be.device)
        if c.be.is_gpu:
            raise OutOfMemoryError("out of memory allocating 123 bytes")
        from gpuvalid.analyses import mask
        return mask.run(c)

    res = memory.run_within_budget(run, "0.b", ctx)
    assert seen == ["cuda:0", "cpu"]
    assert res.values["device"].startswith("cpu (fallback: the device ran out of memory (OutOfMemoryError)")
    # other errors are not swallowed
    with pytest.raises(ValueError):
        memory.run_within_budget(lambda c: (_ for _ in ()).throw(ValueError("bug")), "0.b", ctx)


def test_whole_run_on_a_tiny_device_keeps_every_section(tmp_path):
    from gpuvalid.context import MapInput
    from gpuvalid.pipeline import validate
    from gpuvalid.report import write_report

    V = blob_map(36)
    inp = MapInput(path=tmp_path / "blobs.map", data=V, voxel_size=1.5, threshold=0.3, resolution=6.0,
                   sha256="0" * 64)
    only = {"0.a", "0.b", "0.c", "0.d"}
    rep = validate(inp, FakeGpu(free=0), tmp_path / "out", figures=False, only=only)
    ref = validate(inp, CPU, None, figures=False, only=only)
    assert set(rep.sections) == only
    write_report(rep, tmp_path / "out")
    js = json.loads((tmp_path / "out" / "results.json").read_text())
    for sid in only:
        assert rep.sections[sid].status == ref.sections[sid].status
        assert js["sections"][sid]["values"]["device"].startswith("cpu (fallback: needs")
    assert "Computed on the CPU" in (tmp_path / "out" / "report.md").read_text()


def test_working_grids_transformed_by_slabs_need_no_grid_sized_cufft_area():
    """A working grid of FFT_SLABS_ABOVE voxels or more is transformed by slabs (gpuvalid.backend): its 0.e
    estimate drops the cuFFT work area (8 B per working voxel) and adds the slabs' fixed part instead; a 768³
    map at 1.742 Å (1,344³ working voxels) then fits an 80 GB device."""
    from gpuvalid.backend import FFT_SLABS_ABOVE

    small, big = (256,) * 3, (768,) * 3
    nw_small, nw_big = memory.working_voxels(small, 1.742), memory.working_voxels(big, 1.742)
    assert nw_small < FFT_SLABS_ABOVE <= nw_big
    phase = memory.BYTES_PER_VOXEL["0.e"]["phases"][1]
    full = lambda shape, nw, work, extra: (memory.FIXED_BYTES + phase["fixed"] + phase["input"] * math.prod(shape)  # noqa: E731
                                           + work * nw + extra)
    assert memory.estimate_bytes("0.e", small, 1.742, 6.6) == full(small, nw_small, phase["work"], 0)
    assert memory.estimate_bytes("0.e", big, 1.742, 6.6) == full(
        big, nw_big, phase["work"] - memory.CUFFT_AREA_PER_WORK_VOXEL, memory.SLAB_FFT_BYTES)
    assert memory.estimate_bytes("0.e", big, 1.742, 6.6) < 75e9


def test_results_json_carries_the_device_peak_of_a_device_section():
    from gpuvalid.analyses.base import SectionResult

    res = SectionResult("0.d", "Global B-factor", seconds=1.0)
    assert "peak_device_bytes" not in res.to_json()          # a CPU section: no device numbers
    res.peak_device_bytes, res.estimated_device_bytes = 123, 456
    assert (res.to_json()["peak_device_bytes"], res.to_json()["estimated_device_bytes"]) == (123, 456)
