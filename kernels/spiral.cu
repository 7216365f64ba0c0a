// Spiral-amplitude engine kernels (compiled at run time by CuPy/NVRTC; see gpuvalid/spiral.py).
//
// Arrays are C-ordered [z][y][x]; complex64 is float2 (re, im).  Frequencies follow NumPy's fftfreq
// order: index k < (n+1)/2 is +k, otherwise k − n (so the Nyquist index n/2 of an even axis is −n/2).

// Block-wide sum of one float per thread; the result is valid in thread 0.
__device__ __forceinline__ float block_sum(float v, float* shared) {
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
    if (lane == 0) shared[warp] = v;
    __syncthreads();
    v = 0.0f;
    if (warp == 0) {
        int nw = (blockDim.x + 31) >> 5;
        v = (lane < nw) ? shared[lane] : 0.0f;
        for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    }
    __syncthreads();
    return v;
}

__device__ __forceinline__ float signed_freq(int k, int n, float step, bool* nyquist) {
    int s = (k < (n + 1) / 2) ? k : k - n;
    *nyquist = ((n & 1) == 0) && (k == n / 2);
    return s * step;
}

// For nb shells at once: the packed spectra P[b][0] = S·F·(1 + ux) and P[b][1] = S·F·(uz − i·uy),
// with S = exp(−(|f| − f0[b])² · inv2w2), and the unnormalised shell sums norms[b] += Σ S.
// The Riesz unit component u_j is 0 on the Nyquist plane of axis j and at the origin.
extern "C" __global__ void spiral_pack(const float2* __restrict__ F, float2* __restrict__ P,
                                       const float* __restrict__ f0, int nb, float inv2w2,
                                       int nz, int ny, int nx, float dz, float dy, float dx,
                                       double* __restrict__ norms) {
    __shared__ float partial[32];
    long long nvox = (long long)nz * ny * nx;
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    bool active = i < nvox;
    float2 Fv = make_float2(0.0f, 0.0f);
    float r = 0.0f, ux = 0.0f, uy = 0.0f, uz = 0.0f;
    if (active) {
        int kx = (int)(i % nx);
        int ky = (int)((i / nx) % ny);
        int kz = (int)(i / ((long long)nx * ny));
        bool qz, qy, qx;
        float fz = signed_freq(kz, nz, dz, &qz);
        float fy = signed_freq(ky, ny, dy, &qy);
        float fx = signed_freq(kx, nx, dx, &qx);
        r = sqrtf(fz * fz + fy * fy + fx * fx);
        if (r > 0.0f) {
            float inv = 1.0f / r;
            ux = qx ? 0.0f : fx * inv;
            uy = qy ? 0.0f : fy * inv;
            uz = qz ? 0.0f : fz * inv;
        }
        Fv = F[i];
    }
    for (int b = 0; b < nb; ++b) {
        float s = 0.0f;
        if (active) {
            float d = r - f0[b];
            s = expf(-d * d * inv2w2);
            float2 sf = make_float2(s * Fv.x, s * Fv.y);
            float c1 = 1.0f + ux;
            P[(2LL * b) * nvox + i] = make_float2(sf.x * c1, sf.y * c1);
            // (a + ib)(uz − i·uy) = a·uz + b·uy + i(b·uz − a·uy)
            P[(2LL * b + 1) * nvox + i] = make_float2(sf.x * uz + sf.y * uy, sf.y * uz - sf.x * uy);
        }
        float tot = block_sum(s, partial);
        if (threadIdx.x == 0) atomicAdd(&norms[b], (double)tot);
    }
}

// A[b][i] = sqrt(|Z[b][0][i]|² + |Z[b][1][i]|²) / norms[b]  (Z: the inverse transforms of P).
extern "C" __global__ void spiral_magnitude(const float2* __restrict__ Z, float* __restrict__ A,
                                            const double* __restrict__ norms, int nb, long long nvox) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nvox) return;
    for (int b = 0; b < nb; ++b) {
        float2 z1 = Z[(2LL * b) * nvox + i];
        float2 z2 = Z[(2LL * b + 1) * nvox + i];
        double nrm = norms[b];
        float inv = nrm > 0.0 ? (float)(1.0 / nrm) : 0.0f;
        A[(long long)b * nvox + i] = sqrtf(z1.x * z1.x + z1.y * z1.y + z2.x * z2.x + z2.y * z2.y) * inv;
    }
}

// LocBfactor sums for one shell: y = ln(A²/(A + noise)); Σy += y, Σxy += x·y.  With above_noise = 1
// only points with A > noise count, and Σx, Σx², n are per voxel too.
extern "C" __global__ void lsq_accumulate(const float* __restrict__ A, float noise, float x,
                                          float* __restrict__ sy, float* __restrict__ sxy,
                                          float* __restrict__ sx, float* __restrict__ sxx,
                                          float* __restrict__ n, int above_noise, long long nvox) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nvox) return;
    float a = A[i];
    float am = fmaxf(a, 1e-30f);
    float y = logf(fmaxf(am * (am / (am + noise)), 1e-37f));   // ln(A²/(A + noise)), A² never formed
    if (above_noise) {
        if (a > noise) {
            sy[i] += y;
            sxy[i] += x * y;
            sx[i] += x;
            sxx[i] += x * x;
            n[i] += 1.0f;
        }
    } else {
        sy[i] += y;
        sxy[i] += x * y;
    }
}

// LocOccupancy: count[i] += (A[i] >= q).
extern "C" __global__ void occupancy_accumulate(const float* __restrict__ A, float q,
                                                float* __restrict__ count, long long nvox) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= nvox) return;
    if (A[i] >= q) count[i] += 1.0f;
}
