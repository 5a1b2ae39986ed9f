// Shared by the CUDA kernels: warp reductions and launch sizes.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

namespace qrt::cuda {

constexpr int kWarp = 32;

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = kWarp / 2; o > 0; o /= 2) v += __shfl_xor_sync(0xffffffffu, v, o);
    return v;
}

inline unsigned blocks_for(int64_t n, int per_block) {
    return unsigned((n + per_block - 1) / per_block);
}

}  // namespace qrt::cuda
