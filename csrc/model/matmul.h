// y = W x for a batch of tokens: the one place the forward's matrix products are computed, so the
// kernel choice lives here.
//
// The activations are quantized once per call to the weight type's vec_dot_type (Q8_0, Q8_1, Q8_K, F16,
// BF16; F32 is used as is) with the dispatched quantize_row, into the scratch area; then every output is a
// dot product of a weight row with a quantized token, computed by
//   - the packed kernel, for the rows of a matrix repacked at load (model/packing.h: 8 rows interleaved,
//     for the types the active ISA packs; offset types also get per-block sums of the activations);
//   - else the dispatched gemm (register-blocked, several rows x several tokens per tile);
//   - else, where the ISA has none (QRT_KERNELS=scalar: the reference route), the registry's scalar
//     vec_dot, or for types whose rows are not self-contained (NF4) the registry's vec_dot_rows.
// Rows are split over the pool in groups of kMatmulRowGroup.
//
// Precision: int8 activations (what llama.cpp does) put a relative error of about 1% on each product's input.
// With Activations::Int8x2 the residual x - dequantize(q1) is quantized a second time and both are dotted
// (y = W q1 + W q2): about 15 bits of activation, twice the dot products (the weight unpacking is shared).
// By default the attention inputs (attn_q, attn_k, attn_v: scores go through exp(), K and V stay in the cache
// for every later token) and the output layer (the logits themselves) get Int8x2, the rest Int8. On SmolLM2
// Q4_1 against the float32 model over gpl-3.0.txt (bench/accuracy.py) that is mean KL 0.0014 and top-1 97.5%,
// where int8 everywhere gives 0.0031 / 96.7% and llama.cpp 0.0030 / 96.5%; the cost is within the noise of
// decode (memory-bound) and ~15% more multiply work in prefill (bench/RESULTS.md).
//
// Every output is a fixed sequence of operations on one row and one token's activations whatever the batch,
// the row split or the thread count, so prefill and decode give the same numbers bit for bit.
#pragma once

#include <cstdint>
#include <span>

#include "cpu/threadpool.h"
#include "model/weights.h"

namespace qrt::model {

// Scratch sizing: matmul wants kMatmulRowTile * (largest input size) floats per pool thread. More room means
// more tokens quantized per pass; anything from matmul_scratch_min_floats up works (longer batches are
// processed in passes that each fit).
constexpr int64_t kMatmulRowTile = 64;

// Output rows per work item handed to a thread.
constexpr int64_t kMatmulRowGroup = 16;

enum class Activations { Int8, Int8x2 };

// The default for a matrix (by its GGUF name): Int8x2 for attn_q / attn_k / attn_v and the output layer
// (output.weight, or token_embd.weight when tied), Int8 for the others.
Activations default_activations(const Matrix& w);

// The least scratch (in floats, all threads together) that holds one token of `cols` inputs.
int64_t matmul_scratch_min_floats(int64_t cols, int n_threads);

// x: [n_tokens][w.cols], y: [n_tokens][w.rows]; scratch: pool.n_threads() areas of scratch_stride floats
// (contiguous), usually kMatmulRowTile * w.cols each; std::invalid_argument if together they are less than
// matmul_scratch_min_floats.
void matmul(ThreadPool& pool, const Matrix& w, const float* x, int n_tokens, float* y, float* scratch,
            int64_t scratch_stride);
void matmul(ThreadPool& pool, const Matrix& w, const float* x, int n_tokens, float* y, float* scratch,
            int64_t scratch_stride, Activations acts);

// Several matrices with the same input (attn_q/k/v, ffn_gate/up): ys[i] = ws[i] x. When they share a
// vec_dot_type and precision the activations are quantized once and all rows go out in one parallel job;
// otherwise this is one matmul per matrix. Same results as separate calls.
void matmul(ThreadPool& pool, std::span<const Matrix* const> ws, const float* x, int n_tokens,
            std::span<float* const> ys, float* scratch, int64_t scratch_stride);

// Sees the float inputs of every matrix product the forward computes on this thread, before the product
// (qrt-imatrix collects Σx² per input column this way). Installed for a scope with ScopedMatmulObserver;
// per thread, so a model evaluated on another thread is not observed. x: [n_tokens][w.cols].
class MatmulObserver {
  public:
    virtual ~MatmulObserver() = default;
    virtual void observe(const Matrix& w, const float* x, int n_tokens) = 0;
};

class ScopedMatmulObserver {
  public:
    explicit ScopedMatmulObserver(MatmulObserver* observer);
    ~ScopedMatmulObserver();
    ScopedMatmulObserver(const ScopedMatmulObserver&) = delete;
    ScopedMatmulObserver& operator=(const ScopedMatmulObserver&) = delete;

  private:
    MatmulObserver* previous_;
};

}  // namespace qrt::model
