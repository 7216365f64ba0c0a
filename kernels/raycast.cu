// First threshold crossing along orthographic pixel rays (gpuvalid/render/raycast.py mirrors this).
//
// W is the camera-frame map, float32 [D][H][Wd] contiguous, depth axis first (d = 0 nearest the
// viewer).  Pixel (i, j) samples the fractional in-plane position (rows[i], cols[j]) (voxels, already
// clamped to [0, H-1] x [0, Wd-1]).  At each plane the value is the bilinear combination of the four
// neighbouring columns; the first plane p with value >= t ends the ray and the depth is the linear
// root between planes p-1 and p (0 when p == 0, NaN when no plane reaches t).
// Compile with --fmad=false so the arithmetic matches NumPy's float32 operations.

extern "C" __global__ void first_crossing(const float* __restrict__ W, const int D, const int H,
                                          const int Wd, const float* __restrict__ rows,
                                          const float* __restrict__ cols, const int nr,
                                          const int nc, const float t, float* __restrict__ depth)
{
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    const int i = blockIdx.y * blockDim.y + threadIdx.y;
    if (i >= nr || j >= nc) return;

    const float v = rows[i];
    const float u = cols[j];
    int iv = (int)floorf(v);
    int iu = (int)floorf(u);
    if (iv > H - 2) iv = H - 2;
    if (iu > Wd - 2) iu = Wd - 2;
    const float fv = v - (float)iv;
    const float fu = u - (float)iu;

    const long long plane = (long long)H * (long long)Wd;
    const long long base = (long long)iv * Wd + iu;
    float prev = 0.0f;
    float out = __int_as_float(0x7fc00000);  // NaN: no crossing
    for (int p = 0; p < D; ++p) {
        const float* P = W + (long long)p * plane + base;
        const float a = P[0];
        const float b = P[1];
        const float c = P[Wd];
        const float d = P[Wd + 1];
        const float top = a + fu * (b - a);
        const float bot = c + fu * (d - c);
        const float val = top + fv * (bot - top);
        if (val >= t) {
            out = (p == 0) ? 0.0f : (float)(p - 1) + (t - prev) / (val - prev);
            break;
        }
        prev = val;
    }
    depth[(long long)i * nc + j] = out;
}
