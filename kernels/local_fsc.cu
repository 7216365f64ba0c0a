// Local FSC of 20³ boxes zero-padded to 40³ (section 1.c; see gpuvalid/level1/local_fsc.py), in two
// kernels that never form the padded boxes.  The padded transform F(kz, ky, kx) of a box b(z, y, x)
// (z, y, x < 20, zero beyond) is separable:
//   lfsc_planes:  Y(z, ky, kx) = Σ_y e^{-2πi·ky·y/40} Σ_x e^{-2πi·kx·x/40} b(z, y, x)   (20 planes, 40 × 21)
//   lfsc_shells:  F(kz, ky, kx) = Σ_z e^{-2πi·kz·z/40} Y(z, ky, kx), reduced at once to shell sums.
// Only the x ≥ 0 half (kx = 0 … 20, numpy.fft.rfftn's half grid) is formed; the shell sums carry the
// Hermitian weights (1 on the kx = 0 and kx = 20 planes, 2 elsewhere).  A thread block handles one box.
// Every 40-point transform of 20 samples gives several coefficients per pass over the samples, from its
// even- and odd-sample sums E_k, O_k (10 terms each), since e^{-2πi·(k+20)·n/40} = (−1)^n·e^{-2πi·k·n/40}:
//   F(k) = E_k + O_k,  F(k + 20) = E_k − O_k,  and for real samples F(20 − k) = conj(E_k − O_k)
// (along x: two per pass); for complex samples four real running products per half give E_{±k}, O_{±k},
// so F(k), F(−k), F(k + 20), F(20 − k) come from one pass (along y and z; lfsc_dft4, lfsc_shells).  About
// 2.8 million multiply-adds per box instead of the direct sums' 8.9.
// Arrays are C-ordered [z][y][x]; complex64 is float2 (re, im).  No shuffles or warp-synchronous code:
// tests/cuda_emul runs these sources on the CPU with one thread per CUDA thread.

#define LB 20                  // box edge (voxels)
#define LP 40                  // padded edge
#define LKX 21                 // LP / 2 + 1 coefficients along x
#define LCOL (LP * LKX)        // 840 (ky, kx) columns per plane
#define LNSH 35                // shells k = round(|k|) = 0 … floor(LP·√3/2)
#define LPLANES_THREADS 256    // lfsc_planes' block size (a power of two: its block reduction); its launch
                               // bounds ask ptxas for 5 such blocks per SM (≤ 48 registers, no spill on sm_80–100)

// e^{-2πi·j/40}, j = 0 … 39
__device__ __forceinline__ void lfsc_twiddles(float2* tw) {
    for (int j = threadIdx.x; j < LP; j += blockDim.x) {
        float s, c;
        sincospif(j / 20.0f, &s, &c);
        tw[j] = make_float2(c, -s);
    }
}

// One term of a DFT sum of real samples: acc + p·e.
__device__ __forceinline__ float2 lfsc_term(float p, float2 e, float2 acc) {
    return make_float2(fmaf(p, e.x, acc.x), fmaf(p, e.y, acc.y));
}

// Twiddle index of the next sample: j + k modulo 40.
__device__ __forceinline__ int lfsc_step(int j, int k) {
    j += k;
    return j >= LP ? j - LP : j;
}

// Running products of a DFT sum of complex samples a = x + iy with twiddles e: u = Σx·e.x, v = Σy·e.y,
// r = Σy·e.x, p = Σx·e.y.  They give Σ a·e = (u − v) + i(p + r) (lfsc_plus) and Σ a·conj(e) =
// (u + v) + i(r − p) (lfsc_minus): the coefficients k and −k for the multiply-adds of one.
struct LfscProducts {
    float u, v, r, p;
};
__device__ __forceinline__ void lfsc_accumulate(LfscProducts& q, float2 a, float2 e) {
    q.u = fmaf(a.x, e.x, q.u);
    q.v = fmaf(a.y, e.y, q.v);
    q.r = fmaf(a.y, e.x, q.r);
    q.p = fmaf(a.x, e.y, q.p);
}
__device__ __forceinline__ float2 lfsc_plus(const LfscProducts& q) { return make_float2(q.u - q.v, q.p + q.r); }
__device__ __forceinline__ float2 lfsc_minus(const LfscProducts& q) { return make_float2(q.u + q.v, q.r - q.p); }
__device__ __forceinline__ float2 lfsc_sum(float2 a, float2 b) { return make_float2(a.x + b.x, a.y + b.y); }
__device__ __forceinline__ float2 lfsc_diff(float2 a, float2 b) { return make_float2(a.x - b.x, a.y - b.y); }

// Even- and odd-sample halves of coefficient k of 20 real samples zero-padded to 40:
// E = Σ_{n even} in[n·stride]·e^{-2πi·k·n/40}, O = Σ_{n odd} (F(k) = E + O, F(20 − k) = conj(E − O)).
__device__ __forceinline__ void lfsc_dft_eo(const float* in, int stride, int k, const float2* tw, float2& E, float2& O) {
    E = make_float2(0.0f, 0.0f);
    O = make_float2(0.0f, 0.0f);
    int j = 0;
    for (int n = 0; n < LB; n += 2) {
        E = lfsc_term(in[n * stride], tw[j], E);
        j = lfsc_step(j, k);
        O = lfsc_term(in[(n + 1) * stride], tw[j], O);
        j = lfsc_step(j, k);
    }
}

// Four coefficients of 20 complex samples a = x + iy zero-padded to 40, from one pass (k = 0 … 10):
// F(k), F(−k), F(k + 20), F(20 − k).  The running products (LfscProducts) of the even samples give E(±k),
// those of the odd samples O(±k); then F(±k) = E(±k) + O(±k) and, since e^{-2πi·(k+20)·n/40} =
// (−1)^n·e^{-2πi·k·n/40}, F(k + 20) = E(k) − O(k) and F(20 − k) = E(−k) − O(−k).
__device__ __forceinline__ void lfsc_dft4(const float2* in, int stride, int k, const float2* tw, float2& Fk,
                                          float2& Fmk, float2& Fk20, float2& F20mk) {
    LfscProducts E = {0.0f, 0.0f, 0.0f, 0.0f}, O = {0.0f, 0.0f, 0.0f, 0.0f};
    int j = 0;
    for (int n = 0; n < LB; n += 2) {
        lfsc_accumulate(E, in[n * stride], tw[j]);
        j = lfsc_step(j, k);
        lfsc_accumulate(O, in[(n + 1) * stride], tw[j]);
        j = lfsc_step(j, k);
    }
    Fk = lfsc_sum(lfsc_plus(E), lfsc_plus(O));
    Fmk = lfsc_sum(lfsc_minus(E), lfsc_minus(O));
    Fk20 = lfsc_diff(lfsc_plus(E), lfsc_plus(O));
    F20mk = lfsc_diff(lfsc_minus(E), lfsc_minus(O));
}

// For each box n < nbox centred on the flat voxel centres[n] (voxels c − 10 … c + 9 along each axis, all
// inside the map): both half maps' boxes minus their own mean, times the taper win[20·20·20], and the 2-D
// transform of each z-plane: Y[n][h][z][ky][kx] (h = 0, 1 for h1, h2; 2·20·840 complex64 per box).
// Launch with LPLANES_THREADS threads per block and at least nbox blocks.
extern "C" __global__ void __launch_bounds__(LPLANES_THREADS, 5) lfsc_planes(const float* __restrict__ h1, const float* __restrict__ h2,
                                       const long long* __restrict__ centres, const int nbox,
                                       const int nz, const int ny, const int nx,
                                       const float* __restrict__ win, float2* __restrict__ Y) {
    __shared__ float2 tw[LP];
    __shared__ double red[2][LPLANES_THREADS];
    __shared__ float plane[LB * LB];
    __shared__ float2 X[LB * LKX];
    const int n = blockIdx.x;
    if (n >= nbox) return;                     // the whole block
    const int t = threadIdx.x, nt = blockDim.x;
    const long long c = centres[n];
    const long long nyx = (long long)ny * nx;
    const int cz = (int)(c / nyx);
    const int cy = (int)((c - cz * nyx) / nx);
    const int cx = (int)(c - cz * nyx - (long long)cy * nx);
    const long long origin = ((long long)(cz - LB / 2) * ny + (cy - LB / 2)) * nx + (cx - LB / 2);
    lfsc_twiddles(tw);

    // box means, accumulated in double
    double s1 = 0.0, s2 = 0.0;
    for (int i = t; i < LB * LB * LB; i += nt) {
        const int z = i / (LB * LB), y = (i / LB) % LB, x = i % LB;
        const long long v = origin + ((long long)z * ny + y) * nx + x;
        s1 += h1[v];
        s2 += h2[v];
    }
    red[0][t] = s1;
    red[1][t] = s2;
    __syncthreads();
    for (int s = nt / 2; s > 0; s >>= 1) {
        if (t < s) {
            red[0][t] += red[0][t + s];
            red[1][t] += red[1][t + s];
        }
        __syncthreads();
    }
    const float mean1 = (float)(red[0][0] / (LB * LB * LB)), mean2 = (float)(red[1][0] / (LB * LB * LB));

    for (int hz = 0; hz < 2 * LB; ++hz) {
        const int h = hz / LB, z = hz % LB;
        const float* __restrict__ src = h ? h2 : h1;
        const float mean = h ? mean2 : mean1;     // (a mean[h] array indexed at run time would live in local memory)
        for (int i = t; i < LB * LB; i += nt) {          // tapered plane z
            const int y = i / LB, x = i % LB;
            plane[i] = (src[origin + ((long long)z * ny + y) * nx + x] - mean) * win[z * LB * LB + i];
        }
        __syncthreads();
        // X[y][kx] = Σ_x plane[y][x]·e^{-2πi·kx·x/40}: kx = k and kx = 20 − k (k = 0 … 10) from one E, O
        for (int i = t; i < LB * (LB / 2 + 1); i += nt) {
            const int y = i / (LB / 2 + 1), k = i % (LB / 2 + 1);
            float2 E, O;
            lfsc_dft_eo(plane + y * LB, 1, k, tw, E, O);
            X[y * LKX + k] = make_float2(E.x + O.x, E.y + O.y);
            if (k < LB / 2) X[y * LKX + LB - k] = make_float2(E.x - O.x, O.y - E.y);
        }
        __syncthreads();
        // Y[ky][kx] = Σ_y X[y][kx]·e^{-2πi·ky·y/40}: ky = k, 40 − k, k + 20 and 20 − k from one pass
        // (k = 0 … 10; when k = 0 or 10 the four are two).  The next plane's writes to `plane` and `X` come
        // after the next __syncthreads, which every thread reaches only when it is done reading X here.
        float2* __restrict__ out = Y + ((long long)(2 * n + h) * LB + z) * LCOL;
        for (int i = t; i < (LB / 2 + 1) * LKX; i += nt) {
            const int k = i / LKX, kx = i % LKX;
            float2 Fk, Fmk, Fk20, F20mk;
            lfsc_dft4(X + kx, LKX, k, tw, Fk, Fmk, Fk20, F20mk);
            out[k * LKX + kx] = Fk;
            out[(k + LB) * LKX + kx] = Fk20;
            if (k > 0 && k < LB / 2) {
                out[(LP - k) * LKX + kx] = Fmk;
                out[(LB - k) * LKX + kx] = F20mk;
            }
        }
    }
}

// From lfsc_planes' Y: F1, F2 = the z-transforms of both halves, and per box the Hermitian-weighted shell
// sums sums[n][0][k] = Σ Re(F1·F2*), sums[n][1][k] = Σ |F1|², sums[n][2][k] = Σ |F2|² over the
// coefficients with round(√(kz² + ky² + kx²)) = k (signed kz, ky as numpy.fft.fftfreq·40), k < 35.
// Launch with exactly LSHELLS_THREADS threads per block and at least nbox blocks.
//
// Each thread transforms its (ky, kx) columns along z, four coefficients per pass over the 20 samples
// (k = 0 … 10): with e = e^{-2πi·k·z/40} and a = x + iy,  a·e = (x·e.x − y·e.y) + i(x·e.y + y·e.x)  and
// a·conj(e) = (x·e.x + y·e.y) + i(y·e.x − x·e.y),  so four running products give kz = k and kz = −k (as many
// multiply-adds as one coefficient of the direct sum); kept apart for even and odd z they also give
// kz = k + 20 and kz = 20 − k (E − O).  The pairs lie on the shells of |kz| = k and |kz| = 20 − k; for each,
// the thread keeps one running shell sum and writes it to its own slots of `part` (float) when the shell
// changes: no atomics (in shared memory they compile to compare-and-swap loops) and a fixed summation order.
// The block then adds the slots of each shell in float64.
#define LSHELLS_THREADS 96     // lfsc_shells' block: 840 columns, 8 or 9 per thread
#define LPART (LSHELLS_THREADS + 1)   // one padding slot: a shell's slots start in different banks

// Adds w·(sc, s1, s2) to thread t's slots of shell k (shells ≥ LNSH, beyond the box corner's, are dropped).
__device__ __forceinline__ void lfsc_add(float* part, int k, int t, float w, float sc, float s1, float s2) {
    if (k >= 0 && k < LNSH) {
        part[k * LPART + t] = fmaf(w, sc, part[k * LPART + t]);
        part[(LNSH + k) * LPART + t] = fmaf(w, s1, part[(LNSH + k) * LPART + t]);
        part[(2 * LNSH + k) * LPART + t] = fmaf(w, s2, part[(2 * LNSH + k) * LPART + t]);
    }
}

// The running shell sums of one sequence of coefficients whose shell changes monotonically.
struct LfscRun {
    int cur;
    float sc, s1, s2;
};

// Before adding a coefficient on shell sh: when the shell changes, the running sums go to the thread's slots.
__device__ __forceinline__ void lfsc_run_shell(LfscRun& r, int sh, float* part, int t, float w) {
    if (sh != r.cur) {                         // shells change rarely along kz: few writes per column
        lfsc_add(part, r.cur, t, w, r.sc, r.s1, r.s2);
        r.cur = sh;
        r.sc = r.s1 = r.s2 = 0.0f;
    }
}

// Adds Re(F1·F2*), |F1|², |F2|² of one coefficient of both halves to the running sums.
__device__ __forceinline__ void lfsc_run_add(LfscRun& r, float2 f1, float2 f2) {
    r.sc = fmaf(f1.x, f2.x, fmaf(f1.y, f2.y, r.sc));
    r.s1 = fmaf(f1.x, f1.x, fmaf(f1.y, f1.y, r.s1));
    r.s2 = fmaf(f2.x, f2.x, fmaf(f2.y, f2.y, r.s2));
}

extern "C" __global__ void __launch_bounds__(LSHELLS_THREADS) lfsc_shells(const float2* __restrict__ Y,
                                                                        const int nbox,
                                                                        double* __restrict__ sums) {
    __shared__ float2 tw[LP];
    __shared__ float part[3 * LNSH * LPART];   // part[(j·35 + shell)·97 + thread], j = 0 (cross), 1, 2
    const int n = blockIdx.x;
    if (n >= nbox) return;                     // the whole block
    const int t = threadIdx.x;
    lfsc_twiddles(tw);
    for (int i = 0; i < 3 * LNSH; ++i) part[i * LPART + t] = 0.0f;
    __syncthreads();
    const float2* __restrict__ y1 = Y + (long long)(2 * n) * LB * LCOL;
    const float2* __restrict__ y2 = y1 + LB * LCOL;
    for (int col = t; col < LCOL; col += LSHELLS_THREADS) {
        const int ky = col / LKX, kx = col % LKX;
        const int sy = ky < LP / 2 ? ky : ky - LP;
        const int r2 = sy * sy + kx * kx;
        const float w = (kx == 0 || kx == LP / 2) ? 1.0f : 2.0f;
        float2 a[LB], b[LB];
#pragma unroll
        for (int z = 0; z < LB; ++z) {
            a[z] = y1[z * LCOL + col];
            b[z] = y2[z * LCOL + col];
        }
        LfscRun A = {-1, 0.0f, 0.0f, 0.0f}, B = {-1, 0.0f, 0.0f, 0.0f};   // |kz| = k and |kz| = 20 − k
        for (int k = 0; k <= LP / 4; ++k) {
            // even- (E) and odd-z (O) running products of both halves (a, b)
            LfscProducts aE = {0.0f, 0.0f, 0.0f, 0.0f}, aO = aE, bE = aE, bO = aE;
            int j = 0;
#pragma unroll
            for (int z = 0; z < LB; z += 2) {
                float2 e = tw[j];
                lfsc_accumulate(aE, a[z], e);
                lfsc_accumulate(bE, b[z], e);
                j = lfsc_step(j, k);
                e = tw[j];
                lfsc_accumulate(aO, a[z + 1], e);
                lfsc_accumulate(bO, b[z + 1], e);
                j = lfsc_step(j, k);
            }
            const float2 aEp = lfsc_plus(aE), aEm = lfsc_minus(aE), aOp = lfsc_plus(aO), aOm = lfsc_minus(aO);
            const float2 bEp = lfsc_plus(bE), bEm = lfsc_minus(bE), bOp = lfsc_plus(bO), bOm = lfsc_minus(bO);
            // |kz| = k: F(k) = E(k) + O(k) and F(−k) = E(−k) + O(−k) (one coefficient when k = 0)
            lfsc_run_shell(A, (int)rintf(sqrtf((float)(k * k + r2))), part, t, w);
            lfsc_run_add(A, lfsc_sum(aEp, aOp), lfsc_sum(bEp, bOp));
            if (k > 0) lfsc_run_add(A, lfsc_sum(aEm, aOm), lfsc_sum(bEm, bOm));
            // |kz| = 20 − k: F(k + 20) = E(k) − O(k) and F(20 − k) = E(−k) − O(−k) (one when k = 0; when
            // k = 10 they are F(30) and F(10), already counted above)
            if (k < LP / 4) {
                lfsc_run_shell(B, (int)rintf(sqrtf((float)((LB - k) * (LB - k) + r2))), part, t, w);
                lfsc_run_add(B, lfsc_diff(aEp, aOp), lfsc_diff(bEp, bOp));
                if (k > 0) lfsc_run_add(B, lfsc_diff(aEm, aOm), lfsc_diff(bEm, bOm));
            }
        }
        lfsc_add(part, A.cur, t, w, A.sc, A.s1, A.s2);
        lfsc_add(part, B.cur, t, w, B.sc, B.s1, B.s2);
    }
    __syncthreads();
    for (int i = t; i < 3 * LNSH; i += LSHELLS_THREADS) {
        double acc = 0.0;
        for (int th = 0; th < LSHELLS_THREADS; ++th) acc += (double)part[i * LPART + th];
        sums[(long long)n * 3 * LNSH + i] = acc;
    }
}
