// Dequant-matvec for every weight type: y[t] = W x[t].
//
// One warp per output row; lane i takes the row's blocks i, i + 32, ..., decodes each with the format's
// QRT_HD dequantize_block_* (the CPU reference's own code) and dots it with x in f32; a warp reduction
// gives the row's value. One grid row (blockIdx.y) per token. This is the simple, obviously-right
// version: weights are read once per token (prefill re-reads them per token) and a lane's block reads
// are not coalesced. The fast path (Q8 activations with dp4a, wide coalesced loads, tiled mma for
// prefill) is still to come.
#include <stdexcept>
#include <string>

#include "cuda/common.cuh"
#include "cuda/kernels.h"
#include "format/kquants.h"
#include "format/legacy.h"
#include "format/nf4.h"

namespace qrt::cuda {

namespace {

constexpr int kRowsPerBlock = 8;  // warps per thread block

// A block decoder: QK values from kBytes bytes; gb is the block's index in the whole tensor.
#define QRT_CUDA_DEQ(NAME, BLOCK, QK_)                                          \
    struct Deq_##NAME {                                                         \
        static constexpr int QK = QK_;                                          \
        static constexpr int kBytes = int(sizeof(BLOCK));                       \
        __device__ void operator()(const uint8_t* p, int64_t, float* y) const { \
            dequantize_block_##NAME(*reinterpret_cast<const BLOCK*>(p), y);     \
        }                                                                       \
    };
QRT_CUDA_DEQ(q4_0, block_q4_0, QK4_0)
QRT_CUDA_DEQ(q4_1, block_q4_1, QK4_1)
QRT_CUDA_DEQ(q5_0, block_q5_0, QK5_0)
QRT_CUDA_DEQ(q5_1, block_q5_1, QK5_1)
QRT_CUDA_DEQ(q8_0, block_q8_0, QK8_0)
QRT_CUDA_DEQ(q2_K, block_q2_K, QK_K)
QRT_CUDA_DEQ(q3_K, block_q3_K, QK_K)
QRT_CUDA_DEQ(q4_K, block_q4_K, QK_K)
QRT_CUDA_DEQ(q5_K, block_q5_K, QK_K)
QRT_CUDA_DEQ(q6_K, block_q6_K, QK_K)
#undef QRT_CUDA_DEQ

struct Deq_f32 {
    static constexpr int QK = 1, kBytes = 4;
    __device__ void operator()(const uint8_t* p, int64_t, float* y) const {
        y[0] = *reinterpret_cast<const float*>(p);
    }
};
struct Deq_f16 {
    static constexpr int QK = 1, kBytes = 2;
    __device__ void operator()(const uint8_t* p, int64_t, float* y) const {
        y[0] = fp16_to_fp32(*reinterpret_cast<const half_bits*>(p));
    }
};
struct Deq_bf16 {
    static constexpr int QK = 1, kBytes = 2;
    __device__ void operator()(const uint8_t* p, int64_t, float* y) const {
        y[0] = bf16_to_fp32(*reinterpret_cast<const bf16_bits*>(p));
    }
};
// NF4: the block's absmax comes from the tensor's state after the blocks (`tail`).
struct Deq_nf4 {
    static constexpr int QK = QK_NF4, kBytes = int(sizeof(block_nf4));
    const uint8_t* tail;
    __device__ void operator()(const uint8_t* p, int64_t gb, float* y) const {
        const block_nf4& b = *reinterpret_cast<const block_nf4*>(p);
        dequantize_block_nf4(b, nf4_block_absmax(tail, gb, b.absmax_code), y);
    }
};

template <typename Deq>
__global__ void matvec_kernel(Deq deq, const uint8_t* w, int64_t cols, int64_t rows, uint64_t row_bytes,
                              const float* x, float* y) {
    const int lane = int(threadIdx.x) % kWarp;
    const int64_t r = int64_t(blockIdx.x) * kRowsPerBlock + int64_t(threadIdx.x) / kWarp;
    if (r >= rows) return;
    const int64_t t = blockIdx.y;
    const float* xt = x + t * cols;
    const uint8_t* row = w + uint64_t(r) * row_bytes;
    const int64_t nb = cols / Deq::QK;
    float vals[Deq::QK];
    float acc = 0.0f;
    for (int64_t b = lane; b < nb; b += kWarp) {
        deq(row + b * Deq::kBytes, r * nb + b, vals);
        const float* xb = xt + b * Deq::QK;
        for (int i = 0; i < Deq::QK; ++i) acc += vals[i] * xb[i];
    }
    acc = warp_sum(acc);
    if (lane == 0) y[t * rows + r] = acc;
}

template <typename Deq>
void launch(Deq deq, const uint8_t* w, int64_t cols, int64_t rows, uint64_t row_bytes, const float* x,
            int n_tok, float* y) {
    if (n_tok <= 0 || rows <= 0) return;  // an empty grid is a launch error
    const dim3 grid(blocks_for(rows, kRowsPerBlock), unsigned(n_tok));
    matvec_kernel<<<grid, kRowsPerBlock * kWarp>>>(deq, w, cols, rows, row_bytes, x, y);
}

}  // namespace

bool matvec_supports(TypeId type) {
    switch (type) {
        case TypeId::F32:
        case TypeId::F16:
        case TypeId::BF16:
        case TypeId::Q4_0:
        case TypeId::Q4_1:
        case TypeId::Q5_0:
        case TypeId::Q5_1:
        case TypeId::Q8_0:
        case TypeId::Q2_K:
        case TypeId::Q3_K:
        case TypeId::Q4_K:
        case TypeId::Q5_K:
        case TypeId::Q6_K:
        case TypeId::NF4:
            return true;
        default:
            return false;
    }
}

void matvec(TypeId type, const uint8_t* w, int64_t cols, int64_t rows, uint64_t row_bytes, const float* x,
            int n_tok, float* y) {
    switch (type) {
        case TypeId::F32:
            return launch(Deq_f32{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::F16:
            return launch(Deq_f16{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::BF16:
            return launch(Deq_bf16{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q4_0:
            return launch(Deq_q4_0{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q4_1:
            return launch(Deq_q4_1{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q5_0:
            return launch(Deq_q5_0{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q5_1:
            return launch(Deq_q5_1{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q8_0:
            return launch(Deq_q8_0{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q2_K:
            return launch(Deq_q2_K{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q3_K:
            return launch(Deq_q3_K{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q4_K:
            return launch(Deq_q4_K{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q5_K:
            return launch(Deq_q5_K{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::Q6_K:
            return launch(Deq_q6_K{}, w, cols, rows, row_bytes, x, n_tok, y);
        case TypeId::NF4:
            return launch(Deq_nf4{w + uint64_t(rows) * row_bytes}, w, cols, rows, row_bytes, x, n_tok, y);
        default:
            throw std::invalid_argument("CUDA matvec: unsupported weight type id " +
                                        std::to_string(int(type)));
    }
}

}  // namespace qrt::cuda
