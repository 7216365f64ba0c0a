// ctypes entry point for kernels/raycast.cu run on the CPU (tests/test_kernels_emulated.py).
extern "C" void run_first_crossing(int gx, int gy, int bx, int by, const float* W, int D, int H, int Wd,
                                   const float* rows, const float* cols, int nr, int nc, float t, float* depth) {
    cuda_emul_launch(dim3(gx, gy), dim3(bx, by), first_crossing, W, D, H, Wd, rows, cols, nr, nc, t, depth);
}
