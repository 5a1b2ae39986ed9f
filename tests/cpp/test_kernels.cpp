// test_kernels: every CPU ISA kernel against the registry's reference.
//
// For each ISA this CPU can run and each type with both a reference and a kernel of that ISA, rows of many
// lengths (1 block, odd counts, large) in three flavours are dequantized by both and compared bit for bit:
//   - quantized: real N(0,1) data through the reference quantizer,
//   - random:    random bytes with sane finite fp16 scales (every bit pattern of the payload),
//   - raw:       random bytes everywhere (NaN/Inf scales possible): block types compared NaN-aware.
// Activation quantizers (quantize_row: Q8_0, Q8_1, Q8_K, F16, BF16) must equal quantize_row_ref bit for bit
// on rows with wide-ranging magnitudes, exact rounding ties, zero blocks and one-signed blocks. vec_dot
// (quantized and random weights against activations from the partner's reference quantizer) must equal the
// reference's integer sums exactly; only the float order may differ, so the error is bounded relative to sum
// |x*y| of the dequantized numbers, per block. gemm must give, for every (row, token) of m x n outputs at odd
// sizes and strides, the same ISA's vec_dot bit for bit, and write nothing else. Inputs and outputs sit off
// the vector alignment in exactly sized buffers so the sanitizers catch any overrun or alignment assumption.
// Prints "N passed, M failed"; exits non-zero on failure.
#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "cpu/ops.h"
#include "cpu/threadpool.h"
#include "format/common.h"
#include "format/kquants.h"
#include "format/legacy.h"
#include "format/nf4.h"
#include "format/types.h"
#include "kernels/dispatch.h"
#include "model/matmul.h"
#include "model/packing.h"

using namespace qrt;

namespace {

int g_passed = 0, g_failed = 0;
// FNV-1a of every packed_gemm output test_packed checks: the AVX2 packed kernels have two builds
// (plain and AVX-VNNI, picked by cpu_features().avxvnni) that must agree bit for bit, so CI runs this binary
// with and without QRT_AVXVNNI=0 on a CPU that has AVX-VNNI and compares the printed digests.
uint64_t g_packed_digest = 0xcbf29ce484222325ull;

void check(bool ok, const std::string& what) {
    if (ok) {
        ++g_passed;
    } else {
        ++g_failed;
        std::printf("FAIL %s\n", what.c_str());
    }
}

// Where a block keeps its fp16 scales; F16 rows are all fp16 (block of one), BF16 gets sane bf16 values.
struct ScaleFields {
    TypeId type;
    std::vector<size_t> offsets;
};

const std::vector<ScaleFields> kScaleFields = {
    {TypeId::Q4_0, {offsetof(block_q4_0, d)}},
    {TypeId::Q4_1, {offsetof(block_q4_1, d), offsetof(block_q4_1, m)}},
    {TypeId::Q5_0, {offsetof(block_q5_0, d)}},
    {TypeId::Q5_1, {offsetof(block_q5_1, d), offsetof(block_q5_1, m)}},
    {TypeId::Q8_0, {offsetof(block_q8_0, d)}},
    {TypeId::Q8_1, {offsetof(block_q8_1, d), offsetof(block_q8_1, s)}},
    {TypeId::Q2_K, {offsetof(block_q2_K, d), offsetof(block_q2_K, dmin)}},
    {TypeId::Q3_K, {offsetof(block_q3_K, d)}},
    {TypeId::Q4_K, {offsetof(block_q4_K, d), offsetof(block_q4_K, dmin)}},
    {TypeId::Q5_K, {offsetof(block_q5_K, d), offsetof(block_q5_K, dmin)}},
    {TypeId::Q6_K, {offsetof(block_q6_K, d)}},
    {TypeId::F16, {0}},
};

// The types each ISA is expected to accelerate: catches a kernel file the linker dropped.
const std::vector<TypeId> kAvx2Types = {TypeId::F16,  TypeId::BF16, TypeId::Q4_0, TypeId::Q4_1,
                                        TypeId::Q5_0, TypeId::Q5_1, TypeId::Q8_0, TypeId::Q2_K,
                                        TypeId::Q3_K, TypeId::Q4_K, TypeId::Q5_K, TypeId::Q6_K};

const std::vector<TypeId> kAvx2DotTypes = {
    TypeId::Q4_0, TypeId::Q4_1, TypeId::Q5_0, TypeId::Q5_1, TypeId::Q8_0, TypeId::Q2_K, TypeId::Q3_K,
    TypeId::Q4_K, TypeId::Q5_K, TypeId::Q6_K, TypeId::F32,  TypeId::F16,  TypeId::BF16};
const std::vector<TypeId> kAvx2ActivationTypes = {TypeId::Q8_0, TypeId::Q8_1, TypeId::Q8_K, TypeId::F16,
                                                  TypeId::BF16};

bool cpu_runs(Isa isa) {
    const CpuFeatures& f = cpu_features();
    if (isa == Isa::Avx2) return f.avx2 && f.fma && f.f16c;
    if (isa == Isa::Neon) return f.neon;
    return true;
}

// A random finite value of either sign with magnitude in [2^-12, 2^4).
float sane_value(std::mt19937_64& rng) {
    std::uniform_real_distribution<float> mant(1.0f, 2.0f);
    const float v = std::ldexp(mant(rng), int(rng() % 16) - 12);
    return (rng() & 1) ? -v : v;
}

enum class Flavour { Quantized, Random, Raw };
const char* flavour_name(Flavour f) {
    return f == Flavour::Quantized ? "quantized" : f == Flavour::Random ? "random" : "raw";
}

void fill_row(const TypeTraits& t, Flavour flavour, int64_t n, uint8_t* row, std::mt19937_64& rng) {
    const size_t nbytes = size_t(n / t.block_size) * t.type_size;
    if (flavour == Flavour::Quantized) {
        std::normal_distribution<float> normal;
        std::vector<float> x(static_cast<size_t>(n));
        for (float& v : x) v = normal(rng);
        t.quantize_row_ref(x.data(), row, n);
        return;
    }
    for (size_t i = 0; i < nbytes; ++i) row[i] = uint8_t(rng());
    if (flavour == Flavour::Raw) return;
    if (t.id == TypeId::F32) {
        for (size_t i = 0; i < nbytes; i += 4) {
            const float v = sane_value(rng);
            std::memcpy(row + i, &v, 4);
        }
        return;
    }
    if (t.id == TypeId::BF16) {
        for (size_t i = 0; i < nbytes; i += 2) {
            const bf16_bits b = fp32_to_bf16(sane_value(rng));
            std::memcpy(row + i, &b, 2);
        }
        return;
    }
    for (const ScaleFields& f : kScaleFields) {
        if (f.type != t.id) continue;
        for (size_t blk = 0; blk < nbytes; blk += t.type_size) {
            for (size_t off : f.offsets) {
                const half_bits h = fp32_to_fp16(sane_value(rng));
                std::memcpy(row + blk + off, &h, 2);
            }
        }
    }
}

bool same_bits(float a, float b, bool nan_aware) {
    if (nan_aware && std::isnan(a) && std::isnan(b)) return true;
    uint32_t ua, ub;
    std::memcpy(&ua, &a, 4);
    std::memcpy(&ub, &b, 4);
    return ua == ub;
}

void test_type(Isa isa, const TypeTraits& t, DequantizeRowFn fast, std::mt19937_64& rng) {
    const std::vector<int64_t> block_counts = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 1000};
    for (Flavour flavour : {Flavour::Quantized, Flavour::Random, Flavour::Raw}) {
        for (int64_t blocks : block_counts) {
            const int64_t n = blocks * t.block_size;
            const size_t nbytes = size_t(blocks) * t.type_size;
            // Spare bytes in front of each buffer: the row and the output start off the vector alignment
            // (but aligned for their element types), and their ends are the buffers' ends.
            std::vector<uint8_t> in(nbytes + 4);
            std::vector<float> ref(static_cast<size_t>(n)), out(static_cast<size_t>(n) + 1);
            uint8_t* row = in.data() + 4;
            fill_row(t, flavour, n, row, rng);
            t.dequantize_row(row, ref.data(), n);
            fast(row, out.data() + 1, n);
            // Float widening must be exact even for NaN payloads (test_format.py checks every half).
            const bool nan_aware = flavour == Flavour::Raw && t.block_size > 1;
            int64_t bad = -1;
            for (int64_t i = 0; i < n && bad < 0; ++i)
                if (!same_bits(out[size_t(i) + 1], ref[size_t(i)], nan_aware)) bad = i;
            std::string what = std::string(isa_name(isa)) + " " + t.name + " " + flavour_name(flavour) +
                               " n=" + std::to_string(n);
            if (bad >= 0) {
                char buf[128];
                std::snprintf(buf, sizeof buf, ": element %lld is %.9g, reference %.9g", (long long)bad,
                              out[size_t(bad) + 1], ref[size_t(bad)]);
                what += buf;
            }
            check(bad < 0, what);
        }
    }
}

// Random activations: N(0,1) scaled by a random power of ten per 256 values, some blocks all zero, some
// all positive, some with exact rounding ties (multiples of 1/2 under amax 127, where d = 1).
std::vector<float> activations(int64_t n, std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    std::vector<float> x(static_cast<size_t>(n));
    for (int64_t b = 0; b < n; b += 32) {
        const int kind = int(rng() % 8);
        const float scale = std::pow(10.0f, float(int(rng() % 7)) - 3.0f);
        for (int64_t i = b; i < b + 32 && i < n; ++i) {
            float v = normal(rng) * scale;
            if (kind == 0) v = 0.0f;
            if (kind == 1) v = std::fabs(v);
            if (kind == 2) v = float(int(rng() % 255) - 127) * 0.5f;
            x[size_t(i)] = v;
        }
        if (kind == 2)
            x[size_t(b)] = (rng() & 1) ? 127.0f : -127.0f;  // amax 127 in every 32 (and so per 256)
    }
    return x;
}

void test_quantize(Isa isa, const TypeTraits& t, QuantizeRowFn fast, std::mt19937_64& rng) {
    const int64_t unit = std::max<int64_t>(t.block_size, 32);
    for (int64_t blocks : {1, 2, 3, 7, 16, 33}) {
        const int64_t n = blocks * unit + (t.block_size == 1 ? blocks % 8 : 0);  // float types: odd tails too
        const size_t nbytes = size_t(n / t.block_size) * t.type_size;
        std::vector<float> x = activations(n, rng);
        if (t.block_size == 1) {  // float types: rounding edges, overflow, subnormal results, NaN, -0
            const float specials[] = {65519.0f,      65520.0f, -1e30f,         1e-8f,         3e-5f,
                                      std::nanf(""), -0.0f,    1.00048828125f, 3.3895314e38f, -INFINITY};
            for (size_t i = 0; i < sizeof specials / sizeof specials[0] && i < x.size(); ++i)
                x[(i * 7 + size_t(blocks)) % x.size()] = specials[i];
        }
        std::vector<float> xin(x.size() + 1);  // off the vector alignment
        std::memcpy(xin.data() + 1, x.data(), x.size() * sizeof(float));
        std::vector<uint8_t> ref(nbytes), out(nbytes + 4);
        t.quantize_row_ref(x.data(), ref.data(), n);
        fast(xin.data() + 1, out.data() + 4, n);
        int64_t bad = -1;
        for (size_t i = 0; i < nbytes && bad < 0; ++i)
            if (out[i + 4] != ref[i]) bad = int64_t(i);
        std::string what = std::string(isa_name(isa)) + " quantize_row " + t.name + " n=" + std::to_string(n);
        if (bad >= 0) what += ": byte " + std::to_string(bad) + " differs";
        check(bad < 0, what);
    }
}

// |fast - ref| <= kDotTol * (number of blocks) * sum |x_i * y_i|: each block's float scaling and the running
// sum may round differently, by a few ulps of the magnitudes involved.
constexpr double kDotTol = 4.0 / (1 << 24);

// Weight rows (m of them, k elements each, row_bytes apart) and quantized activations for n tokens.
struct DotCase {
    int64_t k = 0;
    size_t row_bytes = 0, act_bytes = 0;
    std::vector<uint8_t> w, act;
    std::vector<float> wf, af;  // dequantized, for the error bound
};

DotCase make_dot_case(const TypeTraits& t, const TypeTraits& p, Flavour flavour, int64_t k, int m, int n,
                      std::mt19937_64& rng) {
    DotCase c;
    c.k = k;
    c.row_bytes = size_t(k / t.block_size) * t.type_size;
    c.act_bytes = size_t(k / p.block_size) * p.type_size;
    c.w.resize(size_t(m) * c.row_bytes + 4);  // rows start 4 bytes in: off the vector alignment
    c.act.resize(size_t(n) * c.act_bytes + 4);
    c.wf.resize(size_t(m * k));
    c.af.resize(size_t(n * k));
    for (int i = 0; i < m; ++i) {
        uint8_t* row = c.w.data() + 4 + size_t(i) * c.row_bytes;
        fill_row(t, flavour, k, row, rng);
        t.dequantize_row(row, c.wf.data() + i * k, k);
    }
    for (int j = 0; j < n; ++j) {
        uint8_t* row = c.act.data() + 4 + size_t(j) * c.act_bytes;
        const std::vector<float> x = activations(k, rng);
        p.quantize_row_ref(x.data(), row, k);
        p.dequantize_row(row, c.af.data() + j * k, k);
    }
    return c;
}

void test_vec_dot(Isa isa, const TypeTraits& t, VecDotFn fast, std::mt19937_64& rng) {
    const TypeTraits& p = traits(t.vec_dot_type);
    const int64_t unit = std::max(t.block_size, p.block_size) * (t.block_size == 1 ? 32 : 1);
    const std::vector<int64_t> counts = {1, 2, 3, 5, 7, 8, 9, 15, 16, 17, 31, 33, 64, 65, 127, 1000};
    for (Flavour flavour : {Flavour::Quantized, Flavour::Random}) {
        for (int64_t blocks : counts) {
            for (int64_t extra : {int64_t(0), t.block_size == 1 ? int64_t(1 + rng() % 31) : int64_t(0)}) {
                const int64_t k = blocks * unit + extra;
                DotCase c = make_dot_case(t, p, flavour, k, 1, 1, rng);
                const float ref = t.vec_dot(k, c.w.data() + 4, c.act.data() + 4);
                const float got = fast(k, c.w.data() + 4, c.act.data() + 4);
                double mag = 0;
                for (int64_t i = 0; i < k; ++i) mag += std::fabs(double(c.wf[size_t(i)]) * c.af[size_t(i)]);
                const double nb = double(k / std::max(t.block_size, p.block_size));
                const double err = std::fabs(double(got) - double(ref));
                const bool ok = std::isfinite(got) && err <= kDotTol * std::max(nb, 8.0) * mag + 1e-30;
                char buf[200];
                std::snprintf(buf, sizeof buf, "%s vec_dot %s %s k=%lld: %.9g vs reference %.9g (|x.y| %.3g)",
                              isa_name(isa), t.name, flavour_name(flavour), (long long)k, got, ref, mag);
                check(ok, buf);
            }
        }
    }
}

void test_gemm(Isa isa, const TypeTraits& t, kernels::GemmFn gemm, VecDotFn dot, std::mt19937_64& rng) {
    const TypeTraits& p = traits(t.vec_dot_type);
    const int64_t unit = std::max(t.block_size, p.block_size) * (t.block_size == 1 ? 32 : 1);
    for (int trial = 0; trial < 24; ++trial) {
        const int m = 1 + int(rng() % 13), n = 1 + int(rng() % 9);
        const int64_t k = unit * int64_t(1 + rng() % 9) + (t.block_size == 1 ? int64_t(rng() % 9) : 0);
        DotCase c = make_dot_case(t, p, trial % 2 ? Flavour::Random : Flavour::Quantized, k, m, n, rng);
        const int64_t ldc = m + int64_t(rng() % 3);
        const float sentinel = -12345.0f;
        std::vector<float> out(size_t(n * ldc) + 1, sentinel);
        gemm(k, c.w.data() + 4, c.row_bytes, c.act.data() + 4, c.act_bytes, out.data() + 1, ldc, m, n);
        bool ok = out[0] == sentinel;
        for (float v : out) {
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            g_packed_digest = (g_packed_digest ^ bits) * 0x100000001b3ull;
        }
        std::string what;
        for (int j = 0; j < n; ++j) {
            for (int64_t i = 0; i < ldc; ++i) {
                const float got = out[size_t(1 + j * ldc + i)];
                float want = sentinel;
                if (i < m)
                    want = dot(k, c.w.data() + 4 + size_t(i) * c.row_bytes,
                               c.act.data() + 4 + size_t(j) * c.act_bytes);
                if (!same_bits(got, want, false) && what.empty()) {
                    char buf[96];
                    std::snprintf(buf, sizeof buf, ": C[%d][%lld] = %.9g, vec_dot %.9g", j, (long long)i, got,
                                  want);
                    what = buf;
                    ok = false;
                }
            }
        }
        check(ok, std::string(isa_name(isa)) + " gemm " + t.name + " m=" + std::to_string(m) +
                      " n=" + std::to_string(n) + " k=" + std::to_string(k) + what);
    }
}

// Packed kernels: kPackRows rows packed into a group, times n tokens. Each output against the reference
// vec_dot (error relative to sum |x*y|, as test_vec_dot), each token's outputs bit for bit what a call with
// that token alone gives (prefill = decode), and nothing written outside the 8 x n outputs. The rows come
// from a matrix with a row stride larger than a row, the group and activations sit off the vector alignment.
void test_packed(Isa isa, const TypeTraits& t, const kernels::CpuKernels& k, std::mt19937_64& rng) {
    const TypeTraits& p = traits(t.vec_dot_type);
    const int64_t unit = std::max(t.block_size, p.block_size);
    constexpr int R = kernels::kPackRows;
    for (int trial = 0; trial < 24; ++trial) {
        const int n = 1 + int(rng() % 13);
        const int64_t k_el = unit * int64_t(1 + rng() % 9);
        const Flavour flavour = trial % 2 ? Flavour::Random : Flavour::Quantized;
        DotCase c = make_dot_case(t, p, flavour, k_el, R + 1, n, rng);  // row R: only padding for the stride
        const size_t group_bytes = size_t(k_el / t.block_size) * k.pack_block_bytes;
        std::vector<uint8_t> group(group_bytes + 4);
        k.pack(k_el, c.w.data() + 4, c.row_bytes, group.data() + 4);
        std::vector<int32_t> sums;
        if (k.pack_needs_sums) {
            sums.resize(size_t(n * (k_el / 32)));
            for (int j = 0; j < n; ++j)
                q8_0_block_sums(c.act.data() + 4 + size_t(j) * c.act_bytes, k_el,
                                sums.data() + j * (k_el / 32));
        }
        const int32_t* sp = sums.empty() ? nullptr : sums.data();
        const int64_t ldc = R + int64_t(rng() % 3);
        const float sentinel = -12345.0f;
        std::vector<float> out(size_t(n * ldc) + 1, sentinel);
        k.packed_gemm(k_el, group.data() + 4, c.act.data() + 4, c.act_bytes, sp, k_el / 32, out.data() + 1,
                      ldc, n);
        bool ok = out[0] == sentinel;
        for (float v : out) {
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            g_packed_digest = (g_packed_digest ^ bits) * 0x100000001b3ull;
        }
        std::string what;
        for (int j = 0; j < n; ++j) {
            float one[R + 1];
            one[R] = sentinel;
            k.packed_gemm(k_el, group.data() + 4, c.act.data() + 4 + size_t(j) * c.act_bytes, c.act_bytes,
                          sp ? sp + j * (k_el / 32) : nullptr, k_el / 32, one, R, 1);
            ok = ok && one[R] == sentinel;
            for (int64_t i = 0; i < ldc; ++i) {
                const float got = out[size_t(1 + j * ldc + i)];
                char buf[160];
                buf[0] = 0;
                if (i >= R) {
                    if (got != sentinel)
                        std::snprintf(buf, sizeof buf, ": C[%d][%lld] written", j, (long long)i);
                } else if (!same_bits(got, one[i], false)) {
                    std::snprintf(buf, sizeof buf, ": C[%d][%lld] = %.9g, alone %.9g", j, (long long)i, got,
                                  one[i]);
                } else {
                    const uint8_t* row = c.w.data() + 4 + size_t(i) * c.row_bytes;
                    const float ref = t.vec_dot(k_el, row, c.act.data() + 4 + size_t(j) * c.act_bytes);
                    double mag = 0;
                    for (int64_t e = 0; e < k_el; ++e)
                        mag += std::fabs(double(c.wf[size_t(i * k_el + e)]) * c.af[size_t(j * k_el + e)]);
                    const double nb = double(k_el / unit);
                    if (!(std::isfinite(got) &&
                          std::fabs(double(got) - double(ref)) <= kDotTol * std::max(nb, 8.0) * mag + 1e-30))
                        std::snprintf(buf, sizeof buf, ": C[%d][%lld] = %.9g, reference %.9g (|x.y| %.3g)", j,
                                      (long long)i, got, ref, mag);
                }
                if (buf[0] && what.empty()) what = buf;
            }
        }
        ok = ok && what.empty();
        check(ok, std::string(isa_name(isa)) + " packed_gemm " + t.name + " " + flavour_name(flavour) +
                      " n=" + std::to_string(n) + " k=" + std::to_string(k_el) + what);
    }
}

// Packed kernels of types whose rows are not self-contained (NF4: pack_tensor). A group of kPackRows rows
// somewhere in a tensor of up to 47 rows (so that some groups' blocks use a later absmax2 than the first)
// times n tokens: each output against vec_dot_rows_nf4_i8, the packed kernels' arithmetic in scalar form
// (error relative to sum |x*y| of the int8 image, as test_packed), prefill = decode bit for bit, nothing
// written outside; and that scalar form against the exact reference vec_dot_rows within the error of the
// codebook's int8 image.
void test_packed_tensor(Isa isa, const TypeTraits& t, const kernels::CpuKernels& k, std::mt19937_64& rng) {
    constexpr int R = kernels::kPackRows;
    double table_err = 0;  // max |kNF4_I8[c] / kNF4_I8_SCALE - kNF4[c]|
    for (int c = 0; c < 16; ++c)
        table_err = std::max(table_err, std::fabs(double(kNF4_I8[c]) / kNF4_I8_SCALE - double(kNF4[c])));
    std::normal_distribution<float> normal;
    for (int trial = 0; trial < 24; ++trial) {
        const int n = 1 + int(rng() % 13);
        const int64_t k_el = QK_NF4 * int64_t(1 + rng() % 9);
        const int64_t nrows = R + int64_t(rng() % 40), row = R * int64_t(rng() % uint64_t(nrows / R));
        uint64_t nbytes = 0;
        tensor_nbytes(t, k_el, nrows, &nbytes);
        std::vector<uint8_t> w(nbytes + 4);  // off the vector alignment
        std::vector<float> wf(size_t(k_el * nrows));
        for (float& v : wf) v = normal(rng) * (trial % 2 ? 1.0f : 0.02f);
        t.quantize_tensor(wf.data(), k_el, nrows, w.data() + 4, 1);
        const TypeTraits& p = traits(t.vec_dot_type);
        const size_t ab = size_t(k_el / p.block_size) * p.type_size;
        std::vector<uint8_t> act(size_t(n) * ab + 4);
        std::vector<float> af(size_t(n * k_el));
        for (int j = 0; j < n; ++j) {
            const std::vector<float> x = activations(k_el, rng);
            p.quantize_row_ref(x.data(), act.data() + 4 + size_t(j) * ab, k_el);
            p.dequantize_row(act.data() + 4 + size_t(j) * ab, af.data() + j * k_el, k_el);
        }
        std::vector<uint8_t> group(size_t(k_el / t.block_size) * k.pack_block_bytes + 4);
        k.pack_tensor(k_el, w.data() + 4, nrows, row, group.data() + 4);
        // the int8 image dequantized (for the error bound) and the exact values, rows [row, row + R)
        std::vector<float> exact(size_t(R * k_el)), image(size_t(R * k_el)), scales(size_t(k_el / QK_NF4));
        t.dequantize_rows(w.data() + 4, k_el, nrows, row, row + R, exact.data());
        for (int i = 0; i < R; ++i) {
            nf4_row_scales_i8(w.data() + 4, k_el, nrows, row + i, scales.data());
            const block_nf4* xb =
                reinterpret_cast<const block_nf4*>(w.data() + 4) + (row + i) * (k_el / QK_NF4);
            for (int64_t e = 0; e < k_el; ++e) {
                const uint8_t q = xb[e / QK_NF4].qs[(e % QK_NF4) / 2];
                const int code = e % 2 == 0 ? q >> 4 : q & 0x0F;
                image[size_t(i * k_el + e)] = float(kNF4_I8[code]) * scales[size_t(e / QK_NF4)];
            }
        }
        std::vector<int32_t> sums;
        if (k.pack_needs_sums) {
            sums.resize(size_t(n * (k_el / 32)));
            for (int j = 0; j < n; ++j)
                q8_0_block_sums(act.data() + 4 + size_t(j) * ab, k_el, sums.data() + j * (k_el / 32));
        }
        const int32_t* sp = sums.empty() ? nullptr : sums.data();
        const int64_t ldc = R + int64_t(rng() % 3);
        const float sentinel = -12345.0f;
        std::vector<float> out(size_t(n * ldc) + 1, sentinel);
        k.packed_gemm(k_el, group.data() + 4, act.data() + 4, ab, sp, k_el / 32, out.data() + 1, ldc, n);
        bool ok = out[0] == sentinel;
        for (float v : out) {
            uint32_t bits;
            std::memcpy(&bits, &v, 4);
            g_packed_digest = (g_packed_digest ^ bits) * 0x100000001b3ull;
        }
        std::string what;
        for (int j = 0; j < n; ++j) {
            const uint8_t* aj = act.data() + 4 + size_t(j) * ab;
            float one[R + 1], ref[R], want[R];
            one[R] = sentinel;
            k.packed_gemm(k_el, group.data() + 4, aj, ab, sp ? sp + j * (k_el / 32) : nullptr, k_el / 32, one,
                          R, 1);
            ok = ok && one[R] == sentinel;
            vec_dot_rows_nf4_i8(w.data() + 4, k_el, nrows, row, row + R, aj, ref);
            t.vec_dot_rows(w.data() + 4, k_el, nrows, row, row + R, aj, want);
            for (int64_t i = 0; i < ldc; ++i) {
                const float got = out[size_t(1 + j * ldc + i)];
                char buf[200];
                buf[0] = 0;
                if (i >= R) {
                    if (got != sentinel)
                        std::snprintf(buf, sizeof buf, ": C[%d][%lld] written", j, (long long)i);
                } else if (!same_bits(got, one[i], false)) {
                    std::snprintf(buf, sizeof buf, ": C[%d][%lld] = %.9g, alone %.9g", j, (long long)i, got,
                                  one[i]);
                } else {
                    // mag: sum |x*y| of the int8 image and of the exact values; amax_y: sum absmax * |y|
                    double mag = 0, mag_exact = 0, amax_y = 0;
                    nf4_row_scales_i8(w.data() + 4, k_el, nrows, row + i, scales.data());
                    for (int64_t e = 0; e < k_el; ++e) {
                        const double y = std::fabs(double(af[size_t(j * k_el + e)]));
                        mag += std::fabs(double(image[size_t(i * k_el + e)])) * y;
                        mag_exact += std::fabs(double(exact[size_t(i * k_el + e)])) * y;
                        amax_y += y * double(scales[size_t(e / QK_NF4)]) * kNF4_I8_SCALE;
                    }
                    const double nb = double(k_el / QK_NF4);
                    const double tol = kDotTol * std::max(nb, 8.0) * mag + 1e-30;
                    if (!(std::isfinite(got) && std::fabs(double(got) - double(ref[i])) <= tol))
                        std::snprintf(buf, sizeof buf,
                                      ": C[%d][%lld] = %.9g, int8 reference %.9g (|x.y| %.3g)", j,
                                      (long long)i, got, ref[i], mag);
                    else if (!(std::fabs(double(ref[i]) - double(want[i])) <=
                               1.001 * table_err * amax_y + kDotTol * std::max(nb, 8.0) * (mag + mag_exact)))
                        std::snprintf(buf, sizeof buf,
                                      ": int8 reference %.9g, exact %.9g (table error bound %.3g)", ref[i],
                                      want[i], table_err * amax_y);
                }
                if (buf[0] && what.empty()) what = buf;
            }
        }
        ok = ok && what.empty();
        check(ok, std::string(isa_name(isa)) + " packed_gemm " + t.name + " n=" + std::to_string(n) +
                      " k=" + std::to_string(k_el) + " rows " + std::to_string(row) + "+8 of " +
                      std::to_string(nrows) + what);
    }
}

using AttentionHeadsFn = void (*)(float*, const float*, int, const PagedKv&, int, int, float, float*);

// A paged K/V cache of n_blocks blocks with random fp16 rows and a scattered block table.
struct RandomPagedKv {
    std::vector<half_bits> k, v;
    std::vector<int32_t> table;
    PagedKv view;
    RandomPagedKv(int n_blocks, int n_head, int bs, int hd, std::mt19937_64& rng)
        : k(size_t(n_blocks) * size_t(n_head) * size_t(bs) * size_t(hd)),
          v(k.size()),
          table(size_t(n_blocks)) {
        std::normal_distribution<float> normal;
        for (auto& h : k) h = fp32_to_fp16(normal(rng));
        for (auto& h : v) h = fp32_to_fp16(normal(rng));
        for (int b = 0; b < n_blocks; ++b) table[size_t(b)] = (b * 5 + 1) % n_blocks;
        view = PagedKv{reinterpret_cast<const uint8_t*>(k.data()),
                       reinterpret_cast<const uint8_t*>(v.data()),
                       table.data(),
                       n_head,
                       hd,
                       bs};
    }
};

#if defined(QRT_HAVE_AVX2) || defined(QRT_HAVE_NEON)
using SiluMulFn = void (*)(float*, const float*, int64_t);
using AttentionHeadFn = void (*)(float*, const float*, const PagedKv&, int, int, float, float*);

// silu_mul and attention_head: an ISA's versions against the scalar references (vector exp, lane sums);
// attention_head takes head_dim in multiples of `lanes`. attention_heads (a GQA group at once, where the ISA
// has one) against attention_head, bit for bit.
void test_ops(const std::string& isa, SiluMulFn silu_mul, AttentionHeadFn attention_head,
              AttentionHeadsFn attention_heads, int lanes, std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    for (int64_t n : {1, 7, 8, 9, 31, 576, 1536}) {
        std::vector<float> g(size_t(n) + 1), u(size_t(n) + 1);
        for (size_t i = 0; i < g.size(); ++i) g[i] = normal(rng) * 4.0f, u[i] = normal(rng);
        if (n > 8) g[3] = 95.0f, g[4] = -95.0f, g[5] = 0.0f;  // saturated and zero gates
        std::vector<float> ref(g), out(g);
        silu_mul_ref(ref.data() + 1, u.data() + 1, n);
        silu_mul(out.data() + 1, u.data() + 1, n);
        double worst = 0;
        for (int64_t i = 1; i <= n; ++i)
            worst = std::max(worst, std::fabs(double(out[size_t(i)]) - ref[size_t(i)]) /
                                        (std::fabs(double(ref[size_t(i)])) + 1e-30));
        check(worst <= 2e-6,
              isa + " silu_mul n=" + std::to_string(n) + ": relative error " + std::to_string(worst));
    }
#if defined(QRT_HAVE_AVX2)
    if (isa == "avx2") {  // gelu_mul: the sigmoid form against the tanh reference
        for (int64_t n : {1, 7, 8, 9, 31, 640, 2048}) {
            std::vector<float> g(static_cast<size_t>(n)), u(g.size());
            for (size_t i = 0; i < g.size(); ++i) g[i] = normal(rng) * 3.0f, u[i] = normal(rng);
            if (n > 8) g[3] = 60.0f, g[4] = -60.0f, g[5] = 0.0f, g[6] = -1e-3f;
            std::vector<float> ref(g), out(g);
            gelu_mul_ref(ref.data(), u.data(), n);
            avx2::gelu_mul(out.data(), u.data(), n);
            double worst = 0;
            for (int64_t i = 0; i < n; ++i)  // relative to |g * u|: gelu's own value can cancel to ~0
                worst = std::max(worst, std::fabs(double(out[size_t(i)]) - ref[size_t(i)]) /
                                            (std::fabs(double(g[size_t(i)]) * u[size_t(i)]) + 1e-30));
            check(worst <= 2e-6,
                  isa + " gelu_mul n=" + std::to_string(n) + ": relative error " + std::to_string(worst));
        }
    }
#endif
    for (int hd : {4, 8, 12, 16, 64, 72, 128, 256}) {
        if (hd % lanes) continue;
        for (int n_kv : {1, 5, 16, 17, 100, 1000}) {
            const int bs = 16, n_head = 3, n_blocks = (n_kv + bs - 1) / bs + 2;
            const RandomPagedKv cache(n_blocks, n_head, bs, hd, rng);
            PagedKv kv = cache.view;
            // half the cases a sliding window, longer or shorter than n_kv
            if (rng() % 2) kv.window = 1 + int(rng() % unsigned(n_kv + 8));
            std::vector<float> q(static_cast<size_t>(hd)), ref(q.size()), out(q.size()),
                s1(static_cast<size_t>(n_kv)), s2(s1.size());
            for (auto& x : q) x = normal(rng) * 2.0f;
            const int head = int(rng() % n_head);
            attention_head_ref(ref.data(), q.data(), kv, head, n_kv, 0.125f, s1.data());
            attention_head(out.data(), q.data(), kv, head, n_kv, 0.125f, s2.data());
            double err = 0, mag = 0;
            for (int d = 0; d < hd; ++d) {
                err = std::max(err, std::fabs(double(out[size_t(d)]) - ref[size_t(d)]));
                mag = std::max(mag, std::fabs(double(ref[size_t(d)])));
            }
            check(err <= 1e-5 * (mag + 1e-3),
                  isa + " attention_head hd=" + std::to_string(hd) + " n_kv=" + std::to_string(n_kv) +
                      " window=" + std::to_string(kv.window) + ": error " + std::to_string(err));
            // a GQA group of query heads at once: each head exactly as attention_head alone
            if (!attention_heads) continue;
            const int n_q = 1 + int(rng() % 9);
            std::vector<float> qs(size_t(n_q * hd)), outs(qs.size() + 1, -7.0f),
                sg(size_t(std::min(n_q, kAttentionMaxGroup) * n_kv));
            for (auto& x : qs) x = normal(rng) * 2.0f;
            attention_heads(outs.data(), qs.data(), n_q, kv, head, n_kv, 0.125f, sg.data());
            bool same = outs[size_t(n_q * hd)] == -7.0f;
            for (int h = 0; h < n_q; ++h) {
                attention_head(out.data(), qs.data() + h * hd, kv, head, n_kv, 0.125f, s2.data());
                same = same && std::memcmp(out.data(), outs.data() + h * hd, sizeof(float) * size_t(hd)) == 0;
            }
            check(same, isa + " attention_heads n_q=" + std::to_string(n_q) + " hd=" + std::to_string(hd) +
                            " n_kv=" + std::to_string(n_kv) + " equals attention_head per head");
        }
    }
}
#endif

// The scalar reference's sliding window: a query over n_kv keys with window w attends exactly as one over
// only the last w keys, which a view whose block table starts at the window's first block gives when that
// key starts a block.
void test_window_ref(std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    const int bs = 16, hd = 64, n_head = 2;
    int bad = 0;
    for (int n_kv : {17, 40, 100, 333}) {
        const RandomPagedKv cache((n_kv + bs - 1) / bs + 1, n_head, bs, hd, rng);
        for (int blocks = 1; blocks * bs < n_kv; blocks += 2) {
            PagedKv windowed = cache.view, tail = cache.view;
            windowed.window = n_kv - blocks * bs;
            tail.block_table += blocks;
            std::vector<float> q(static_cast<size_t>(hd)), a(q.size()), b(q.size()),
                s(static_cast<size_t>(n_kv));
            for (auto& x : q) x = normal(rng);
            attention_head_ref(a.data(), q.data(), windowed, 1, n_kv, 0.125f, s.data());
            attention_head_ref(b.data(), q.data(), tail, 1, n_kv - blocks * bs, 0.125f, s.data());
            bad += std::memcmp(a.data(), b.data(), sizeof(float) * a.size()) != 0;
        }
    }
    check(bad == 0, "attention_head_ref with a window equals attention over the window's keys alone: " +
                        std::to_string(bad) + " cases differ");
}

using AttentionTileFn = void (*)(float*, const float*, int64_t, int, int, const PagedKv&, int, int, float,
                                 float*);

// attention_tile (consecutive query tokens of one sequence sharing K/V rows) against attention_heads per
// token, bit for bit: every token's heads, with its own causal length n_kv + i, over random caches with
// scattered block tables of several block sizes, tiles starting on and around block and chunk edges, head
// groups split into fours, and rows of q and out strided like a batch's (nothing outside a token's heads
// written). max_tok bounds n_tok (the AVX2 kernel takes at most kAttentionTile). Large queries push some
// scores into exp's clamps.
void test_attention_tile(const std::string& isa, AttentionTileFn attention_tile,
                         AttentionHeadsFn attention_heads, int lanes, int max_tok, std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    int cases = 0, bad = 0;
    std::string first_bad;
    for (int hd : {8, 12, 16, 24, 64, 72, 128, 256}) {
        if (hd % lanes) continue;
        for (int bs : {1, 3, 16, 20, 40}) {
            for (int n_kv : {1, 2, 3, 15, 16, 17, 31, 33, 47, 100, 301}) {
                const int n_tok = 1 + int(rng() % unsigned(max_tok)), n_q = 1 + int(rng() % 9);
                const int n_head = 2, n_max = n_kv + n_tok - 1, n_blocks = (n_max + bs - 1) / bs + 2;
                const RandomPagedKv cache(n_blocks, n_head, bs, hd, rng);
                PagedKv kv = cache.view;
                // a third of the cases a sliding window: each token's own, shorter or longer than the tile
                if (rng() % 3 == 0) kv.window = 1 + int(rng() % unsigned(n_max + 4));
                const int head = int(rng() % n_head);
                const float qscale = rng() % 4 == 0 ? 40.0f : 2.0f;
                // A batch row holds 2 * n_q heads, the group at head offset 1 of it.
                const int64_t stride = int64_t(2 * n_q) * hd, off = hd;
                std::vector<float> q(size_t(n_tok * stride)), out(q.size(), -7.0f), ref(q.size(), -7.0f);
                for (auto& x : q) x = normal(rng) * qscale;
                const int tile = std::min(n_tok, kAttentionTile);
                std::vector<float> st(size_t(tile * std::min(n_q, kAttentionMaxGroup) * n_max)),
                    sh(size_t(std::min(n_q, kAttentionMaxGroup) * n_max));
                attention_tile(out.data() + off, q.data() + off, stride, n_tok, n_q, kv, head, n_kv, 0.125f,
                               st.data());
                for (int i = 0; i < n_tok; ++i)
                    attention_heads(ref.data() + off + i * stride, q.data() + off + i * stride, n_q, kv, head,
                                    n_kv + i, 0.125f, sh.data());
                ++cases;
                if (std::memcmp(out.data(), ref.data(), sizeof(float) * out.size()) != 0) {
                    if (bad++ == 0)
                        first_bad = " hd=" + std::to_string(hd) + " bs=" + std::to_string(bs) +
                                    " n_kv=" + std::to_string(n_kv) + " n_tok=" + std::to_string(n_tok) +
                                    " n_q=" + std::to_string(n_q) + " window=" + std::to_string(kv.window);
                }
            }
        }
    }
    check(bad == 0, isa + " attention_tile equals attention_heads per token: " + std::to_string(bad) +
                        " of " + std::to_string(cases) + " cases differ, first" + first_bad);
}

// model::matmul on the active ISA: every output equals the dispatched vec_dot of the row with the token's
// quantized activations (Int8: one pass; Int8x2: the two passes added), or for the rows of a packed matrix
// (model/packing.h) the packed kernel on that token alone, whatever the thread count, the token chunking a
// small scratch forces, or whether matrices go through the multi-matrix form.
void test_matmul(std::mt19937_64& rng) {
    std::normal_distribution<float> normal;
    for (const char* tname : {"Q4_1", "Q8_0", "Q4_K", "F16", "F32", "NF4", "Q4_0", "Q5_0"})
        for (bool pack : {false, true}) {
            const TypeTraits& t = *find_type(std::string(tname));
            const TypeTraits& p = traits(t.vec_dot_type);
            const int64_t cols = 512;
            const int64_t rows[3] = {44, 16, 7};  // 5 packed groups and 4 rows left over, 2 groups, none
            const char* names[3] = {"blk.0.attn_q.weight", "blk.0.attn_k.weight", "blk.0.ffn_up.weight"};
            std::vector<std::vector<uint8_t>> data(3);
            std::vector<model::Matrix> ws(3);
            for (int m = 0; m < 3; ++m) {
                uint64_t nbytes = 0;
                tensor_nbytes(t, cols, rows[m], &nbytes);
                data[size_t(m)].resize(nbytes);
                std::vector<float> wf(size_t(cols * rows[m]));
                for (float& v : wf) v = normal(rng);
                t.quantize_tensor(wf.data(), cols, rows[m], data[size_t(m)].data(), 1);
                ws[size_t(m)] = model::Matrix{names[m], data[size_t(m)].data(),
                                              &t,       cols,
                                              rows[m],  uint64_t(cols / t.block_size) * t.type_size,
                                              nullptr};
            }
            std::vector<std::vector<uint8_t>> packed(3);
            if (pack) {
                bool any = false;
                for (int m = 0; m < 3; ++m) {
                    packed[size_t(m)].resize(model::packed_size(ws[size_t(m)]));
                    model::pack_matrix(ws[size_t(m)], packed[size_t(m)].data(), 2);
                    any = any || ws[size_t(m)].packed;
                }
                if (!any) continue;  // no packed kernels for this type here
            }
            for (int n_threads : {1, 3}) {
                ThreadPool pool(n_threads);
                for (int n : {1, 5, 13}) {
                    const std::vector<float> x = activations(int64_t(n) * cols, rng);
                    // enough scratch for everything, and the least that still holds one token
                    const int64_t least =
                        (model::matmul_scratch_min_floats(cols, n_threads) + n_threads - 1) / n_threads;
                    for (int64_t stride : {model::kMatmulRowTile * cols, least}) {
                        std::vector<float> scratch(size_t(n_threads * stride));
                        std::vector<std::vector<float>> single(3), multi(3);
                        for (int m = 0; m < 3; ++m) {
                            single[size_t(m)].assign(size_t(n * rows[m]), 0.0f);
                            multi[size_t(m)].assign(size_t(n * rows[m]), 0.0f);
                            model::matmul(pool, ws[size_t(m)], x.data(), n, single[size_t(m)].data(),
                                          scratch.data(), stride);
                        }
                        const model::Matrix* wp[2] = {&ws[0], &ws[1]};  // q and k share the policy: one job
                        float* yp[2] = {multi[0].data(), multi[1].data()};
                        model::matmul(pool, wp, x.data(), n, yp, scratch.data(), stride);
                        // the reference: quantize each token (twice for Int8x2) and vec_dot / vec_dot_rows
                        bool ok = true;
                        for (int m = 0; m < 3; ++m) {
                            const bool twice =
                                model::default_activations(ws[size_t(m)]) == model::Activations::Int8x2 &&
                                p.id != TypeId::F32;
                            const size_t ab = size_t(cols / p.block_size) * p.type_size;
                            std::vector<uint8_t> a1(ab), a2(ab);
                            std::vector<int32_t> s1(size_t(cols / 32)), s2(size_t(cols / 32));
                            std::vector<float> deq(static_cast<size_t>(cols)),
                                out(static_cast<size_t>(rows[m])), out2(static_cast<size_t>(rows[m]));
                            for (int j = 0; j < n; ++j) {
                                const float* xj = x.data() + j * cols;
                                kernels::quantize_row(p.id)(xj, a1.data(), cols);
                                if (twice) {
                                    kernels::dequantize_row(p.id)(a1.data(), deq.data(), cols);
                                    for (int64_t e = 0; e < cols; ++e)
                                        deq[size_t(e)] = xj[e] - deq[size_t(e)];
                                    kernels::quantize_row(p.id)(deq.data(), a2.data(), cols);
                                }
                                const VecDotFn dot = kernels::vec_dot(t.id);
                                const model::Matrix& w = ws[size_t(m)];
                                if (w.packed) {
                                    q8_0_block_sums(a1.data(), cols, s1.data());
                                    q8_0_block_sums(a2.data(), cols, s2.data());
                                }
                                for (int64_t r = 0; r < rows[m]; ++r) {
                                    if (r < w.packed_rows) {
                                        if (r % kernels::kPackRows) continue;
                                        const uint8_t* g = w.packed + uint64_t(r / kernels::kPackRows) *
                                                                          w.packed_group_bytes;
                                        float o1[kernels::kPackRows], o2[kernels::kPackRows];
                                        w.packed_kernels->packed_gemm(cols, g, a1.data(), ab, s1.data(), 0,
                                                                      o1, 1, 1);
                                        if (twice)
                                            w.packed_kernels->packed_gemm(cols, g, a2.data(), ab, s2.data(),
                                                                          0, o2, 1, 1);
                                        for (int i = 0; i < kernels::kPackRows; ++i)
                                            out[size_t(r + i)] = twice ? o1[i] + o2[i] : o1[i];
                                        continue;
                                    }
                                    const uint8_t* row =
                                        ws[size_t(m)].data + size_t(r) * ws[size_t(m)].row_bytes;
                                    if (dot) {
                                        out[size_t(r)] = dot(cols, row, a1.data());
                                        if (twice)
                                            out[size_t(r)] = out[size_t(r)] + dot(cols, row, a2.data());
                                    }
                                }
                                if (!dot) {  // NF4: the rows past the packed ones
                                    const int64_t r0 = w.packed_rows;
                                    t.vec_dot_rows(w.data, cols, rows[m], r0, rows[m], a1.data(),
                                                   out.data() + r0);
                                    if (twice) {
                                        t.vec_dot_rows(w.data, cols, rows[m], r0, rows[m], a2.data(),
                                                       out2.data() + r0);
                                        for (int64_t r = r0; r < rows[m]; ++r)
                                            out[size_t(r)] = out[size_t(r)] + out2[size_t(r)];
                                    }
                                }
                                for (int64_t r = 0; r < rows[m]; ++r) {
                                    ok = ok && same_bits(single[size_t(m)][size_t(j * rows[m] + r)],
                                                         out[size_t(r)], false);
                                    if (m < 2)
                                        ok = ok && same_bits(multi[size_t(m)][size_t(j * rows[m] + r)],
                                                             out[size_t(r)], false);
                                }
                            }
                        }
                        check(ok, std::string("matmul ") + tname + (pack ? " packed" : "") +
                                      " threads=" + std::to_string(n_threads) + " n=" + std::to_string(n) +
                                      " stride=" + std::to_string(stride));
                    }
                }
            }
        }
}

void test_dispatch() {
    // The active dequantize_row is the active ISA's kernel where there is one, else the reference.
    for (const TypeTraits& t : all_types()) {
        const kernels::CpuKernels* k = kernels::find(active_isa(), t.id);
        const DequantizeRowFn want = k && k->dequantize_row ? k->dequantize_row : t.dequantize_row;
        check(kernels::dequantize_row(t.id) == want, std::string("dispatch ") + t.name);
    }
    for (const TypeTraits& t : all_types()) {
        const kernels::CpuKernels* k = kernels::find(active_isa(), t.id);
        const QuantizeRowFn q = k && k->quantize_row ? k->quantize_row : t.quantize_row_ref;
        const VecDotFn d = k && k->vec_dot ? k->vec_dot : t.vec_dot;
        check(kernels::quantize_row(t.id) == q, std::string("dispatch quantize_row ") + t.name);
        check(kernels::vec_dot(t.id) == d, std::string("dispatch vec_dot ") + t.name);
        check(kernels::gemm(t.id) == (k ? k->gemm : nullptr), std::string("dispatch gemm ") + t.name);
    }
    // The scalar ISA never overrides the reference.
    for (const TypeTraits& t : all_types()) check(kernels::find(Isa::Scalar, t.id) == nullptr, t.name);
    // NF4's packed kernels exist for every vector ISA this CPU runs (the layout and the gemm of this CPU's
    // build), so test_packed_tensor and test_matmul's packed NF4 case cannot pass by having nothing to test.
    for (Isa isa : {Isa::Avx2, Isa::Neon}) {
        if (!cpu_runs(isa)) continue;
        const kernels::CpuKernels* k = kernels::find(isa, TypeId::NF4);
        check(k && k->pack_tensor && k->packed_gemm, std::string(isa_name(isa)) + " packed NF4 registered");
    }
#if defined(QRT_HAVE_AVX2)
    for (TypeId id : kAvx2Types) {
        const kernels::CpuKernels* k = kernels::find(Isa::Avx2, id);
        check(k && k->dequantize_row, std::string("avx2 kernel registered for ") + traits(id).name);
    }
    for (TypeId id : kAvx2DotTypes) {
        const kernels::CpuKernels* k = kernels::find(Isa::Avx2, id);
        check(k && k->vec_dot && k->gemm,
              std::string("avx2 vec_dot and gemm registered for ") + traits(id).name);
    }
    for (TypeId id : kAvx2ActivationTypes) {
        const kernels::CpuKernels* k = kernels::find(Isa::Avx2, id);
        check(k && k->quantize_row, std::string("avx2 quantize_row registered for ") + traits(id).name);
    }
#endif
#if defined(QRT_HAVE_NEON)
    // NEON covers the same types as AVX2 (its dot products come from the dotprod build or the baseline one,
    // whichever matches this CPU: cpu/neon/neon_util.h).
    for (TypeId id : kAvx2Types) {
        const kernels::CpuKernels* k = kernels::find(Isa::Neon, id);
        check(k && k->dequantize_row, std::string("neon kernel registered for ") + traits(id).name);
    }
    for (TypeId id : kAvx2DotTypes) {
        const kernels::CpuKernels* k = kernels::find(Isa::Neon, id);
        check(k && k->vec_dot && k->gemm,
              std::string("neon vec_dot and gemm registered for ") + traits(id).name);
    }
    for (TypeId id : kAvx2ActivationTypes) {
        const kernels::CpuKernels* k = kernels::find(Isa::Neon, id);
        check(k && k->quantize_row, std::string("neon quantize_row registered for ") + traits(id).name);
    }
#endif
}

}  // namespace

int main() {
    std::printf("cpu isa in use: %s\n", isa_name(active_isa()));
#if defined(QRT_HAVE_NEON)
    std::printf("neon int8 dot products: %s\n",
                cpu_features().dotprod ? "sdot (dotprod build)" : "smull+sadalp (baseline build)");
#endif
#if defined(QRT_HAVE_AVX2)
    if (cpu_runs(Isa::Avx2))
        std::printf(
            "avx2 packed int8 dot products (legacy and k-quants): %s\n",
            cpu_features().avxvnni ? "vpdpbusd (avxvnni build)" : "vpmaddubsw+vpmaddwd (plain build)");
#endif
    test_dispatch();
    std::mt19937_64 rng(20240531);
    // the dispatched tile (the AVX2 kernel in sub-tiles, elsewhere attention_heads per token), longer tiles
    // too
    test_attention_tile(isa_name(active_isa()), attention_tile, attention_heads, 1, 3 * kAttentionTile, rng);
    test_window_ref(rng);
    test_matmul(rng);
    for (Isa isa : {Isa::Avx2, Isa::Neon}) {
        if (!cpu_runs(isa)) {
            std::printf("skipped %s: this CPU cannot run it\n", isa_name(isa));
            continue;
        }
#if defined(QRT_HAVE_AVX2)
        if (isa == Isa::Avx2) {
            test_ops("avx2", avx2::silu_mul, avx2::attention_head, avx2::attention_heads, 8, rng);
            test_attention_tile("avx2", avx2::attention_tile, avx2::attention_heads, 8, kAttentionTile, rng);
        }
#endif
#if defined(QRT_HAVE_NEON)
        if (isa == Isa::Neon) test_ops("neon", neon::silu_mul, neon::attention_head, nullptr, 4, rng);
#endif
        for (const TypeTraits& t : all_types()) {
            const kernels::CpuKernels* k = kernels::find(isa, t.id);
            if (!k) continue;
            if (k->dequantize_row) {
                check(t.dequantize_row != nullptr,
                      std::string(isa_name(isa)) + " kernel without reference: " + t.name);
                if (t.dequantize_row) test_type(isa, t, k->dequantize_row, rng);
            }
            if (k->quantize_row) test_quantize(isa, t, k->quantize_row, rng);
            if (k->vec_dot) test_vec_dot(isa, t, k->vec_dot, rng);
            if (k->gemm) {
                check(k->vec_dot != nullptr, std::string(isa_name(isa)) + " gemm without vec_dot: " + t.name);
                if (k->vec_dot) test_gemm(isa, t, k->gemm, k->vec_dot, rng);
            }
            if (k->pack_tensor) {
                check(k->packed_gemm && k->pack_block_bytes && !k->pack && t.id == TypeId::NF4,
                      std::string(isa_name(isa)) + " packed tensor kernels incomplete: " + t.name);
                if (k->packed_gemm && k->pack_block_bytes && t.id == TypeId::NF4)
                    test_packed_tensor(isa, t, *k, rng);
            } else if (k->pack || k->packed_gemm) {
                check(k->pack && k->packed_gemm && k->pack_block_bytes && t.vec_dot,
                      std::string(isa_name(isa)) + " packed kernels incomplete: " + t.name);
                if (k->pack && k->packed_gemm && k->pack_block_bytes && t.vec_dot)
                    test_packed(isa, t, *k, rng);
            }
        }
    }
    std::printf("packed_gemm output digest: %016llx\n", (unsigned long long)g_packed_digest);
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
