// ctypes entry points for kernels/spiral.cu run on the CPU (tests/test_kernels_emulated.py).
extern "C" void run_spiral_pack(int grid, int block, const float* F, float* P, const float* f0, int nb, float inv2w2,
                                int nz, int ny, int nx, float dz, float dy, float dx, double* norms) {
    cuda_emul_launch(dim3(grid), dim3(block), spiral_pack, (const float2*)F, (float2*)P, f0, nb, inv2w2, nz, ny, nx,
                     dz, dy, dx, norms);
}

extern "C" void run_spiral_magnitude(int grid, int block, const float* Z, float* A, const double* norms, int nb,
                                     long long nvox) {
    cuda_emul_launch(dim3(grid), dim3(block), spiral_magnitude, (const float2*)Z, A, norms, nb, nvox);
}
