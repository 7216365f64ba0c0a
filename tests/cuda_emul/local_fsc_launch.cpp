// ctypes entry points for kernels/local_fsc.cu run on the CPU (tests/test_kernels_emulated.py): appended to
// the kernel source and compiled with -include tests/cuda_emul/cuda_cpu.h.
extern "C" void run_lfsc_planes(int grid, int block, const float* h1, const float* h2, const long long* centres,
                                int nbox, int nz, int ny, int nx, const float* win, float* Y) {
    cuda_emul_launch(dim3(grid), dim3(block), lfsc_planes, h1, h2, centres, nbox, nz, ny, nx, win, (float2*)Y);
}

extern "C" void run_lfsc_shells(int grid, int block, const float* Y, int nbox, double* sums) {
    cuda_emul_launch(dim3(grid), dim3(block), lfsc_shells, (const float2*)Y, nbox, sums);
}
