// Runs CUDA C++ kernel sources on the CPU, for tests only: one std::thread per CUDA thread, blocks one after
// the other, __syncthreads() a std::barrier of the block, __shared__ variables process-wide statics (one block
// runs at a time, so they are the block's), atomics through std::atomic_ref.  It checks the kernels' logic
// (indexing, barriers, shared-memory reuse, reductions) where no GPU is at hand; it does not model warps
// (no shuffles), timing or the GPU's floating-point contraction.  Used by tests/test_kernels_emulated.py:
//   g++ -std=c++20 -O1 -pthread -shared -fPIC -include tests/cuda_emul/cuda_cpu.h -x c++ kernels/X.cu launcher.cpp
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <thread>
#include <vector>

struct alignas(8) float2 { float x, y; };
struct alignas(16) double2 { double x, y; };
struct uint3 { unsigned x, y, z; };
struct dim3 {
    unsigned x, y, z;
    dim3(unsigned a = 1, unsigned b = 1, unsigned c = 1) : x(a), y(b), z(c) {}
};
inline float2 make_float2(float a, float b) { return float2{a, b}; }

inline thread_local uint3 threadIdx;
inline uint3 blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* cuda_emul_barrier = nullptr;

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __restrict__ __restrict

inline void __syncthreads() { cuda_emul_barrier->arrive_and_wait(); }
inline void sincospif(float v, float* s, float* c) {
    const double a = M_PI * (double)v;
    *s = (float)std::sin(a);
    *c = (float)std::cos(a);
}
inline float cospif(float v) { return (float)std::cos(M_PI * (double)v); }
inline float sinpif(float v) { return (float)std::sin(M_PI * (double)v); }
inline float rintf_(float v) { return std::rint(v); }
template <class T> inline T atomicAdd(T* p, T v) { return std::atomic_ref<T>(*p).fetch_add(v); }

// launch(grid, block, kernel, args...): every block in turn, each with block.x·block.y·block.z threads.
template <class... P, class... A>
void cuda_emul_launch(dim3 grid, dim3 block, void (*kernel)(P...), A... args) {
    gridDim = grid;
    blockDim = block;
    const unsigned nt = block.x * block.y * block.z;
    for (unsigned bz = 0; bz < grid.z; ++bz)
        for (unsigned by = 0; by < grid.y; ++by)
            for (unsigned bx = 0; bx < grid.x; ++bx) {
                blockIdx = uint3{bx, by, bz};
                std::barrier<> bar((std::ptrdiff_t)nt);
                cuda_emul_barrier = &bar;
                std::vector<std::thread> threads;
                threads.reserve(nt);
                for (unsigned i = 0; i < nt; ++i)
                    threads.emplace_back([=] {
                        threadIdx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
                        kernel(args...);
                    });
                for (auto& th : threads) th.join();
            }
}
