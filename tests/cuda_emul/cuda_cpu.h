// Runs CUDA C++ kernel sources on the CPU, for tests only: one std::thread per CUDA thread, blocks one after
// the other, __syncthreads() a std::barrier of the block, __shared__ variables process-wide statics (one block
// runs at a time, so they are the block's), atomics through std::atomic_ref, __shfl_down_sync an exchange
// through a per-warp barrier (all 32 lanes of a warp must call it, as with the full mask).  It checks the
// kernels' logic (indexing, barriers, shared-memory reuse, reductions) where no GPU is at hand; it does not
// model timing, lane divergence within a warp or the GPU's floating-point contraction.  Used by tests/test_kernels_emulated.py:
//   g++ -std=c++20 -O1 -pthread -shared -fPIC -include tests/cuda_emul/cuda_cpu.h -x c++ kernels/X.cu launcher.cpp
#pragma once
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstdint>
#include <algorithm>
#include <cstring>
#include <memory>
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
inline thread_local unsigned cuda_emul_tid = 0;             // linear thread index in the block
inline uint3 blockIdx;
inline dim3 blockDim, gridDim;
inline std::barrier<>* cuda_emul_barrier = nullptr;
inline std::vector<std::barrier<>*> cuda_emul_warp_barriers;   // one per warp of the running block
inline std::vector<std::uint64_t> cuda_emul_exchange;           // one slot per thread, for shuffles

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)
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
inline float __int_as_float(int i) {
    float f;
    std::memcpy(&f, &i, sizeof f);
    return f;
}
// __shfl_down_sync(mask, v, o): lane l gets lane l + o's v (its own v when l + o is past the warp's end).
template <class T> inline T __shfl_down_sync(unsigned, T v, unsigned o) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    const unsigned tid = cuda_emul_tid, lane = tid % 32, base = tid - lane;
    const unsigned width = std::min<unsigned>(32, (unsigned)cuda_emul_exchange.size() - base);
    std::barrier<>* bar = cuda_emul_warp_barriers[tid / 32];
    std::memcpy(&cuda_emul_exchange[tid], &v, sizeof(T));
    bar->arrive_and_wait();
    T out = v;
    if (lane + o < width) std::memcpy(&out, &cuda_emul_exchange[base + lane + o], sizeof(T));
    bar->arrive_and_wait();
    return out;
}
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
                std::vector<std::unique_ptr<std::barrier<>>> warps;
                cuda_emul_warp_barriers.clear();
                for (unsigned w = 0; w * 32 < nt; ++w) {
                    warps.push_back(std::make_unique<std::barrier<>>((std::ptrdiff_t)std::min(32u, nt - w * 32)));
                    cuda_emul_warp_barriers.push_back(warps.back().get());
                }
                cuda_emul_exchange.assign(nt, 0);
                std::vector<std::thread> threads;
                threads.reserve(nt);
                for (unsigned i = 0; i < nt; ++i)
                    threads.emplace_back([=] {
                        threadIdx = uint3{i % block.x, (i / block.x) % block.y, i / (block.x * block.y)};
                        cuda_emul_tid = i;
                        kernel(args...);
                    });
                for (auto& th : threads) th.join();
            }
}
