// y = W x for a batch of tokens: the one place the forward's matrix products are computed, so the
// kernel choice lives here.
//
// Now: weight rows are dequantized once (the dispatched dequantize_row kernel), kMatmulRowTile at a time,
// into the calling thread's scratch and dotted with every token's fp32 activations; rows are split over
// the pool.
// Later: quantize x to the type's vec_dot_type and use the registry's vec_dot / matmul kernels.
#pragma once

#include <cstdint>

#include "cpu/threadpool.h"
#include "model/weights.h"

namespace qrt::model {

constexpr int64_t kMatmulRowTile = 8;

// x: [n_tokens][w.cols], y: [n_tokens][w.rows]; scratch: pool.n_threads() areas of scratch_stride floats,
// each at least kMatmulRowTile * w.cols.
void matmul(ThreadPool& pool, const Matrix& w, const float* x, int n_tokens, float* y, float* scratch,
            int64_t scratch_stride);

}  // namespace qrt::model
