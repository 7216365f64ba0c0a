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


def test_fft_by_slabs_equals_the_full_transform(monkeypatch):
    """Transforms too large for one cuFFT plan (cupy/cupy#4406) go by z- and y-slabs: same numbers (checked on
    the CPU backend with a low threshold; the device runs the same code)."""
    be = get_backend("cpu")
    c, r = _slab_case(be, monkeypatch)
    _check_slabs(be, c, r)


@pytest.mark.gpu
def test_fft_by_slabs_on_the_device(gpu, monkeypatch):
    c, r = _slab_case(gpu, monkeypatch)
    _check_slabs(gpu, c, r)
