// Single CUDA kernels on host data, through device copies: what tests/test_cuda.py (marker gpu) compares
// with the CPU reference on random inputs. Each call allocates, copies, launches, synchronizes and frees;
// errors are std::runtime_error (no device, a failed launch).
#pragma once

#include <cstdint>
#include <vector>

#include "format/types.h"

namespace qrt::cuda::testing {

// y [n_tok][rows] = W x, W: `rows` rows of `cols` values of `type` in nbytes bytes at w.
std::vector<float> matvec(TypeId type, const uint8_t* w, uint64_t nbytes, int64_t cols, int64_t rows,
                          const float* x, int n_tok);
std::vector<float> rmsnorm(const float* x, const float* w, int64_t n, int n_tok, float eps);
std::vector<float> rope(const float* x, int n_tok, int n_head, int head_dim, const int32_t* pos,
                        const float* inv_freq, float freq_scale, bool neox);
std::vector<float> silu_mul(const float* gate, const float* up, int64_t n);

}  // namespace qrt::cuda::testing
