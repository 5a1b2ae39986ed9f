// NF4 host functions: bitsandbytes 0.50.2's CPU quantize_4bit(nf4, blocksize=64, compress_statistics=True)
// transcribed operation by operation, and its dequantization.
//
// What runs in bnb 0.50.2 on the CPU (torch 2.13, x86-64), and what this file reproduces:
//  1. quantize_4bit: the Python "default" backend (no CPU kernel is registered for it):
//       absmax = |x|.max() per 64 values; scaled = clamp(x * (1 / max(absmax, 1e-38)), -1, 1);
//       code = torch.bucketize(scaled, (nf4[:-1] + nf4[1:]) / 2): fp32 midpoints, a tie takes the LOWER code.
//  2. offset = absmax.mean(): torch's CPU sum (cascade_sum in aten/native/cpu/SumKernel.cpp, AVX2 kernel with
//     8-lane vectors; torch uses that kernel on AVX512 machines too) divided by float(nblocks).
//  3. quantize_blockwise(absmax - offset, blocksize=256) with the dynamic map: the native libbitsandbytes_cpu
//     quantize_cpu, which in 0.50.2 is NOT a nearest-value search but a 65536-entry lookup table:
//       lut[i] = first code whose midpoint with the next code is >= -1 + 2i/65535;
//       code   = lut[(uint16)fmaf((clamp(v, -1, 1) + 1) * 0.5, 65535, 0.5)],  v = d * (1 / max|d| of group)
//     (the shipped binary fuses that multiply-add into one FMA; a group whose max|d| is 0 gets code 0).
//  4. dequantize: dyn[code] * absmax2 + offset (two roundings), then nf4[c] * absmax (nf4.h).
// The CPU results differ from bnb on CUDA, whose kernels use another mean and a nearest-value search.
#include "format/nf4.h"

#include <algorithm>
#include <array>
#include <bit>
#include <cmath>
#include <stdexcept>
#include <vector>

#include "cpu/parallel.h"

namespace qrt {

namespace {

// ---- torch.sum of a contiguous float32 vector (torch 2.x, CPU, one thread) ----
//
// cascade_sum -> vectorized_inner_sum: the input is read as 8-lane vectors and summed by row_sum (4
// independent accumulators, each a 4-level cascade of chunks), the scalar tail is summed in order, then the 8
// lanes are added in order. Shorter inputs go through the same row_sum on scalars. With more than one torch
// thread and >= 32768 values torch splits the sum per thread and its result may differ in the last bits; qrt
// always computes this single-threaded result, so it never depends on the thread count.

struct Lanes8 {
    float v[8] = {};
    Lanes8 operator+(const Lanes8& o) const {
        Lanes8 r;
        for (int k = 0; k < 8; ++k) r.v[k] = v[k] + o.v[k];
        return r;
    }
};

// at::native::utils::CeilLog2
int64_t ceil_log2(int64_t x) {
    return x <= 2 ? 1 : int64_t(std::bit_width(uint64_t(x - 1)));
}

// row_sum(multi_row_sum<Acc, 4>) over `size` items, item i = load(i).
template <typename Acc, typename Load>
Acc torch_row_sum(int64_t size, Load load) {
    constexpr int kIlp = 4, kLevels = 4;
    const int64_t rows = size / kIlp;
    const int64_t level_power = std::max<int64_t>(4, ceil_log2(rows) / kLevels);
    const int64_t level_step = int64_t(1) << level_power;
    const int64_t level_mask = level_step - 1;

    Acc acc[kLevels][kIlp] = {};
    int64_t i = 0;
    while (i + level_step <= rows) {
        for (int64_t j = 0; j < level_step; ++j, ++i)
            for (int k = 0; k < kIlp; ++k) acc[0][k] = acc[0][k] + load(i * kIlp + k);
        for (int j = 1; j < kLevels; ++j) {
            for (int k = 0; k < kIlp; ++k) {
                acc[j][k] = acc[j][k] + acc[j - 1][k];
                acc[j - 1][k] = Acc{};
            }
            if ((i & (level_mask << (j * level_power))) != 0) break;
        }
    }
    for (; i < rows; ++i)
        for (int k = 0; k < kIlp; ++k) acc[0][k] = acc[0][k] + load(i * kIlp + k);
    for (int j = 1; j < kLevels; ++j)
        for (int k = 0; k < kIlp; ++k) acc[0][k] = acc[0][k] + acc[j][k];

    Acc sum = acc[0][0];
    for (int64_t t = rows * kIlp; t < size; ++t) sum = sum + load(t);
    for (int k = 1; k < kIlp; ++k) sum = sum + acc[0][k];
    return sum;
}

float torch_sum_f32(const float* x, int64_t n) {
    constexpr int64_t W = 8;
    float total = 0.0f;
    if (n >= W) {
        const int64_t nvec = n / W;
        const Lanes8 lanes = torch_row_sum<Lanes8>(nvec, [x](int64_t i) {
            Lanes8 v;
            for (int k = 0; k < 8; ++k) v.v[k] = x[i * W + k];
            return v;
        });
        for (int64_t k = nvec * W; k < n; ++k) total += x[k];
        for (int k = 0; k < 8; ++k) total += lanes.v[k];
    } else {
        total = torch_row_sum<float>(n, [x](int64_t i) { return x[i]; });
    }
    return 0.0f + total;  // CastStoreAccumulate into the zero-filled output
}

// ---- bnb's signed 8-bit dynamic map ----
//
// create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): for i in 0..6, the midpoints of
// torch.linspace(0.1, 1, 2^i + 1) scaled by +-10^(i-6), plus 0 and 1, sorted. torch's x86 linspace kernel
// computes start + step * idx (first half) and end - step * (steps - idx - 1) (second half), contracted to
// FMAs.
std::array<float, NF4_DYNAMIC_MAP_SIZE> make_dynamic_map() {
    static constexpr double kScale[7] = {1e-6, 1e-5, 1e-4, 1e-3, 1e-2, 1e-1, 1.0};
    std::vector<float> data;
    for (int i = 0; i < 7; ++i) {
        const int64_t steps = (int64_t(1) << i) + 1;
        const float start = float(0.1), end = float(1.0);
        const float step = (end - start) / float(steps - 1);
        std::vector<float> b(size_t(steps), 0.0f);
        for (int64_t idx = 0; idx < steps; ++idx)
            b[size_t(idx)] = idx < steps / 2 ? std::fmaf(step, float(idx), start)
                                             : std::fmaf(-step, float(steps - idx - 1), end);
        const float scale = float(kScale[i]);
        for (int64_t j = 0; j + 1 < steps; ++j) {
            const float mean = (b[size_t(j)] + b[size_t(j + 1)]) / 2.0f;
            data.push_back(scale * mean);
            data.push_back(-scale * mean);
        }
    }
    data.push_back(0.0f);
    data.push_back(1.0f);
    std::sort(data.begin(), data.end());
    std::array<float, NF4_DYNAMIC_MAP_SIZE> out{};
    std::copy(data.begin(), data.end(), out.begin());  // 2 * (1 + 2 + ... + 64) + 2 = 256 values
    return out;
}

// libbitsandbytes_cpu 0.50.2 build_quantize_lut / norm_to_lut_index.
constexpr int kLutSize = 65536;

std::vector<uint8_t> make_quantize_lut(const float* code) {
    float mid[NF4_DYNAMIC_MAP_SIZE - 1];
    for (int i = 0; i < NF4_DYNAMIC_MAP_SIZE - 1; ++i) mid[i] = 0.5f * (code[i] + code[i + 1]);
    std::vector<uint8_t> lut(kLutSize);
    int idx = 0;
    for (int i = 0; i < kLutSize; ++i) {
        const float val = -1.0f + (2.0f * float(i)) / float(kLutSize - 1);
        while (idx < NF4_DYNAMIC_MAP_SIZE - 1 && mid[idx] < val) ++idx;
        lut[size_t(i)] = uint8_t(idx);
    }
    return lut;
}

int lut_index(float v) {
    v = v < -1.0f ? -1.0f : (1.0f < v ? 1.0f : v);  // std::clamp; NaN passes through
    const float r = std::fmaf((v + 1.0f) * 0.5f, float(kLutSize - 1), 0.5f);
    if (std::isnan(r)) return 0;  // cvttss2si gives INT_MIN, whose low 16 bits are 0
    return int(uint16_t(int32_t(r)));
}

struct DynamicTables {
    std::array<float, NF4_DYNAMIC_MAP_SIZE> map = make_dynamic_map();
    std::vector<uint8_t> lut = make_quantize_lut(map.data());
};

const DynamicTables& dynamic_tables() {
    static const DynamicTables tables;
    return tables;
}

// NF4 bucket bounds as bnb's default backend builds them: (code[:-1] + code[1:]) / 2 in fp32.
struct Nf4Bounds {
    float t[15];
    Nf4Bounds() {
        for (int i = 0; i < 15; ++i) t[i] = (kNF4[i] + kNF4[i + 1]) / 2.0f;
    }
};

// torch.bucketize(v, bounds, right=False): the number of bounds strictly below v.
inline int nf4_code(const Nf4Bounds& b, float v) {
    int q = 0;
    for (int i = 0; i < 15; ++i) q += b.t[i] < v;
    return q;
}

}  // namespace

const float* nf4_dynamic_map() {
    return dynamic_tables().map.data();
}

float nf4_torch_mean_f32(const float* x, int64_t n) {
    return torch_sum_f32(x, n) / float(n);
}

size_t nf4_tail_bytes_of(int64_t n_elements) {
    return size_t(nf4_tail_bytes((n_elements + QK_NF4 - 1) / QK_NF4));
}

void dequantize_rows_nf4(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin,
                         int64_t row_end, float* out) {
    const int64_t nblocks = ne0 * nrows / QK_NF4;
    const block_nf4* blocks = reinterpret_cast<const block_nf4*>(tensor);
    const uint8_t* tail = tensor + nblocks * int64_t(sizeof(block_nf4));
    const int64_t b0 = row_begin * ne0 / QK_NF4, b1 = row_end * ne0 / QK_NF4;
    for (int64_t b = b0; b < b1; ++b)
        dequantize_block_nf4(blocks[b], nf4_block_absmax(tail, b, blocks[b].absmax_code),
                             out + (b - b0) * QK_NF4);
}

float vec_dot_nf4_q8_0(int64_t n, const void* vx, int64_t first_block, const uint8_t* tail, const void* vy) {
    const block_nf4* x = static_cast<const block_nf4*>(vx);
    const block_q8_0* y = static_cast<const block_q8_0*>(vy);
    float sumf = 0.0f;
    for (int64_t i = 0; i < n / QK_NF4; ++i)
        sumf += vec_dot_block_nf4_q8_0(x[i], nf4_block_absmax(tail, first_block + i, x[i].absmax_code),
                                       y + 2 * i);
    return sumf;
}

void vec_dot_rows_nf4(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin, int64_t row_end,
                      const void* y, float* out) {
    const int64_t nblocks = ne0 * nrows / QK_NF4, blocks_per_row = ne0 / QK_NF4;
    const block_nf4* blocks = reinterpret_cast<const block_nf4*>(tensor);
    const uint8_t* tail = tensor + nblocks * int64_t(sizeof(block_nf4));
    for (int64_t r = row_begin; r < row_end; ++r)
        out[r - row_begin] = vec_dot_nf4_q8_0(ne0, blocks + r * blocks_per_row, r * blocks_per_row, tail, y);
}

void nf4_row_scales_i8(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row, float* out) {
    const int64_t nblocks = ne0 * nrows / QK_NF4, blocks_per_row = ne0 / QK_NF4;
    const block_nf4* blocks = reinterpret_cast<const block_nf4*>(tensor) + row * blocks_per_row;
    const uint8_t* tail = tensor + nblocks * int64_t(sizeof(block_nf4));
    for (int64_t l = 0; l < blocks_per_row; ++l)
        out[l] = nf4_block_absmax(tail, row * blocks_per_row + l, blocks[l].absmax_code) / kNF4_I8_SCALE;
}

void vec_dot_rows_nf4_i8(const uint8_t* tensor, int64_t ne0, int64_t nrows, int64_t row_begin,
                         int64_t row_end, const void* vy, float* out) {
    const int64_t blocks_per_row = ne0 / QK_NF4;
    const block_nf4* blocks = reinterpret_cast<const block_nf4*>(tensor);
    const block_q8_0* y = static_cast<const block_q8_0*>(vy);
    std::vector<float> scales(static_cast<size_t>(blocks_per_row));
    for (int64_t r = row_begin; r < row_end; ++r) {
        nf4_row_scales_i8(tensor, ne0, nrows, r, scales.data());
        float sumf = 0.0f;
        for (int64_t l = 0; l < blocks_per_row; ++l)
            sumf += vec_dot_block_nf4_i8_q8_0(blocks[r * blocks_per_row + l], scales[size_t(l)], y + 2 * l);
        out[r - row_begin] = sumf;
    }
}

void quantize_tensor_nf4(const float* x, int64_t ne0, int64_t nrows, uint8_t* out, int n_threads) {
    const int64_t nblocks = ne0 * nrows / QK_NF4;
    block_nf4* blocks = reinterpret_cast<block_nf4*>(out);
    uint8_t* tail = out + nblocks * int64_t(sizeof(block_nf4));
    const DynamicTables& dyn = dynamic_tables();
    static const Nf4Bounds bounds;

    // 1. Per block: absmax and the packed 4-bit codes.
    std::vector<float> absmax(size_t(nblocks), 0.0f);
    parallel_for(nblocks, n_threads, 1024, [&](int64_t begin, int64_t end) {
        for (int64_t b = begin; b < end; ++b) {
            const float* xb = x + b * QK_NF4;
            float amax = 0.0f;
            for (int j = 0; j < QK_NF4; ++j) amax = std::max(amax, std::fabs(xb[j]));
            absmax[size_t(b)] = amax;
            const float recip = 1.0f / std::max(amax, float(1e-38));
            for (int i = 0; i < QK_NF4 / 2; ++i) {
                const float v0 = std::clamp(xb[2 * i] * recip, -1.0f, 1.0f);
                const float v1 = std::clamp(xb[2 * i + 1] * recip, -1.0f, 1.0f);
                blocks[b].qs[i] = uint8_t(nf4_code(bounds, v0) << 4 | nf4_code(bounds, v1));
            }
        }
    });

    // 2. offset = absmax.mean(), deterministic (one thread, torch's summation order).
    const float offset = nf4_torch_mean_f32(absmax.data(), nblocks);
    if (!std::isfinite(offset))
        throw std::invalid_argument("NF4: the mean block absmax overflows float32; values too large for NF4");

    // 3. Double quantization of absmax - offset in groups of 256 blocks.
    const int64_t ngroups = nf4_groups(nblocks);
    std::vector<float> absmax2(size_t(ngroups), 0.0f);
    parallel_for(ngroups, n_threads, 16, [&](int64_t begin, int64_t end) {
        for (int64_t g = begin; g < end; ++g) {
            const int64_t gb0 = g * NF4_GROUP, gb1 = std::min(gb0 + NF4_GROUP, nblocks);
            float amax = 0.0f;
            for (int64_t b = gb0; b < gb1; ++b) amax = std::max(amax, std::fabs(absmax[size_t(b)] - offset));
            absmax2[size_t(g)] = amax;
            if (amax == 0.0f) {
                for (int64_t b = gb0; b < gb1; ++b) blocks[b].absmax_code = 0;
                continue;
            }
            const float inv = 1.0f / amax;
            for (int64_t b = gb0; b < gb1; ++b)
                blocks[b].absmax_code = dyn.lut[size_t(lut_index((absmax[size_t(b)] - offset) * inv))];
        }
    });

    // 4. The tail: dynamic map, offset, absmax2.
    memcpy(tail, dyn.map.data(), sizeof(float) * NF4_DYNAMIC_MAP_SIZE);
    memcpy(tail + NF4_TAIL_OFFSET_AT, &offset, sizeof offset);
    memcpy(tail + NF4_TAIL_ABSMAX2_AT, absmax2.data(), sizeof(float) * size_t(ngroups));
}

}  // namespace qrt
