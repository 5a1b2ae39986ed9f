// NF4: QLoRA's 4-bit NormalFloat with double-quantized absmax, bit-exact with bitsandbytes 0.50.2 on the CPU
// (`quantize_4bit(x, blocksize=64, quant_type="nf4", compress_statistics=True)` / `dequantize_4bit`).
//
// A tensor of n elements (n a multiple of 64; rows are concatenated, exactly like bnb's flatten) is stored as
//
//   block_nf4 blocks[n / 64]                      33 bytes each, consecutive over the flattened tensor
//   float     dynamic_map[256]                    bnb's signed 8-bit dynamic map (create_dynamic_map())
//   float     offset                              mean of the 64-value block absmax over the whole tensor
//   float     absmax2[ceil((n / 64) / 256)]       second-level absmax, one per group of 256 blocks
//
// all little-endian, no padding: the tail floats sit at byte 33 * nblocks and are generally unaligned
// (read them with nf4_load_f32). Block b holds
//   absmax_code  the 8-bit code of (absmax[b] - offset) / absmax2[b / 256] in dynamic_map
//   qs[i]        code[2i] << 4 | code[2i + 1]: the FIRST element of a pair in the HIGH nibble, as bnb packs
// and decodes as
//   absmax[b]  = dynamic_map[absmax_code] * absmax2[b / 256] + offset     (two fp32 roundings, no FMA)
//   y[64b + j] = kNF4[code j] * absmax[b]                                   (one fp32 rounding)
// which is bnb's dequantize_blockwise(qabsmax, state2) + offset followed by dequantize_4bit, bit for bit.
//
// Rows are not self-contained (the tail is per tensor), so NF4 has no row functions in the registry, only
// the tensor-level quantize_tensor / dequantize_rows / vec_dot_rows. ggml has no NF4 type: only qrt reads a
// GGUF holding it.
#pragma once

#include <cstdint>
#include <cstring>

#include "format/common.h"
#include "format/legacy.h"  // block_q8_0: the activation format NF4's dot product pairs with

namespace qrt {

constexpr int QK_NF4 = 64;      // elements per block (bnb blocksize)
constexpr int NF4_GROUP = 256;  // blocks per absmax2 entry (bnb's nested blocksize)
constexpr int NF4_DYNAMIC_MAP_SIZE = 256;

struct block_nf4 {
    uint8_t absmax_code;     // index into the tensor's dynamic_map
    uint8_t qs[QK_NF4 / 2];  // 4-bit codes, element 2i in the high nibble of qs[i]
};
static_assert(sizeof(block_nf4) == 33, "wrong nf4 block size");

// The NF4 codebook, index = 4-bit code (bnb get_4bit_type("nf4"), create_normal_map(0.9677083, True)).
// Written as double literals cast to float, the way torch.tensor(list_of_python_floats) rounds them.
#define QRT_NF4_VALUES                                                                                      \
    {                                                                                                       \
        float(-1.0), float(-0.6961928009986877), float(-0.5250730514526367), float(-0.39491748809814453),   \
            float(-0.28444138169288635), float(-0.18477343022823334), float(-0.09105003625154495),          \
            float(0.0), float(0.07958029955625534), float(0.16093020141124725), float(0.24611230194568634), \
            float(0.33791524171829224), float(0.44070982933044434), float(0.5626170039176941),              \
            float(0.7229568362236023), float(1.0)                                                           \
    }

inline constexpr float kNF4[16] = QRT_NF4_VALUES;
#if defined(__CUDACC__)
__device__ const float kNF4_device[16] = QRT_NF4_VALUES;
#endif

QRT_HD float nf4_value(int code) {
#if defined(__CUDA_ARCH__)
    return kNF4_device[code];
#else
    return kNF4[code];
#endif
}

// fp32 multiply / add that are never fused into an FMA: bnb rounds after each. nvcc contracts a*b+c by
// default, hence the intrinsics; on the host, csrc/format/ is compiled with -ffp-contract=off (a host file
// elsewhere that must reproduce dequantization bit-exactly needs the same flag).
QRT_HD float nf4_mul(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fmul_rn(a, b);
#else
    return a * b;
#endif
}

QRT_HD float nf4_add(float a, float b) {
#if defined(__CUDA_ARCH__)
    return __fadd_rn(a, b);
#else
    return a + b;
#endif
}

// Unaligned little-endian float load from the tail.
QRT_HD float nf4_load_f32(const uint8_t* p) {
    float f;
    memcpy(&f, p, sizeof f);
    return f;
}

QRT_HD int64_t nf4_groups(int64_t nblocks) {
    return (nblocks + NF4_GROUP - 1) / NF4_GROUP;
}

// Bytes after the blocks: dynamic_map[256], offset, absmax2[groups].
QRT_HD int64_t nf4_tail_bytes(int64_t nblocks) {
    return int64_t(sizeof(float)) * (NF4_DYNAMIC_MAP_SIZE + 1 + nf4_groups(nblocks));
}

// Byte offsets of the tail's fields, relative to the tail's start (tensor + 33 * nblocks).
constexpr int64_t NF4_TAIL_OFFSET_AT = 4 * NF4_DYNAMIC_MAP_SIZE;
constexpr int64_t NF4_TAIL_ABSMAX2_AT = NF4_TAIL_OFFSET_AT + 4;

// absmax of one block from its code and the tensor's state, as bnb decodes it.
QRT_HD float nf4_absmax(float dynamic_map_value, float absmax2, float offset) {
    return nf4_add(nf4_mul(dynamic_map_value, absmax2), offset);
}

// absmax of block b, reading the state from the tail (`tail` = tensor + 33 * nblocks).
QRT_HD float nf4_block_absmax(const uint8_t* tail, int64_t b, uint8_t absmax_code) {
    return nf4_absmax(nf4_load_f32(tail + 4 * int64_t(absmax_code)),
                      nf4_load_f32(tail + NF4_TAIL_ABSMAX2_AT + 4 * (b / NF4_GROUP)),
                      nf4_load_f32(tail + NF4_TAIL_OFFSET_AT));
}

QRT_HD void dequantize_block_nf4(const block_nf4& b, float absmax, float* y) {
    for (int i = 0; i < QK_NF4 / 2; ++i) {
        y[2 * i] = nf4_mul(nf4_value(b.qs[i] >> 4), absmax);
        y[2 * i + 1] = nf4_mul(nf4_value(b.qs[i] & 0x0F), absmax);
    }
}

// Dot product of one NF4 block with the two Q8_0 blocks of activations covering the same 64 elements. ggml
// has no NF4; this follows its closest analogue, ggml_vec_dot_iq4_nl_q8_0_generic (a 16-entry codebook
// against Q8_0, one scale product per 32), except that NF4's codebook is not integer, so the inner sums
// are float: per half h, s_h = sum_i kNF4[code_i] * q8_i (in element order), then (absmax * d_h) * s_h.
// `absmax` is the block's decoded absmax (nf4_block_absmax), so a kernel may decode them once per tensor.
QRT_HD float vec_dot_block_nf4_q8_0(const block_nf4& x, float absmax, const block_q8_0* y) {
    float sumf = 0.0f;
    for (int h = 0; h < 2; ++h) {
        const uint8_t* qs = x.qs + (QK8_0 / 2) * h;
        float s = 0.0f;
        for (int i = 0; i < QK8_0 / 2; ++i) {
            s += nf4_value(qs[i] >> 4) * y[h].qs[2 * i];
            s += nf4_value(qs[i] & 0x0F) * y[h].qs[2 * i + 1];
        }
        sumf += (absmax * fp16_to_fp32(y[h].d)) * s;
    }
    return sumf;
}

// ---- The int8 image of the codebook, for the packed kernels (cpu/nf4_packed.h) ----
//
// The fast kernels do what Q4_0's do, an exact int8 dot product of weights and Q8_0 activations, with the
// 4-bit code mapped to kNF4_I8[code] by a 16-byte table lookup (vpshufb / vqtbl1q, as llama.cpp's IQ4_NL);
// kNF4_I8[c] / kNF4_I8_SCALE stands for kNF4[c], and the pack folds 1 / kNF4_I8_SCALE into the block's
// scale. The values lie in [-64, 63] so that AVX2 can use them offset by 64 as vpmaddubsw's unsigned
// operand, as Q4_0 does (cpu/quants/packed_nf4.cpp); among such tables this one has the least mean squared
// error, and it is the measured choice (README, "NF4 in GGUF files": mean KL against the exact dequantization
// on SmolLM2, of this table and the full-range round(127 * kNF4)). The exact functions above stay the
// reference; vec_dot_rows_nf4_i8 is the fast kernels' arithmetic in scalar form, which they are tested
// against, and which is tested against the exact one with the table's error as the bound.
inline constexpr int8_t kNF4_I8[16] = {-63, -44, -33, -25, -18, -12, -6, 0, 5, 10, 16, 21, 28, 36, 46, 63};
constexpr float kNF4_I8_SCALE = 63.23f;

// One block of the packed kernels' arithmetic: per half h, the exact isum_h = sum kNF4_I8[code_i] * q8_i,
// then (scale * d_h) * isum_h, where scale = absmax / kNF4_I8_SCALE (nf4_row_scales_i8).
inline float vec_dot_block_nf4_i8_q8_0(const block_nf4& x, float scale, const block_q8_0* y) {
    float sumf = 0.0f;
    for (int h = 0; h < 2; ++h) {
        const uint8_t* qs = x.qs + (QK8_0 / 2) * h;
        int32_t isum = 0;
        for (int i = 0; i < QK8_0 / 2; ++i)
            isum += kNF4_I8[qs[i] >> 4] * y[h].qs[2 * i] + kNF4_I8[qs[i] & 0x0F] * y[h].qs[2 * i + 1];
        sumf += (scale * fp16_to_fp32(y[h].d)) * float(isum);
    }
    return sumf;
}

// Host functions; the registry points at these.
//
// Tail bytes of a tensor of n elements (n a multiple of 64).
size_t nf4_tail_bytes_of(int64_t n_elements);
// Rows [row_begin, row_end) of a tensor of nrows x ne0 (ne0 a multiple of 64) whose bytes start at `tensor`.
void dequantize_rows_nf4(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin,
                         int64_t row_end, float* out);
// bnb's quantize_4bit(nf4, blocksize=64, compress_statistics=True) on the CPU. The result does not depend on
// n_threads. Throws std::invalid_argument when the mean block absmax overflows float32 (|x| ~ 1e33 and up).
void quantize_tensor_nf4(const float* x, int64_t ne0, int64_t nrows, uint8_t* out, int n_threads);

// Dot of n elements (a multiple of 64) of NF4 blocks `x` with n Q8_0 activations `y`. A block decodes against
// its tensor's state, and which absmax2 applies depends on the block's index in the WHOLE tensor, so the
// signature carries that context: `first_block` is the tensor-wide index of x's first block and `tail` the
// tensor's tail (tensor + 33 * nblocks). This is why the registry's row-local vec_dot is nullptr for NF4.
float vec_dot_nf4_q8_0(int64_t n, const void* x, int64_t first_block, const uint8_t* tail, const void* y);
// The registry's vec_dot_rows: out[r - row_begin] = row r . y for r in [row_begin, row_end), where the tensor
// is nrows x ne0 and y one row of ne0 activations in Q8_0.
void vec_dot_rows_nf4(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin, int64_t row_end,
                      const void* y, float* out);

// The packed kernels' block scales of row `row` of an nrows x ne0 tensor: out[l] = absmax of its block l
// (decoded exactly as dequantization does) / kNF4_I8_SCALE, for l < ne0 / 64.
void nf4_row_scales_i8(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row, float* out);
// vec_dot_rows_nf4 with the int8 image of the codebook (vec_dot_block_nf4_i8_q8_0): what the packed kernels
// compute, up to the order of their float additions.
void vec_dot_rows_nf4_i8(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin,
                         int64_t row_end, const void* y, float* out);

// bnb's create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8) as torch computes it on x86.
const float* nf4_dynamic_map();
// torch.mean() of a contiguous 1-D float32 CPU tensor, single-threaded, as torch 2.x computes it (see
// nf4.cpp).
float nf4_torch_mean_f32(const float* x, int64_t n);

}  // namespace qrt
