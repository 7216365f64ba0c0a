"""The array backend: CPU always works; CUDA requests fail with a clear message when unavailable."""

import numpy as np
import pytest

from gpuvalid.backend import cuda_available, get_backend
from gpuvalid.errors import BackendError


def test_cpu_backend_fft_roundtrip():
    be = get_backend("cpu")
    assert be.xp is np and not be.is_gpu
    a = np.random.default_rng(0).normal(size=(8, 10, 12)).astype(np.float32)
    np.testing.assert_allclose(be.irfftn(be.rfftn(a), s=a.shape), a, atol=1e-5)
    assert be.to_host(a) is a


def test_bad_device_names():
    for name in ("tpu", "cuda:x", "gpu:-"):
        with pytest.raises(BackendError):
            get_backend(name)
    # a name that merely starts with gpu/cuda is not a device (gpu1 used to run on cuda:0 silently)
    for name in ("gpu1", "gpufoo", "cuda1", "cudax"):
        with pytest.raises(BackendError, match="bad device"):
            get_backend(name)


@pytest.mark.skipif(cuda_available(), reason="CUDA present")
def test_cuda_request_without_cuda_is_clear():
    with pytest.raises(BackendError, match="cpu"):
        get_backend("cuda:0")
    assert get_backend("auto").device == "cpu"


def test_kernels_need_gpu():
    with pytest.raises(BackendError):
        get_backend("cpu").kernel("none.cu", "f")


def _slab_case(be, monkeypatch):
    """Arrays of 11·13·9 elements go by slabs of at most 200 elements (several of each kind)."""
    import gpuvalid.backend as B

    monkeypatch.setattr(be, "fft_slabs_above", 1000)
    monkeypatch.setattr(B, "FFT_SLAB_ELEMENTS", 200)
    rng = np.random.default_rng(4)
    c = (rng.normal(size=(11, 13, 9)) + 1j * rng.normal(size=(11, 13, 9))).astype(np.complex64)
    return c, rng.normal(size=(11, 13, 9)).astype(np.float32)


@pytest.fixture(params=["cpu", pytest.param("cuda:0", marks=pytest.mark.gpu)])
def slab_case(request, monkeypatch):
    """``(backend, c, r)``: the CPU backend, or the device (``-m gpu``), with :func:`_slab_case`'s thresholds
    (the device runs the same code)."""
    be = get_backend("cpu") if request.param == "cpu" else request.getfixturevalue("gpu")
    return (be,) + _slab_case(be, monkeypatch)


def _check_slabs(be, c, r):
    """fftn/ifftn by slabs equal numpy.fft's full transforms (complex128 reference; float32 data: 1e-5 of
    the largest coefficient), in place with overwrite_x on a complex64 array, on a copy otherwise."""
    ref = np.fft.fftn(c.astype(np.complex128))
    for x, want in ((c, ref), (r, np.fft.fftn(r.astype(np.float64)))):
        got = be.to_host(be.fftn(be.asarray(x)))
        assert got.dtype == np.complex64
        np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())
    d = be.asarray(ref.astype(np.complex64))
    out = be.ifftn(d, overwrite_x=True)
    assert out is d                                        # transformed in place
    np.testing.assert_allclose(be.to_host(out), c, rtol=0, atol=1e-5 * np.abs(c).max())
    src = be.asarray(c.copy())
    be.fftn(src)
    np.testing.assert_array_equal(be.to_host(src), c)     # left alone without overwrite_x


def test_fft_by_slabs_equals_the_full_transform(slab_case):
    """Transforms too large for one cuFFT plan (cupy/cupy#4406) go by z- and y-slabs: same numbers."""
    _check_slabs(*slab_case)


def _check_volumes(be, c):
    """A batch of 3-D transforms over the last three axes (2 × 2 volumes of ``c``'s shape) too large for one
    plan goes volume by volume (each by slabs): numpy.fft's batched transform (complex128 reference, 1e-5 of
    the largest coefficient), in place with overwrite_x on a complex64 array."""
    batch = np.stack([np.stack([c, 2 * c]), np.stack([c.conj(), 1j * c])]).astype(np.complex64)
    want = np.fft.fftn(batch.astype(np.complex128), axes=(-3, -2, -1))
    got = be.fftn(be.asarray(batch), axes=(-3, -2, -1))
    np.testing.assert_allclose(be.to_host(got), want, rtol=0, atol=1e-5 * np.abs(want).max())
    d = be.asarray(want.astype(np.complex64))
    out = be.ifftn(d, axes=(2, 3, 4), overwrite_x=True)
    assert out is d                                        # transformed in place
    np.testing.assert_allclose(be.to_host(out), batch, rtol=0, atol=1e-5 * np.abs(batch).max())


def test_fft_of_a_large_batch_goes_by_volumes(slab_case):
    be, c, _ = slab_case
    _check_volumes(be, c)


def _check_real_slabs(be, r):
    """rfftn/irfftn by slabs equal numpy.fft's full real transforms (float64 reference; 1e-5 of the largest
    value), odd and even last axes; irfftn leaves its input alone without overwrite_x; and
    fourier_resample by slabs equals it without them (up- and downsampling, 2e-6 of the largest value)."""
    from gpuvalid.resample import fourier_resample

    for x in (r, r[:, :, :8].copy()):                      # last axis 9 (odd) and 8 (even)
        want = np.fft.rfftn(x.astype(np.float64))
        h = be.rfftn(be.asarray(x))
        assert h.dtype == np.complex64 and h.shape == want.shape
        np.testing.assert_allclose(be.to_host(h), want, rtol=0, atol=1e-5 * np.abs(want).max())
        keep = be.to_host(h).copy()
        back = be.irfftn(h, s=x.shape)
        np.testing.assert_array_equal(be.to_host(h), keep)
        np.testing.assert_allclose(be.to_host(back), x, rtol=0, atol=1e-5 * np.abs(x).max())
        back = be.irfftn(h, s=x.shape, overwrite_x=True)
        assert back.dtype == np.float32
        np.testing.assert_allclose(be.to_host(back), x, rtol=0, atol=1e-5 * np.abs(x).max())
    full = {new: be.to_host(fourier_resample(be, r, new)) for new in ((17, 20, 12), (7, 8, 5))}
    be.fft_slabs_above = None
    for new, got in full.items():
        want = be.to_host(fourier_resample(be, r, new))
        np.testing.assert_allclose(got, want, rtol=0, atol=2e-6 * np.abs(want).max())


def test_real_fft_by_slabs_equals_the_full_transform(slab_case):
    be, _, r = slab_case
    _check_real_slabs(be, r)


def test_slab_steps_keep_cufft_alignment():
    """Every slab of an aligned array starts at a multiple of 16 bytes (cuFFT's R2C input must be aligned to
    its complex type, cupy/cupy#9229), whatever the plane's size; at least one plane per slab."""
    import gpuvalid.backend as B

    for plane in (1, 3, 117, 13 * 8, 673 * 1344, 1344 * 1344, 1025 * 1025, 2 ** 28 + 1):
        for itemsize in (4, 8, 16):
            step = B._slab_step(plane, itemsize)
            assert step >= 1 and step * plane * itemsize % B.FFT_ALIGN_BYTES == 0
            q = B.FFT_ALIGN_BYTES // np.gcd(plane * itemsize, B.FFT_ALIGN_BYTES)
            assert step <= max(q, B.FFT_SLAB_ELEMENTS // plane)      # no larger than the cap needs


def test_real_fft_by_slabs_of_a_misaligned_view(slab_case):
    """A float32 map that is a view 4 bytes into its buffer (odd planes: 13·9 voxels) goes by slabs of an
    aligned copy: numpy.fft's transform (float64 reference, 1e-5 of the largest coefficient).  On a GPU
    the view itself would be refused by cuFFT (the stand-in refuses it too)."""
    be, _, r = slab_case
    flat = be.asarray(np.concatenate([[0.0], r.ravel()]).astype(np.float32))
    view = flat[1:].reshape(r.shape)
    want = np.fft.rfftn(r.astype(np.float64))
    got = be.to_host(be.rfftn(view))
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * np.abs(want).max())


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda:0", marks=pytest.mark.gpu)])
def test_masked_selection_by_slabs(device, request, monkeypatch):
    """``be.masked`` equals NumPy's ``a[mask]`` (same values, row-major order) and ``be.flatnonzero`` NumPy's
    ``flatnonzero`` when they go by slabs (here above 50 elements instead of 2³⁰), on odd slab counts and an
    empty mask."""
    import gpuvalid.backend as B

    be = get_backend("cpu") if device == "cpu" else request.getfixturevalue("gpu")
    monkeypatch.setattr(B, "MASK_SLAB_ELEMENTS", 50)
    rng = np.random.default_rng(7)
    a = rng.normal(size=(11, 6, 5)).astype(np.float32)
    for mask in (a > 0.3, np.zeros(a.shape, bool), np.ones(a.shape, bool)):
        got = be.to_host(be.masked(be.asarray(a), be.asarray(mask)))
        np.testing.assert_array_equal(got, a[mask])
        idx = be.to_host(be.flatnonzero(be.asarray(mask)))
        np.testing.assert_array_equal(idx, np.flatnonzero(mask))


def test_release_fft_plans_drops_each_plan_without_clear():
    """The cached plans go one by one (``del cache[key]``): CuPy's ``PlanCache.clear()`` runs a full
    ``gc.collect()`` each time, 40–60 ms with torch loaded (0.46 s of a 384³ run's 1.16 s on an H200)."""
    from types import SimpleNamespace

    from gpuvalid.backend import Backend

    class Cache:
        def __init__(self):
            self.plans = {("C2C", (8, 8)): "plan a", ("R2C", (4, 4, 4)): "plan b"}
            self.cleared = 0

        def __iter__(self):                 # CuPy yields (key, node), most recently used first
            return iter(list(self.plans.items()))

        def __delitem__(self, key):
            del self.plans[key]

        def clear(self):
            self.cleared += 1
            self.plans.clear()

    cache = Cache()
    xp = SimpleNamespace(fft=SimpleNamespace(config=SimpleNamespace(get_plan_cache=lambda: cache)))
    Backend("cupy", "cuda:0", xp, None, None, device_id=0).release_fft_plans()
    assert cache.plans == {} and cache.cleared == 0
    cache.plans = {}
    Backend("cupy", "cuda:0", xp, None, None, device_id=0).release_fft_plans()   # an empty cache: nothing to do
    assert cache.cleared == 0


@pytest.mark.parametrize("device", ["cpu", pytest.param("cuda:0", marks=pytest.mark.gpu)])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_hypot_in_place_is_the_direct_formula(device, dtype, request):
    """``Backend.hypot_in_place(a, b)`` writes √(a² + b²) into ``a`` on either device (float64 reference,
    4 ulps of the dtype: CuPy's hypot and the CPU's squares and root agree to that)."""
    be = get_backend("cpu") if device == "cpu" else request.getfixturevalue("gpu")
    rng = np.random.default_rng(4)
    a, b = (rng.normal(size=(9, 10, 11)).astype(dtype) for _ in range(2))
    ref = np.sqrt(a.astype(np.float64) ** 2 + b.astype(np.float64) ** 2)
    da = be.asarray(a)
    out = be.hypot_in_place(da, be.asarray(b))
    assert out is da
    np.testing.assert_allclose(be.to_host(da), ref, rtol=4 * np.finfo(dtype).eps)
