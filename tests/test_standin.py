"""The CuPy stand-in refuses what CuPy refuses (checked against CuPy's documented behaviour: no implicit
device/host conversion, no host arrays or lists in device functions, only CuPy's names and keywords),
counts device memory like CuPy's pool, and runs raw kernels only with the argument types of their
signatures.  These rules are what makes a pass of ``GPUVALID_CUPY_STANDIN=1 pytest -m gpu`` mean something."""

from __future__ import annotations

import numpy as np
import pytest

from gpuvalid.memory import PeakMeter
from tests import standin


@pytest.fixture()
def be():
    return standin.backend()


def test_no_implicit_conversion_either_way(be):
    xp = be.xp
    a = be.asarray(np.arange(6, dtype=np.float32))
    with pytest.raises(TypeError, match="Implicit conversion"):
        np.asarray(a)
    with pytest.raises(TypeError, match="NumPy array"):
        a + np.ones(6, np.float32)
    with pytest.raises(TypeError, match="NumPy array"):
        np.ones(6, np.float32) * a
    with pytest.raises(TypeError, match="NumPy array"):
        xp.sum(np.ones(3))
    with pytest.raises(TypeError, match="NumPy array"):
        be.ndimage.gaussian_filter(np.ones((4, 4)), 1.0)
    with pytest.raises(TypeError):
        a[:2] = [1.0, 2.0]                                         # CuPy: Unsupported type <class 'list'>
    a[:3] = np.zeros(3, np.float32)                                # CuPy copies a NumPy value into a slice
    assert float(a[2]) == 0.0 and float(a[3]) == 3.0
    np.testing.assert_array_equal(a.get(), [0, 0, 0, 3, 4, 5])    # explicit copies are fine
    assert isinstance(be.to_host(a), np.ndarray) and float(xp.sum(a)) == 12.0


def test_reductions_and_indexing_give_device_scalars(be):
    xp = be.xp
    a = be.asarray(np.arange(8, dtype=np.float32).reshape(2, 4))
    s = xp.sum(a)
    assert isinstance(s, xp.ndarray) and s.shape == ()
    assert isinstance(a[1, 2], xp.ndarray) and float(a[1, 2]) == 6.0
    assert isinstance(np.mean(a), xp.ndarray)                      # __array_function__, as in CuPy
    with pytest.raises(TypeError):
        range(xp.int32(3) + a[0, 1].astype(xp.int32))             # CuPy arrays have no __index__


def test_only_cupys_names_and_keywords(be):
    xp = be.xp
    a = be.asarray(np.ones(4, np.float32))
    with pytest.raises(AttributeError):
        xp.this_is_not_in_cupy
    with pytest.raises(AttributeError):
        be.ndimage.watershed_ift                                   # SciPy has it, cupyx does not
    with pytest.raises(TypeError, match="initial"):
        xp.sum(a, initial=0.0)                                     # NumPy's keyword, not CuPy's
    with pytest.raises(AttributeError):
        a.resize                                                   # numpy.ndarray method CuPy lacks


def test_pool_counts_live_buffers_and_peak_meter_sees_them(be):
    xp = be.xp
    base = standin.POOL.used_bytes()
    with PeakMeter(be) as m:
        a = xp.zeros((64, 64, 64), xp.float32)                     # 1 MiB
        v = a[::2]                                                 # a view allocates nothing
        b = a + 1                                                  # 1 MiB more
        del a, v, b
    assert m.added == 2 * 2 ** 20
    assert standin.POOL.used_bytes() == base


def test_cupyx_ndimage_rules_of_cupy_14(be):
    """What CuPy 14.2's cupyx.scipy.ndimage does and SciPy does not (its sources: _morphology._binary_erosion,
    _filters_core._run_1d_filters and _call_kernel): an iterated dilation with the structure's centre set
    needs brute_force; the buffers allocated inside a call count in the pool while it runs."""
    xp, ndi = be.xp, be.ndimage
    m = be.asarray(np.zeros((16, 16, 16), bool))
    m[8, 8, 8] = True
    with pytest.raises(NotImplementedError, match="brute_force"):
        ndi.binary_dilation(m, iterations=2)
    ok = ndi.binary_dilation(m, iterations=2, brute_force=True)
    assert int(xp.count_nonzero(ok)) == 25                         # the 6-connected ball of radius 2
    assert int(xp.count_nonzero(ndi.binary_dilation(m))) == 7      # one iteration: no restriction
    V = xp.zeros((64, 64, 64), xp.float32)                         # 1 MiB
    with PeakMeter(be) as p3:                                      # result + a second buffer over three axes
        r = ndi.gaussian_filter(V, 2.0)
    with PeakMeter(be) as p1:                                      # one axis into a given output: nothing more
        ndi.gaussian_filter1d(V, 2.0, axis=0, output=r)
    with PeakMeter(be) as pin:                                     # in place: a fresh array, copied back
        ndi.gaussian_filter1d(V, 2.0, axis=0, output=V)
    assert (p3.added, p1.added, pin.added) == (2 * 2 ** 20, 0, 2 ** 20)


def test_device_budget_follows_the_emulated_memory(be):
    small = standin.backend(device_bytes=64 * 2 ** 20)
    try:
        assert small.free_memory_bytes() <= 64 * 2 ** 20
    finally:
        standin.backend(device_bytes=80 * 2 ** 30)


def test_raw_kernels_check_their_arguments(be):
    k = be.kernel("spiral.cu", "occupancy_accumulate")
    A = be.asarray(np.array([0.1, 0.5, 0.9], np.float32))
    count = be.xp.zeros(3, be.xp.float32)
    k((1,), (32,), (A, np.float32(0.4), count, np.int64(3)))
    np.testing.assert_array_equal(count.get(), [0, 1, 1])
    with pytest.raises(TypeError, match="float32"):
        k((1,), (32,), (A, 0.4, count, np.int64(3)))                # a Python float is a double in CuPy
    with pytest.raises(TypeError, match="dtype"):
        k((1,), (32,), (A.astype(be.xp.float64), np.float32(0.4), count, np.int64(3)))
    with pytest.raises(TypeError, match="arguments"):
        k((1,), (32,), (A, np.float32(0.4), count))
    count[...] = 0
    k((1,), (2,), (A, np.float32(0.4), count, np.int64(3)))         # a launch too small leaves work undone
    np.testing.assert_array_equal(count.get(), [0, 1, 0])


def test_trace_counts_launches_views_and_host_waits(be):
    """What ``bench/standin_profile.py --launches`` counts, on a hand-counted sequence: every call that makes a
    kernel on a GPU is one operation, a view is none, and the host waits where CuPy reads a device value."""
    xp = be.xp

    def counts(fn):
        standin.trace(True)
        try:
            fn()
            out: dict = {}
            for (kind, _site), (c, _b) in standin.TRACE["ops"].items():
                out[kind] = out.get(kind, 0) + c
            return out
        finally:
            standin.trace(False)

    a = xp.zeros((4, 8), dtype=xp.float32)
    assert counts(lambda: xp.zeros(8, dtype=xp.float32)) == {"kernel": 1}          # a fill
    assert counts(lambda: xp.empty(8, dtype=xp.float32)) == {}                       # allocation only
    assert counts(lambda: a.reshape(8, 4)[1:3].T) == {}                              # views
    assert counts(lambda: a + 1) == {"kernel": 1}
    assert counts(lambda: xp.sqrt(a, out=a)) == {"kernel": 1}

    def iadd():
        b = a.copy()                                                                # one copy kernel
        b += 1                                                                      # one in place
    assert counts(iadd) == {"kernel": 2}
    assert counts(lambda: float(a.sum())) == {"kernel": 1, "sync": 1}              # reduction, then a wait
    assert counts(lambda: a[a > 0]) == {"kernel": 2, "sync": 1}                    # compare; count, gather
    assert counts(lambda: be.to_host(a)) == {"sync": 1}
    assert counts(lambda: xp.nonzero(a)) == {"kernel": 1, "sync": 1}
    assert counts(lambda: xp.sort(a.reshape(-1))) == {"kernel": 1, "sync": 1}       # Thrust waits for the sort
    assert counts(lambda: be.fftn(a.astype(xp.complex64))) == {"kernel": 1, "fft": 1}
    assert counts(lambda: be.ndimage.gaussian_filter(a, 1.0)) == {"ndimage": 1}
    xp.zeros(3)                                                                     # not tracing: nothing
    assert standin.TRACE["ops"] == {}
