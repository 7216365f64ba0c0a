"""The raw CUDA kernels of ``kernels/local_fsc.cu`` run on the CPU (``tests/cuda_emul``: one thread per CUDA
thread, ``__syncthreads`` a barrier), against a direct NumPy computation.

Expected numbers: each box cut out, its mean removed, tapered with a Hann window written here, zero-padded to
40³ and transformed with ``numpy.fft.fftn`` in complex128; the shell sums are ``numpy.bincount`` over the full
(not half) grid with ``round(|k|)`` shells.  Tolerances: the kernels work in float32 (1e-5 of the largest
value).  A second build with ThreadSanitizer checks that every shared-memory access is ordered by a barrier.
"""

from __future__ import annotations

import ctypes
import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

from gpuvalid.level1 import local_fsc as lf
from tests import cuda_emul

SHAPE = (30, 33, 31)
CENTRES = [(10, 10, 10), (15, 16, 14), (20, 23, 21), (12, 17, 19), (19, 10, 11)]


def _hann():
    i = np.arange(20)
    w = 0.5 - 0.5 * np.cos(2 * np.pi * (i + 0.5) / 20)
    return w[:, None, None] * w[None, :, None] * w[None, None, :]


def _halves(seed=1):
    rng = np.random.default_rng(seed)
    h1 = rng.normal(size=SHAPE) + 3.0
    h2 = 0.6 * h1 + rng.normal(size=SHAPE)
    return h1.astype(np.float32), h2.astype(np.float32)


def _direct(h, c):
    """The tapered box zero-padded to 40³ (float64)."""
    sl = tuple(slice(ci - 10, ci + 10) for ci in c)
    b = h[sl].astype(np.float64)
    P = np.zeros((40, 40, 40))
    P[:20, :20, :20] = (b - b.mean()) * _hann()
    return P


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    try:
        path = cuda_emul.build("local_fsc.cu", "local_fsc_launch.cpp", tmp_path_factory.mktemp("emul"))
    except cuda_emul.Unavailable as e:
        pytest.skip(f"no C++20 compiler to run CUDA sources on the CPU: {e}")
    return ctypes.CDLL(str(path))


def _run(lib, h1, h2, centres, grid=None):
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    nb = len(centres)
    c = np.array([np.ravel_multi_index(x, SHAPE) for x in centres], dtype=np.int64)
    win = np.ascontiguousarray(_hann().astype(np.float32).ravel())
    Y = np.zeros((nb, 2, 20, 40, 21), np.complex64)
    S = np.full((nb, 3, 35), -1.0)
    g = nb if grid is None else grid
    lib.run_lfsc_planes(g, lf.PLANES_THREADS, ptr(h1), ptr(h2), ptr(c), nb, *SHAPE, ptr(win), ptr(Y))
    lib.run_lfsc_shells(g, lf.SHELLS_THREADS, ptr(Y), nb, ptr(S))
    return Y, S


def test_launch_constants_match_the_source():
    """gpuvalid launches lfsc_planes with the block size its block reduction is written for."""
    import re

    src = (cuda_emul.KERNELS / "local_fsc.cu").read_text()
    assert int(re.search(r"#define LPLANES_THREADS (\d+)", src).group(1)) == lf.PLANES_THREADS
    assert int(re.search(r"#define LNSH (\d+)", src).group(1)) == lf.shell_matrix_size()
    assert int(re.search(r"#define LB (\d+)", src).group(1)) == lf.BOX
    assert int(re.search(r"#define LP (\d+)", src).group(1)) == lf.PAD


def test_planes_are_the_2d_transforms_of_the_tapered_box(lib):
    h1, h2 = _halves()
    Y, _ = _run(lib, h1, h2, CENTRES)
    for n, c in enumerate(CENTRES):
        for h, m in enumerate((h1, h2)):
            want = np.fft.fft(np.fft.fft(_direct(m, c), axis=2), axis=1)[:20, :, :21]
            assert np.abs(Y[n, h] - want).max() <= 1e-5 * np.abs(want).max()


def test_shell_sums_equal_the_full_padded_transform(lib):
    h1, h2 = _halves()
    _, S = _run(lib, h1, h2, CENTRES, grid=len(CENTRES) + 3)       # surplus blocks do nothing
    f = np.fft.fftfreq(40) * 40
    k = np.rint(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + f[None, None, :] ** 2)).astype(int).ravel()
    for n, c in enumerate(CENTRES):
        F1, F2 = (np.fft.fftn(_direct(m, c)).ravel() for m in (h1, h2))
        for j, v in enumerate(((F1 * F2.conj()).real, np.abs(F1) ** 2, np.abs(F2) ** 2)):
            want = np.bincount(k, v, minlength=36)[:35]
            np.testing.assert_allclose(S[n, j], want, rtol=0, atol=1e-5 * np.abs(want).max())


def test_no_shared_memory_race(tmp_path):
    """Built with ThreadSanitizer, one launch of each kernel reports no data race."""
    rt = cuda_emul.tsan_runtime()
    if rt is None:
        pytest.skip("g++ has no ThreadSanitizer runtime")
    try:
        path = cuda_emul.build("local_fsc.cu", "local_fsc_launch.cpp", tmp_path, tsan=True)
    except cuda_emul.Unavailable as e:
        pytest.skip(str(e))
    code = textwrap.dedent(f"""
        import ctypes, numpy as np
        from tests.test_kernels_emulated import _halves, _run, CENTRES
        h1, h2 = _halves()
        _run(ctypes.CDLL({str(path)!r}), h1, h2, CENTRES[:2])
        print("ran")
    """)
    env = {**os.environ, "LD_PRELOAD": rt, "TSAN_OPTIONS": "halt_on_error=0 report_signal_unsafe=0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(cuda_emul.HERE.parents[1]), timeout=300)
    assert "ran" in r.stdout, r.stderr[-3000:]
    assert "ThreadSanitizer" not in r.stderr, r.stderr[-3000:]
