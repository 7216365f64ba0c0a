"""NumPy transcriptions of the raw CUDA kernels in ``kernels/*.cu``, thread by thread semantics vectorised.

Each function takes the launch ``(grid, block)`` and the kernel's arguments in the order of its ``extern
"C"`` signature (device arrays as flat NumPy views) and computes only what the launched threads cover, so a
launch too small for its data leaves the uncovered output untouched, as on a GPU.  float32 arithmetic where
the kernel uses float, float64 where it uses double.
"""

from __future__ import annotations

import numpy as np
import scipy.fft as sfft

f32 = np.float32


def _threads(grid, block, axis=0) -> int:
    return int(grid[axis]) * int(block[axis])


def _signed_freq(n: int, step):
    k = np.arange(n)
    s = np.where(k < (n + 1) // 2, k, k - n).astype(f32)
    nyq = (n % 2 == 0) & (k == n // 2)
    return s * f32(step), nyq


def spiral_pack(grid, block, F, P, f0, nb, inv2w2, nz, ny, nx, dz, dy, dx, norms):
    nvox = int(nz) * int(ny) * int(nx)
    m = min(nvox, _threads(grid, block))
    fz, qz = _signed_freq(int(nz), dz)
    fy, qy = _signed_freq(int(ny), dy)
    fx, qx = _signed_freq(int(nx), dx)
    FZ, FY, FX = (a.reshape(-1)[:m] for a in np.meshgrid(fz, fy, fx, indexing="ij"))
    QZ, QY, QX = (a.reshape(-1)[:m] for a in np.meshgrid(qz, qy, qx, indexing="ij"))
    r = np.sqrt(FZ * FZ + FY * FY + FX * FX)
    with np.errstate(divide="ignore", invalid="ignore"):
        inv = np.where(r > 0, f32(1) / r, f32(0)).astype(f32)
    ux = np.where(QX, f32(0), FX * inv)
    uy = np.where(QY, f32(0), FY * inv)
    uz = np.where(QZ, f32(0), FZ * inv)
    Fv = F.reshape(-1)[:m]
    Pf = P.reshape(-1)
    for b in range(int(nb)):
        d = r - f0[b]
        s = np.exp(-d * d * f32(inv2w2)).astype(f32)
        a, c = s * Fv.real, s * Fv.imag
        Pf[2 * b * nvox: 2 * b * nvox + m] = (a * (f32(1) + ux)) + 1j * (c * (f32(1) + ux))
        Pf[(2 * b + 1) * nvox: (2 * b + 1) * nvox + m] = (a * uz + c * uy) + 1j * (c * uz - a * uy)
        norms[b] += float(np.sum(s, dtype=np.float64))


def spiral_magnitude(grid, block, Z, A, norms, nb, nvox):
    nvox = int(nvox)
    m = min(nvox, _threads(grid, block))
    Zf, Af = Z.reshape(-1), A.reshape(-1)
    for b in range(int(nb)):
        z1 = Zf[2 * b * nvox: 2 * b * nvox + m]
        z2 = Zf[(2 * b + 1) * nvox: (2 * b + 1) * nvox + m]
        inv = f32(1.0 / norms[b]) if norms[b] > 0 else f32(0)
        Af[b * nvox: b * nvox + m] = np.sqrt(z1.real ** 2 + z1.imag ** 2 + z2.real ** 2 + z2.imag ** 2) * inv


def lsq_accumulate(grid, block, A, noise, x, sy, sxy, sx, sxx, n, above_noise, nvox):
    m = min(int(nvox), _threads(grid, block))
    a = A.reshape(-1)[:m]
    am = np.maximum(a, f32(1e-30))
    y = np.log(np.maximum(am * (am / (am + f32(noise))), f32(1e-37))).astype(f32)
    sel = (a > noise) if above_noise else np.ones(m, bool)
    for arr, v in ((sy, y), (sxy, f32(x) * y)):
        arr.reshape(-1)[:m][sel] += v[sel]
    if above_noise:
        sx.reshape(-1)[:m][sel] += f32(x)
        sxx.reshape(-1)[:m][sel] += f32(x) * f32(x)
        n.reshape(-1)[:m][sel] += f32(1)


def occupancy_accumulate(grid, block, A, q, count, nvox):
    m = min(int(nvox), _threads(grid, block))
    count.reshape(-1)[:m] += (A.reshape(-1)[:m] >= q).astype(f32)


def first_crossing(grid, block, W, D, H, Wd, rows, cols, nr, nc, t, depth):
    D, H, Wd, nr, nc = int(D), int(H), int(Wd), int(nr), int(nc)
    ni, nj = min(nr, _threads(grid, block, 1)), min(nc, _threads(grid, block, 0))
    Wv = W.reshape(D, H, Wd)
    v, u = rows[:ni].astype(f32), cols[:nj].astype(f32)
    iv = np.minimum(np.floor(v).astype(np.int64), H - 2)
    iu = np.minimum(np.floor(u).astype(np.int64), Wd - 2)
    fv = (v - iv.astype(f32))[:, None]
    fu = (u - iu.astype(f32))[None, :]
    out = np.full((ni, nj), np.nan, f32)
    done = np.zeros((ni, nj), bool)
    prev = np.zeros((ni, nj), f32)
    I, J = iv[:, None], iu[None, :]
    for p in range(D):
        P = Wv[p]
        a, b, c, d = P[I, J], P[I, J + 1], P[I + 1, J], P[I + 1, J + 1]
        top = a + fu * (b - a)
        bot = c + fu * (d - c)
        val = (top + fv * (bot - top)).astype(f32)
        hit = (~done) & (val >= t)
        if p == 0:
            out[hit] = 0.0
        else:
            with np.errstate(divide="ignore", invalid="ignore"):
                root = (f32(p - 1) + (f32(t) - prev) / (val - prev)).astype(f32)
            out[hit] = root[hit]
        done |= hit
        prev = np.where(done, prev, val)
        if done.all():
            break
    depth.reshape(nr, nc)[:ni, :nj] = out


# ---- kernels/local_fsc.cu ------------------------------------------------------------------------------------

_LB, _LP = 20, 40


def lfsc_planes(grid, block, h1, h2, centres, nbox, nz, ny, nx, win, Y):
    """Per covered box: (b − mean)·win, then the x (real → 21) and y (40) transforms of its 20 z-planes."""
    nb = min(int(nbox), int(grid[0]))
    shape = (int(nz), int(ny), int(nx))
    W = win.reshape(_LB, _LB, _LB)
    out = Y.reshape(-1, 2, _LB, _LP, _LP // 2 + 1)
    off = np.arange(_LB) - _LB // 2
    for s in range(0, nb, 256):
        e = min(nb, s + 256)
        cz, cy, cx = np.unravel_index(centres[s:e].astype(np.int64), shape)
        idx = (cz[:, None, None, None] + off[None, :, None, None], cy[:, None, None, None] + off[None, None, :, None],
               cx[:, None, None, None] + off[None, None, None, :])
        for h, V in enumerate((h1, h2)):
            b = V.reshape(shape)[idx]
            m = (b.sum(axis=(1, 2, 3), dtype=np.float64) / b[0].size).astype(f32)
            p = (b - m[:, None, None, None]) * W
            X = sfft.rfft(p.astype(f32), n=_LP, axis=3)             # float32 transforms, as the kernel's sums
            out[s:e, h] = sfft.fft(X, n=_LP, axis=2)


def lfsc_shells(grid, block, Y, nbox, sums):
    """Per covered box: the z transform of both halves' planes and the Hermitian-weighted shell sums."""
    nb = min(int(nbox), int(grid[0]))
    Yv = Y.reshape(-1, 2, _LB, _LP, _LP // 2 + 1)
    S = sums.reshape(-1, 3, 35)
    f = np.fft.fftfreq(_LP) * _LP
    kx = np.arange(_LP // 2 + 1)
    k = np.rint(np.sqrt(f[:, None, None] ** 2 + f[None, :, None] ** 2 + kx[None, None, :] ** 2)).astype(int).ravel()
    w = np.broadcast_to(np.where((kx == 0) | (kx == _LP // 2), 1.0, 2.0), (_LP, _LP, kx.size)).ravel()
    M = np.zeros((k.size, 35), dtype=f32)
    M[np.flatnonzero(k < 35), k[k < 35]] = w[k < 35]
    for s in range(0, nb, 256):
        e = min(nb, s + 256)
        F1, F2 = (sfft.fft(Yv[s:e, h], n=_LP, axis=1).reshape(e - s, -1) for h in range(2))  # complex64
        for j, (a, b) in enumerate(((F1, F2), (F1, F1), (F2, F2))):
            S[s:e, j] = (a.real * b.real + a.imag * b.imag) @ M


# Device-memory bytes a launch reads and writes, where that is not the size of its array arguments (the
# 1.c kernels take the whole half maps but read one 20³ box of each per block): counted from the kernels.
_LFSC_Y_BOX = 2 * 20 * 840 * 8          # both halves' plane transforms of one box (complex64)


def _lfsc_planes_traffic(args) -> int:
    nbox = int(args[3])
    return nbox * (2 * 20 ** 3 * 4 + 8 + _LFSC_Y_BOX)


def _lfsc_shells_traffic(args) -> int:
    nbox = int(args[1])
    return nbox * (_LFSC_Y_BOX + 3 * 35 * 8)


TRAFFIC = {"lfsc_planes": _lfsc_planes_traffic, "lfsc_shells": _lfsc_shells_traffic}
