"""GPU (CuPy) vs CPU for the Level 1 local-resolution estimators (1.c–1.f).  Skips without CUDA.

Tolerances: float32 FFTs on both sides differ by ~1e-6 relative, so a voxel can change its discrete outcome
(a crossing moves by a fraction of a shell, a sweep step passes or fails at the threshold).  The checks are:
1.c local FSC per voxel within 0.02 Å for ≥ 99 % of the voxels; 1.d and 1.e identical step values for
≥ 99 % of the voxels and medians equal; 1.f per-direction resolutions identical for ≥ 98 % of the
(direction, voxel) pairs; the vrs_compat maps likewise.
"""

from __future__ import annotations

import numpy as np
import pytest

from tests.test_level1_local import MODEL, two_region_halves

pytestmark = pytest.mark.gpu


@pytest.fixture(scope="module")
def sim():
    if not MODEL.is_file():
        pytest.skip("model 1a5t not available")
    return two_region_halves()


@pytest.fixture(scope="module")
def cpu_local_fsc(sim, cpu):
    """1.c on the CPU at every voxel (the reference of both device engines)."""
    from gpuvalid.level1.local_fsc import local_fsc

    h1, h2, hard, soft, truth = sim
    return local_fsc(cpu, h1, h2, soft, 1.0, step=1)


def _frac_close(a, b, tol):
    ok = np.isfinite(a) & np.isfinite(b)
    assert np.array_equal(np.isfinite(a), np.isfinite(b))
    return float(np.mean(np.abs(a[ok] - b[ok]) <= tol))


@pytest.mark.parametrize("engine", ["kernel", "cufft"])
def test_local_fsc_gpu_equals_cpu(sim, cpu_local_fsc, gpu, engine, monkeypatch):
    from gpuvalid.level1 import local_fsc as lf

    h1, h2, hard, soft, truth = sim
    a = cpu_local_fsc
    monkeypatch.setattr(lf, "GROUP_ROWS", 5000)                                # several FSC groups
    budget = (1000 if engine == "kernel" else 69) * (lf.KERNEL_BOX_BYTES if engine == "kernel" else lf.BYTES_PER_BOX)
    b = lf.local_fsc(gpu, h1, h2, soft, 1.0, step=1, budget_bytes=budget, engine=engine)   # several chunks
    assert b["engine"] == engine and a["engine"] == "fft"
    assert a["boxes"] == b["boxes"] > 5000
    assert _frac_close(a["map"], b["map"], 0.02) >= 0.99
    assert _frac_close(a["vrs_map"], b["vrs_map"], 0.02) >= 0.99


@pytest.mark.parametrize("engine", ["kernel", "cufft"])
def test_local_fsc_chunk_follows_the_map(sim, gpu, engine, monkeypatch):
    """Without a budget, a chunk holds L1_BOX_GRID = 8 B per voxel of the map's boxes above the engine's floor:
    at 64³ (2.1 MB) that is the floor, 1,024 raw-kernel boxes (276 MB; 4,096 before) or 64 cuFFT boxes, not a
    quarter of the device; ``$GPUVALID_DEVICE_BUDGET`` only ever lowers it (to 64 boxes at least)."""
    from gpuvalid import memory
    from gpuvalid.level1 import local_fsc as lf

    h1, h2, hard, soft, truth = sim
    name = "_kernel_rows" if engine == "kernel" else "_fft_rows"
    seen, rows = [], getattr(lf, name)

    def spy(be, a, b, centres, shape, chunk):
        seen.append(chunk)
        return rows(be, a, b, centres, shape, chunk)

    monkeypatch.setattr(lf, name, spy)
    box = lf.KERNEL_BOX_BYTES if engine == "kernel" else lf.BYTES_PER_BOX
    floor = 1024 if engine == "kernel" else 64
    monkeypatch.setenv(memory.ENV_BUDGET, "64GiB")
    out = lf.local_fsc(gpu, h1, h2, soft, 1.0, step=2, engine=engine)
    assert out["boxes"] > floor and seen[-1] == floor
    if engine == "kernel":   # a quarter of what the budget leaves (the section's own arrays taken off): < 300
        monkeypatch.setenv(memory.ENV_BUDGET, f"{4 * 300 * box + memory.used_bytes(gpu)}")
        lf.local_fsc(gpu, h1, h2, soft, 1.0, step=2, engine=engine)
        assert 64 < seen[-1] < 300
    monkeypatch.setenv(memory.ENV_BUDGET, f"{box + memory.used_bytes(gpu)}")
    lf.local_fsc(gpu, h1, h2, soft, 1.0, step=2, engine=engine)
    assert seen[-1] == 64


@pytest.mark.parametrize("engine", ["kernel", "cufft"])
def test_local_fsc_gpu_step_equals_cpu_step(sim, cpu, gpu, engine):
    from gpuvalid.level1.local_fsc import local_fsc

    h1, h2, hard, soft, truth = sim
    a = local_fsc(cpu, h1, h2, soft, 1.0, step=2)
    b = local_fsc(gpu, h1, h2, soft, 1.0, step=2, engine=engine)
    assert _frac_close(a["map"], b["map"], 0.02) >= 0.99


def test_resmap_gpu_equals_cpu(sim, cpu, gpu):
    from gpuvalid.level1.resmap import resmap

    h1, h2, hard, soft, truth = sim
    a = resmap(cpu, h1, h2, hard, 1.0, 12.0)
    b = resmap(gpu, h1, h2, hard, 1.0, 12.0)
    assert _frac_close(a["map"], b["map"], 1e-4) >= 0.99
    assert np.nanmedian(a["map"]) == pytest.approx(np.nanmedian(b["map"]))


def test_resmap_tests_each_scale_on_the_device(sim, gpu):
    """1.d's per-voxel test (p-values, Benjamini–Yekutieli threshold, assignment) runs on the device: per scale
    the host receives a threshold and a few numbers, not the statistic of every mask voxel (counted on the
    stand-in, whose memory pool sees every device-to-host copy; before, one float per mask voxel per scale)."""
    from tests import conftest
    from gpuvalid.level1.resmap import resmap

    if not conftest.STANDIN:
        pytest.skip("copies are counted on the CuPy stand-in")
    from tests import standin

    h1, h2, hard, soft, truth = sim
    n = int(np.count_nonzero(hard))
    standin.trace(True)
    try:
        out = resmap(gpu, h1, h2, hard, 1.0, 12.0)
        copies = [(c, b) for (d, _site), (c, b) in standin.TRACE["copies"].items() if d == "d2h"]
    finally:
        standin.trace(False)
    scales = len(out["scales"])
    assert scales >= 5
    total = sum(b for _c, b in copies)
    assert total <= 12 * n + 64 * 1024            # the result (float32) and the mask's flat indices (int64)
    assert sum(c for c, _b in copies) <= 8 * scales + 16


def test_monores_half_gpu_equals_cpu(sim, cpu, gpu):
    from gpuvalid.level1.monores_half import monores_half

    h1, h2, hard, soft, truth = sim
    a = monores_half(cpu, h1, h2, hard, 1.0, 12.0)
    b = monores_half(gpu, h1, h2, hard, 1.0, 12.0)
    assert _frac_close(a["raw_map"], b["raw_map"], 1e-4) >= 0.99
    assert np.nanmedian(a["map"]) == pytest.approx(np.nanmedian(b["map"]), abs=0.05)
    for (da, ta), (db, tb) in zip(a["steps"], b["steps"]):
        assert da == db and tb == pytest.approx(ta, rel=1e-3)


def test_monodir_gpu_equals_cpu(sim, cpu, gpu):
    from gpuvalid.level1.monodir import monodir

    h1, h2, hard, soft, truth = sim
    a = monodir(cpu, h1, h2, hard, 1.0, 10.0, ndir=12, keep_res=True)
    b = monodir(gpu, h1, h2, hard, 1.0, 10.0, ndir=12, keep_res=True)
    assert np.array_equal(a["index"], b["index"])
    assert float(np.mean(np.abs(a["res"] - b["res"]) <= 1e-4)) >= 0.98


def _waits_and_sorts(ops: dict) -> tuple[int, int]:
    """Host waits counted by the stand-in: gpuvalid's own reads, and the sorts (CuPy sorts with Thrust, whose
    algorithms return only when the device has finished)."""
    sync = [(s, c) for (k, s), (c, _b) in ops.items() if k == "sync"]
    sorts = sum(c for s, c in sync if "xp.sort(" in s)
    return sum(c for _s, c in sync) - sorts, sorts


def test_monodir_waits_once_per_step_not_per_direction(sim, gpu):
    """1.f's sweep reads the device once per step (the directions' noise thresholds and alive fractions
    together), not once or more per direction and step: counted on the stand-in, which sees every point where
    CuPy makes the host wait (before: a quantile, its value and an alive count per direction and step, 592
    waits for 12 directions × 15 steps; now 72).  CuPy's sort of each direction's noise amplitudes (Thrust,
    which waits for the device) adds one wait per direction and step, counted apart."""
    from tests import conftest
    from gpuvalid.level1.monodir import monodir

    if not conftest.STANDIN:
        pytest.skip("host waits are counted on the CuPy stand-in")
    from tests import standin

    h1, h2, hard, soft, truth = sim
    standin.trace(True)
    try:
        out = monodir(gpu, h1, h2, hard, 1.0, 10.0, ndir=12)
        waits, sorts = _waits_and_sorts(standin.TRACE["ops"])
    finally:
        standin.trace(False)
    steps, ndir = max(out["steps_per_direction"]), 12
    assert steps >= 10
    assert waits <= 2 * steps + 4 * ndir + 16            # per step, plus per direction outside the sweep
    assert sorts <= steps * ndir


def test_monores_half_waits_once_per_step(sim, gpu):
    """1.e's sweep reads the device once per step (noise threshold and alive count together): 69 host waits
    for 21 steps before, 27 now (stand-in count)."""
    from tests import conftest
    from gpuvalid.level1.monores_half import monores_half

    if not conftest.STANDIN:
        pytest.skip("host waits are counted on the CuPy stand-in")
    from tests import standin

    h1, h2, hard, soft, truth = sim
    standin.trace(True)
    try:
        out = monores_half(gpu, h1, h2, hard, 1.0, 12.0)
        waits, sorts = _waits_and_sorts(standin.TRACE["ops"])
    finally:
        standin.trace(False)
    assert len(out["steps"]) >= 10
    assert waits <= len(out["steps"]) + 10
    assert sorts <= len(out["steps"])                     # the noise quantile's sort, once per step


def test_quantile_on_device_is_the_cpu_value(cpu, gpu):
    """``quantile_at(on_device=True)`` gives the CPU's interpolated quantile (as A's dtype), as a device value
    the host does not read."""
    from gpuvalid.spiral import quantile_at

    rng = np.random.default_rng(5)
    A = rng.standard_normal((9, 10, 11)).astype(np.float32)
    idx = np.sort(rng.choice(A.size, 700, replace=False))
    for q in (0.0, 0.5, 0.95, 0.999, 1.0):
        want = quantile_at(cpu, A.copy(), idx, q)
        assert want == pytest.approx(float(np.quantile(A.reshape(-1)[idx].astype(np.float64), q)), rel=1e-12)
        got = quantile_at(gpu, gpu.asarray(A), gpu.asarray(idx), q, on_device=True)
        assert got.dtype == np.float32 and float(got) == float(np.float32(want))


def test_directional_summaries_gpu_equal_cpu(cpu, gpu):
    """1.f's per-voxel summaries on the device: the same minima, maxima and best directions (the tie-breaking
    hash is integer arithmetic) as on the CPU; means, percentiles and medians within 1e-6 (float32 rounding)."""
    from gpuvalid.level1.monodir import directional_summaries
    from gpuvalid.monores import TwoFailureSweep

    rng = np.random.default_rng(11)
    n, steps = 3000, [12.0, 10.0, 9.0, 8.0, 7.5]
    host, dev = [], []
    for _ in range(47):
        st = rng.integers(-1, len(steps), n).astype(np.int16)
        for sweeps, b in ((host, cpu), (dev, gpu)):
            sw = TwoFailureSweep(b.xp, n, 12.0)
            sw._d, sw.step = list(steps), b.asarray(st)
            sweeps.append(sw)
    a = directional_summaries(cpu, host, seed=3, chunk=1024)
    g = directional_summaries(gpu, dev, seed=3, chunk=1024)
    for k in ("min", "max", "best", "vrs_tie_counts"):
        np.testing.assert_array_equal(a[k], g[k], err_msg=k)
    for k in ("mean", "lo5", "hi95", "median"):            # interpolation and sums: float32 rounding
        np.testing.assert_allclose(a[k], g[k], rtol=1e-6, err_msg=k)


def test_lowpass_and_cones_gpu_equal_cpu(cpu, gpu):
    """1.f's building blocks on CuPy: the amplitude low-pass (box-pruned at coarse steps, full at fine ones)
    to float32 precision, and the cones' Fourier coefficients exactly."""
    from gpuvalid.level1.monodir import along, cone_support, directions
    from gpuvalid.level1.monores_half import HalfMonogenic

    rng = np.random.default_rng(0)
    h = rng.normal(size=(48, 50, 46)).astype(np.float32)
    A = np.abs(rng.normal(size=h.shape)).astype(np.float32)
    ec, eg = HalfMonogenic(cpu, h, 0.5 * h), HalfMonogenic(gpu, h, 0.5 * h)
    for fd in (0.05, 0.15, 0.5):
        a = ec.lowpass(A, fd)
        b = gpu.to_host(eg.lowpass(gpu.asarray(A), fd))
        assert np.max(np.abs(a - b)) <= 1e-5 * np.max(np.abs(a))
    for d in directions(5):
        ic, ig = cone_support(ec, d), cone_support(eg, d)
        assert np.array_equal(ic, gpu.to_host(ig))
        (rc, uc), (rg, ug) = ec.at(ic), eg.at(ig)
        np.testing.assert_allclose(gpu.to_host(rg), rc, rtol=1e-6)
        np.testing.assert_allclose(gpu.to_host(along(ug, d)), along(uc, d), atol=1e-6)


def test_two_failure_sweep_gpu_equals_cpu(cpu, gpu):
    """The packed sweep state evolves bit for bit alike on both devices, through the widening at step 64."""
    from gpuvalid.monores import TwoFailureSweep

    rng = np.random.default_rng(4)
    n, n_steps = 5000, 70
    passes = rng.random((n_steps, n)) < 0.9
    sweeps = [TwoFailureSweep(b.xp, n, 40.0) for b in (cpu, gpu)]
    for k in range(n_steps):
        for sw, b in zip(sweeps, (cpu, gpu), strict=True):
            sw.update(b.asarray(passes[k]), 35.0 - 0.25 * k)
    np.testing.assert_array_equal(sweeps[0].state, gpu.to_host(sweeps[1].state))
    np.testing.assert_array_equal(sweeps[0].value, gpu.to_host(sweeps[1].value))
