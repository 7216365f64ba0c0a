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
