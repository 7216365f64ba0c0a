"""The raw CUDA kernels of ``kernels/`` run on the CPU (``tests/cuda_emul``: one thread per CUDA thread,
``__syncthreads`` a barrier, warp shuffles through a per-warp barrier), against direct NumPy computations.

- ``local_fsc.cu``: each box cut out, its mean removed, tapered with a Hann window written here, zero-padded to
  40³ and transformed with ``numpy.fft.fftn`` in complex128; shell sums by ``numpy.bincount`` over the full
  (not half) grid with ``round(|k|)`` shells.  Tolerance 1e-5 of the largest value (float32 kernels).
- ``raycast.cu``: the renderer's NumPy path (same float32 operations, no contraction): 1e-6 voxel.
- ``spiral.cu``: the packing formula and shell norms written here in float64: 2e-5 absolute (unit spectra).
Builds with ThreadSanitizer check that every shared-memory access and shuffle is ordered by a barrier.
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


def _load(tmp_path_factory, kernel: str, launcher: str):
    """ctypes library of ``kernels/<kernel>`` built for the CPU (skips without a C++20 compiler)."""
    try:
        path = cuda_emul.build(kernel, launcher, tmp_path_factory.mktemp(kernel.replace(".", "_")))
    except cuda_emul.Unavailable as e:
        pytest.skip(f"no C++20 compiler to run CUDA sources on the CPU: {e}")
    return ctypes.CDLL(str(path))


@pytest.fixture(scope="module")
def lib(tmp_path_factory):
    return _load(tmp_path_factory, "local_fsc.cu", "local_fsc_launch.cpp")


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
    assert int(re.search(r"#define LSHELLS_THREADS (\d+)", src).group(1)) == lf.SHELLS_THREADS
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


def test_shell_sums_are_reproducible_bit_for_bit(lib):
    """Each thread writes its own slots and the block adds them in a fixed order: two launches (threads
    scheduled differently) give identical sums."""
    h1, h2 = _halves()
    _, S1 = _run(lib, h1, h2, CENTRES)
    _, S2 = _run(lib, h1, h2, CENTRES)
    assert np.array_equal(S1, S2)


RACE_RUNS = {   # kernel file, launcher, a Python call of the test's own helpers on the built library `lib`
    "local_fsc.cu": ("local_fsc_launch.cpp", "h1, h2 = _halves(); _run(lib, h1, h2, CENTRES[:2])"),
    "spiral.cu": ("spiral_launch.cpp", "_spiral_once(lib, 64)"),
}


@pytest.mark.parametrize("kernel", sorted(RACE_RUNS))
def test_no_shared_memory_race(tmp_path, kernel):
    """Built with ThreadSanitizer, the kernels' launches report no data race (every shared-memory and
    shuffle exchange ordered by a barrier)."""
    rt = cuda_emul.tsan_runtime()
    if rt is None:
        pytest.skip("g++ has no ThreadSanitizer runtime")
    launcher, call = RACE_RUNS[kernel]
    try:
        path = cuda_emul.build(kernel, launcher, tmp_path, tsan=True)
    except cuda_emul.Unavailable as e:
        pytest.skip(str(e))
    code = textwrap.dedent(f"""
        import ctypes, numpy as np
        from tests.test_kernels_emulated import _halves, _run, _spiral_once, CENTRES
        lib = ctypes.CDLL({str(path)!r})
        {call}
        print("ran")
    """)
    env = {**os.environ, "LD_PRELOAD": rt, "TSAN_OPTIONS": "halt_on_error=0 report_signal_unsafe=0"}
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env,
                       cwd=str(cuda_emul.HERE.parents[1]), timeout=300)
    assert "ran" in r.stdout, r.stderr[-3000:]
    assert "ThreadSanitizer" not in r.stderr, r.stderr[-3000:]


# ---- kernels/raycast.cu: the renderer's first crossing --------------------------------------------------------

@pytest.fixture(scope="module")
def raylib(tmp_path_factory):
    return _load(tmp_path_factory, "raycast.cu", "raycast_launch.cpp")


def test_first_crossing_kernel_equals_the_numpy_path(raylib):
    """The renderer's ray kernel gives the CPU path's depths (same float32 operations, no FMA contraction on
    either side: equal to 1e-6 voxel), misses (NaN) and face hits (0) included, on a 2-D launch whose blocks
    overhang the image."""
    from gpuvalid.render.raycast import _first_crossing_numpy, pixel_centres

    rng = np.random.default_rng(3)
    D, H, Wd = 23, 17, 29
    z, y, x = np.meshgrid(np.arange(D), np.arange(H), np.arange(Wd), indexing="ij")
    W = (np.exp(-((z - 14) ** 2 + (y - 8) ** 2 + (x - 12) ** 2) / 30.0) + 0.05 * rng.normal(size=(D, H, Wd)))
    W[0, 2:4, 20:23] = 2.0                                           # a cut through the front face
    W = np.ascontiguousarray(W, dtype=np.float32)
    rows, cols = pixel_centres(37, H, 2.2), pixel_centres(61, Wd, 2.1)
    t = np.float32(0.5)
    want = _first_crossing_numpy(W, rows, cols, t)
    got = np.full((rows.size, cols.size), -7.0, dtype=np.float32)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    bx, by = 16, 8
    gx, gy = -(-cols.size // bx), -(-rows.size // by)
    raylib.run_first_crossing(gx, gy, bx, by, ptr(W), D, H, Wd, ptr(rows), ptr(cols), rows.size, cols.size,
                              ctypes.c_float(t), ptr(got))
    assert np.array_equal(np.isnan(got), np.isnan(want)) and np.isnan(want).any() and (want == 0).any()
    ok = ~np.isnan(want)
    np.testing.assert_allclose(got[ok], want[ok], rtol=0, atol=1e-6)


# ---- kernels/spiral.cu: the spiral engine's packing (warp-shuffle block sums) and magnitudes --------------------

@pytest.fixture(scope="module")
def spirallib(tmp_path_factory):
    return _load(tmp_path_factory, "spiral.cu", "spiral_launch.cpp")


def _spiral_once(lib, block):
    """spiral_pack on a random 6×7×8 spectrum, 3 shells: (F, f0, w, shape, d, P, norms)."""
    rng = np.random.default_rng(5)
    shape, d = (6, 7, 8), (0.11, 0.09, 0.1)
    nvox = int(np.prod(shape))
    F = (rng.normal(size=shape) + 1j * rng.normal(size=shape)).astype(np.complex64)
    f0 = np.array([0.05, 0.2, 0.33], dtype=np.float32)
    w = 0.07
    P = np.zeros((3, 2) + shape, np.complex64)
    norms = np.zeros(3)
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    lib.run_spiral_pack(-(-nvox // block), block, ptr(F), ptr(P), ptr(f0), 3, ctypes.c_float(0.5 / (w * w)), *shape,
                        *(ctypes.c_float(x) for x in d), ptr(norms))
    return F, f0, w, shape, d, P, norms


@pytest.mark.parametrize("block", [64, 256])
def test_spiral_pack_and_magnitude_equal_the_formula(spirallib, block):
    """P[b] = (S·F·(1 + ux), S·F·(uz − i·uy)) with S = exp(−(|f| − f0[b])²/(2w²)), the shell norms Σ S (block
    sums by warp shuffles, several blocks, the last one partial) and A = √(|Z0|² + |Z1|²)/norm, against the
    formula written here in float64 (u = 0 on an even axis' Nyquist plane and at the origin)."""
    F, f0, w, shape, d, P, norms = _spiral_once(spirallib, block)
    nvox = int(np.prod(shape))
    ptr = lambda a: a.ctypes.data_as(ctypes.c_void_p)  # noqa: E731
    grid = -(-nvox // block)
    comps = []
    for n, dd in zip(shape, d):
        k = np.arange(n)
        comps.append((np.where(k < (n + 1) // 2, k, k - n) * dd, (n % 2 == 0) & (k == n // 2)))
    (fz, qz), (fy, qy), (fx, qx) = comps
    FZ, FY, FX = np.meshgrid(fz, fy, fx, indexing="ij")
    QZ, QY, QX = np.meshgrid(qz, qy, qx, indexing="ij")
    r = np.sqrt(FZ ** 2 + FY ** 2 + FX ** 2)
    inv = np.divide(1.0, r, out=np.zeros_like(r), where=r > 0)
    ux, uy, uz = (np.where(q, 0.0, f * inv) for f, q in ((FX, QX), (FY, QY), (FZ, QZ)))
    for b in range(3):
        S = np.exp(-((r - f0[b]) ** 2) * (0.5 / w ** 2))
        np.testing.assert_allclose(P[b, 0], S * F * (1 + ux), rtol=0, atol=2e-5)
        np.testing.assert_allclose(P[b, 1], S * F * (uz - 1j * uy), rtol=0, atol=2e-5)
        assert norms[b] == pytest.approx(S.sum(), rel=2e-5)
    A = np.zeros((3,) + shape, np.float32)
    spirallib.run_spiral_magnitude(grid, block, ptr(P), ptr(A), ptr(norms), 3, ctypes.c_longlong(nvox))
    want = np.sqrt(np.abs(P[:, 0].astype(np.complex128)) ** 2 + np.abs(P[:, 1]) ** 2) / norms[:, None, None, None]
    np.testing.assert_allclose(A, want, rtol=2e-6, atol=0)
