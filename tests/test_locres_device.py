"""0.e through the backend: the preprocessing equals the former host implementation (kept here as private
reference functions) on the CPU, bit for bit (the resampling, now by real transforms: to float32 rounding); the device code path (batched tiles, whole map, DLPack) runs
on the CPU through a NumPy backend posing as a GPU and gives the CPU path's numbers; absurd sampling and
degenerate cross-checks say why instead of printing a meaningless number."""

import numpy as np
import pytest
import scipy.fft
import scipy.ndimage

from gpuvalid.analyses import locres
from gpuvalid.analyses.base import meaningless
from gpuvalid.backend import Backend, get_backend
from gpuvalid.context import MapContext
from gpuvalid.errors import NotMeasurable
from gpuvalid.models import preprocess as P
from gpuvalid.runner import run_section

TINY = (1, 4, 4, 4, 4, 4, 4)


# ---- the former host implementation (reference) ----------------------------------------------------------
def _ref_resample(V, new_shape):
    V = np.asarray(V, dtype=np.float32)
    if tuple(new_shape) == V.shape:
        return V.copy()
    F = np.fft.fftshift(scipy.fft.fftn(V))
    out = np.zeros(new_shape, dtype=np.complex64)
    src, dst = [], []
    for n, m in zip(V.shape, new_shape):
        k = min(n, m)
        cs, cd = n // 2 - k // 2, m // 2 - k // 2
        src.append(slice(cs, cs + k))
        dst.append(slice(cd, cd + k))
    out[tuple(dst)] = F[tuple(src)]
    v = scipy.fft.ifftn(np.fft.ifftshift(out)).real
    return (v * (np.prod(new_shape) / np.prod(V.shape))).astype(np.float32)


def _ref_locres_input(V):
    ms = scipy.ndimage.gaussian_filter(V * V, 3.0, mode="reflect")
    eps = 1e-6 * float(np.mean(V * V)) + 1e-30
    return (V / np.sqrt(ms + eps)).astype(np.float32)


def _ref_mask(mask, voxel_size, ts1, shape1, it):
    pts = np.argwhere(mask) * (voxel_size / np.asarray(ts1, dtype=float))   # one voxel size, or one per axis
    m1 = np.zeros(shape1, bool)
    q = np.clip(np.rint(pts).astype(int), 0, np.array(shape1) - 1)
    m1[q[:, 0], q[:, 1], q[:, 2]] = True
    return scipy.ndimage.binary_dilation(m1, iterations=it), pts


def _ref_tiles(shape, tile, where):
    out = []
    for z0 in range(0, shape[0], tile):
        for y0 in range(0, shape[1], tile):
            for x0 in range(0, shape[2], tile):
                sl = (slice(z0, min(z0 + tile, shape[0])), slice(y0, min(y0 + tile, shape[1])),
                      slice(x0, min(x0 + tile, shape[2])))
                if where is None or where[sl].any():
                    out.append(sl)
    return out


def _map(shape=(21, 18, 24), seed=0):
    rng = np.random.default_rng(seed)
    V = scipy.ndimage.gaussian_filter(rng.normal(size=shape), 1.0).astype(np.float32)
    mask = np.zeros(shape, bool)
    mask[5:14, 4:12, 6:17] = True
    return V, mask


@pytest.mark.parametrize("shape,new", [((21, 18, 24), (37, 31, 42)), ((21, 18, 24), (12, 9, 15)),
                                       ((20, 17, 24), (20, 30, 11)), ((16, 16, 16), (16, 16, 16))])
def test_resample_equals_the_former_host_code(shape, new):
    """The former code's full complex transforms; now real ones (half spectra): equal to float32 rounding
    (1e-6 of the largest value; the largest difference seen is 5e-7)."""
    V, _ = _map(shape)
    ref = _ref_resample(V, new)
    tol = 1e-6 * np.abs(ref).max()
    np.testing.assert_allclose(P.resample(V, new, get_backend("cpu")), ref, rtol=0, atol=tol)
    np.testing.assert_allclose(P.resample(V, new), ref, rtol=0, atol=tol)   # be=None: the CPU backend


def test_resample_of_a_band_limited_wave_is_the_wave():
    """cos(2π·3z/N) sampled on 24 voxels, resampled to 40: the same wave on the finer grid (mean kept)."""
    z = np.arange(24)
    V = np.broadcast_to((1.5 + np.cos(2 * np.pi * 3 * z / 24))[:, None, None], (24, 10, 12))
    W = P.resample(V, (40, 10, 12))
    z1 = np.arange(40) * 24 / 40
    np.testing.assert_allclose(W[:, 4, 5], 1.5 + np.cos(2 * np.pi * 3 * z1 / 24), atol=1e-5)


def test_local_rms_input_and_mask_mapping_equal_the_former_host_code():
    be = get_backend("cpu")
    V, mask = _map()
    np.testing.assert_array_equal(P.locres_input(V, be), _ref_locres_input(V))
    np.testing.assert_allclose(P.locres_input(np.full((12, 12, 12), 3.0, np.float32)), 1.0, atol=1e-5)
    m1, pts = P.mask_to_grid(mask, 1.742, 1.7, (37, 31, 42), 2, be)
    r1, rpts = _ref_mask(mask, 1.742, 1.7, (37, 31, 42), 2)
    np.testing.assert_array_equal(m1, r1)
    np.testing.assert_array_equal(pts, rpts)


@pytest.mark.parametrize("region", [(slice(0, 4), slice(14, 18), slice(0, 24)),
                                    (slice(9, 11), slice(8, 9), slice(10, 13))])
@pytest.mark.parametrize("it", [1, 2, 4])
def test_mask_to_grid_dilates_like_the_whole_grid(region, it):
    # masks touching faces of the grid and a small one in the middle: the whole-grid dilation is the reference
    mask = np.zeros((21, 18, 24), bool)
    mask[region] = True
    for ts1, shape1 in ((1.7, (37, 31, 42)), (3.1, (12, 10, 13)), ((1.69, 1.72, 1.75), (22, 18, 24))):
        m1, pts = P.mask_to_grid(mask, 1.742, ts1, shape1, it, get_backend("cpu"))
        r1, rpts = _ref_mask(mask, 1.742, ts1, shape1, it)
        np.testing.assert_array_equal(m1, r1)
        np.testing.assert_array_equal(pts, rpts)


def test_mask_to_grid_maps_each_axis_at_its_own_voxel():
    # working grids have one voxel per axis (N·Ts/M): the far corner voxel lands at (n − 1)·Ts/ts1 on each axis
    mask = np.zeros((21, 18, 24), bool)
    mask[20, 17, 23] = True
    ts1 = (1.69, 1.72, 1.75)
    m1, pts = P.mask_to_grid(mask, 1.742, ts1, (22, 19, 24), 0, get_backend("cpu"))
    np.testing.assert_allclose(pts[0], [20 * 1.742 / 1.69, 17 * 1.742 / 1.72, 23 * 1.742 / 1.75], rtol=1e-12)
    assert m1[21, 17, 23] and int(m1.sum()) == 1          # rint(20.615), rint(17.218), rint(22.895)


def test_tiles_equal_the_former_loop():
    from gpuvalid.models.infer import _tiles

    _, mask = _map((50, 61, 37))
    for tile in (7, 16, 48):
        assert _tiles(mask.shape, tile, mask) == _ref_tiles(mask.shape, tile, mask)
        assert _tiles(mask.shape, tile, None) == _ref_tiles(mask.shape, tile, None)


torch = pytest.importorskip("torch")
from gpuvalid.models import infer, nets, train  # noqa: E402


def _fake_gpu():
    """NumPy/SciPy behind a backend that takes the device code path (``is_gpu``)."""
    be = Backend("numpy", "cpu", np, scipy.ndimage, scipy.fft)
    be.is_gpu = True
    return be


@pytest.fixture()
def tiny(tmp_path):
    torch.manual_seed(4)
    net = nets.build("locres", TINY)
    with torch.no_grad():                      # spread the outputs over the range (not all at one bound)
        for prm in net.parameters():
            prm.mul_(3.0)
    p = train.save(net, "locres", tmp_path, {"seed": 4})
    infer.load.cache_clear()
    yield str(p)
    infer.load.cache_clear()


def _ref_predict(V, ts, mask, path):
    """The former host predict_locres (reference pipeline with the reference preprocessing), each axis mapped
    at its own working-grid voxel ``N·Ts/M``."""
    net = infer.load("locres", path, "cpu")
    shape = P.working_shape(V.shape, ts)
    V1, ts1 = _ref_resample(V, shape), [n * ts / m for n, m in zip(V.shape, shape)]
    m1, pts = _ref_mask(mask, ts, ts1, V1.shape, 2)
    lr1 = infer.apply_fcn(net, _ref_locres_input(V1), m1, "cpu")
    lr1 = np.where(np.isnan(lr1), np.nanmedian(lr1[m1]), lr1)
    out = np.full(V.shape, np.nan, dtype=np.float32)
    vals = scipy.ndimage.map_coordinates(lr1, pts.T, order=1, mode="nearest")
    out[mask] = np.clip(vals, max(net.LO, 2 * ts), net.HI)
    return out


def test_predict_locres_equals_the_former_host_pipeline(tiny):
    """Equal but for the resampling's float32 rounding (real instead of complex transforms; largest
    difference seen 7e-6 Å): 1e-4 Å."""
    V, mask = _map((30, 26, 34))
    ref = _ref_predict(V, 1.742, mask, tiny)
    for be in (None, get_backend("cpu")):
        got = infer.predict_locres(V, 1.742, mask, path=tiny, be=be)
        np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
        np.testing.assert_allclose(got, ref, rtol=0, atol=1e-4)
    assert np.ptp(ref[mask]) > 0.1                   # a real test: the values vary


@pytest.mark.parametrize("batch_bytes", [None, 1])
def test_device_code_path_gives_the_cpu_numbers(tiny, monkeypatch, batch_bytes):
    """The GPU code path (one call for the whole map, or batches of one 64³ tile) on a NumPy backend: the
    same voxels computed (NaN pattern) and the same numbers within float32 summation order."""
    V, mask = _map((44, 40, 47))
    net = infer.load("locres", tiny, "cpu")
    x = P.locres_input(P.resample(V, (76, 70, 82)))
    where = np.zeros(x.shape, bool)
    where[3:9, 50:60, 70:75] = True                   # touches 48-tiles that a 64-tile grid cuts differently
    cpu = infer.apply_fcn(net, x, where, "cpu")
    if batch_bytes is None:
        monkeypatch.setattr(infer, "_batch_budget", lambda be, b: 2 ** 40)
    dev = infer.apply_fcn(net, x, where, "cpu", be=_fake_gpu(), batch_bytes=batch_bytes)
    np.testing.assert_array_equal(np.isnan(dev), np.isnan(cpu))
    np.testing.assert_allclose(dev, cpu, rtol=1e-5, atol=1e-5)   # float32 sums in another order
    monkeypatch.setattr(infer, "_batch_budget", lambda be, b: 1)
    a = infer.predict_locres(V, 1.742, mask, path=tiny)
    b = infer.predict_locres(V, 1.742, mask, path=tiny, be=_fake_gpu())
    np.testing.assert_allclose(b, a, rtol=0, atol=1e-4)


@pytest.mark.parametrize("batch_bytes", [None, 1])
def test_overwrite_x_writes_the_same_output_into_the_input(tiny, monkeypatch, batch_bytes):
    """``overwrite_x``: the output is the input array itself, holding what a separate output holds (CPU
    path, and the device path in one call or in batches of one tile)."""
    V, _ = _map((44, 40, 47))
    net = infer.load("locres", tiny, "cpu")
    x = P.locres_input(P.resample(V, (76, 70, 82)))
    where = np.zeros(x.shape, bool)
    where[3:9, 50:60, 70:75] = True
    if batch_bytes is None:
        monkeypatch.setattr(infer, "_batch_budget", lambda be, b: 2 ** 40)
    for be in (None, _fake_gpu()):
        want = infer.apply_fcn(net, x, where, "cpu", be=be, batch_bytes=batch_bytes)
        x2 = x.copy()
        got = infer.apply_fcn(net, x2, where, "cpu", be=be, batch_bytes=batch_bytes, overwrite_x=True)
        assert got is x2
        np.testing.assert_array_equal(got, want)


def test_absurd_sampling_is_not_measurable_before_allocating():
    V = np.random.default_rng(0).normal(size=(30, 30, 30)).astype(np.float32)
    V[10:20, 10:20, 10:20] += 5.0
    for ts, R in ((150.0, 6.0), (2.0, 3.5)):           # R finer than 2·Ts: impossible
        r = run_section("gpuvalid.analyses.locres", "0.e", "0.e", MapContext(get_backend("cpu"), V, ts, 2.5, R))
        assert r.status == "not_measured" and "Nyquist" in r.reason and "2·Ts" in r.reason, r.reason
    with pytest.raises(NotMeasurable, match="Nyquist"):   # the network cannot go above its 13 Å bound
        infer.predict_locres(V, 7.0, V > 2.5)


def test_agreement_with_a_constant_estimate_is_undefined_not_nan():
    a = np.array([3.0, 4.0, 5.0, 6.0], np.float32)
    agree, text = locres._agreement(a, np.full(4, 7.0, np.float32))
    assert "correlation" not in agree and "undefined (one estimate is constant)" in text
    assert agree["mean_abs_difference_A"] == pytest.approx(2.5) and "nan" not in text.lower()
    agree, text = locres._agreement(a, a[::-1].copy())
    assert agree["correlation"] == pytest.approx(-1.0) and "-1.00" in text
    assert locres._percentile_of(np.array([]), 3.0) is None


HAS_NET = __import__("gpuvalid.models", fromlist=["x"]).weights_path("locres").is_file()


@pytest.fixture(scope="module")
def sim():
    from tests.test_locres_hand import _chain
    from gpuvalid.simulate.maps import simulate_uniform

    return simulate_uniform(_chain(), np.random.default_rng(5), 4.0, crop_radius_A=None, noise_k=0.3,
                            with_helix=False, pad_A=20.0)


@pytest.mark.skipif(not HAS_NET, reason="the shipped weights are missing")
def test_section_with_a_constant_or_empty_monogenic_estimate(sim, monkeypatch):
    """A constant monogenic map: the section stays (no NaN correlation printed or stored); one without any
    finite value in the mask: the cross-check says why (no percentile of nothing)."""
    import gpuvalid.monores as mono

    def const(be, V, ts, mask, **kw):
        return np.where(be.to_host(mask), np.float32(6.0), np.float32(np.nan))

    monkeypatch.setattr(mono, "monogenic_local_resolution", const)
    r = run_section("gpuvalid.analyses.locres", "0.e", "0.e", MapContext(get_backend("cpu"), sim.V, sim.voxel_size,
                                                                         sim.threshold, 4.0))
    assert r.evaluable and meaningless(r) is None
    assert "correlation" not in r.values["agreement"]
    assert any("undefined (one estimate is constant)" in b for b in r.blocks)

    monkeypatch.setattr(mono, "monogenic_local_resolution",
                        lambda be, V, ts, mask, **kw: np.full(V.shape, np.nan, np.float32))
    r = run_section("gpuvalid.analyses.locres", "0.e", "0.e", MapContext(get_backend("cpu"), sim.V, sim.voxel_size,
                                                                         sim.threshold, 4.0))
    assert r.evaluable and meaningless(r) is None
    assert "monogenic_resolution_percentile" not in r.values and "no finite value" in r.values["monogenic_reason"]


def test_monogenic_of_an_empty_mask_says_why():
    from gpuvalid.monores import monogenic_local_resolution

    V = np.random.default_rng(1).normal(size=(24, 24, 24)).astype(np.float32)
    with pytest.raises(NotMeasurable, match="mask is empty"):
        monogenic_local_resolution(get_backend("cpu"), V, 1.0, np.zeros(V.shape, bool))
