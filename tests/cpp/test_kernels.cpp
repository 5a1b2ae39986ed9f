// test_kernels: every CPU ISA kernel against the registry's reference, bit for bit.
//
// For each ISA this CPU can run and each type with both a reference and a kernel of that ISA, rows of many
// lengths (1 block, odd counts, large) in three flavours are dequantized by both and compared:
//   - quantized: real N(0,1) data through the reference quantizer,
//   - random:    random bytes with sane finite fp16 scales (every bit pattern of the payload),
//   - raw:       random bytes everywhere (NaN/Inf scales possible): block types compared NaN-aware.
// Inputs and outputs sit off the vector alignment in exactly sized buffers so the sanitizers catch any
// overrun or alignment assumption. Prints "N passed, M failed"; exits non-zero on failure.
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <random>
#include <string>
#include <vector>

#include "cpu/isa.h"
#include "format/common.h"
#include "format/kquants.h"
#include "format/legacy.h"
#include "format/types.h"
#include "kernels/dispatch.h"

using namespace qrt;

namespace {

int g_passed = 0, g_failed = 0;

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

void test_dispatch() {
    // The active dequantize_row is the active ISA's kernel where there is one, else the reference.
    for (const TypeTraits& t : all_types()) {
        const kernels::CpuKernels* k = kernels::find(active_isa(), t.id);
        const DequantizeRowFn want = k && k->dequantize_row ? k->dequantize_row : t.dequantize_row;
        check(kernels::dequantize_row(t.id) == want, std::string("dispatch ") + t.name);
    }
    // The scalar ISA never overrides the reference.
    for (const TypeTraits& t : all_types()) check(kernels::find(Isa::Scalar, t.id) == nullptr, t.name);
#if defined(QRT_HAVE_AVX2)
    for (TypeId id : kAvx2Types) {
        const kernels::CpuKernels* k = kernels::find(Isa::Avx2, id);
        check(k && k->dequantize_row, std::string("avx2 kernel registered for ") + traits(id).name);
    }
#endif
}

}  // namespace

int main() {
    std::printf("cpu isa in use: %s\n", isa_name(active_isa()));
    test_dispatch();
    std::mt19937_64 rng(20240531);
    for (Isa isa : {Isa::Avx2, Isa::Neon}) {
        if (!cpu_runs(isa)) {
            std::printf("skipped %s: this CPU cannot run it\n", isa_name(isa));
            continue;
        }
        for (const TypeTraits& t : all_types()) {
            const kernels::CpuKernels* k = kernels::find(isa, t.id);
            if (!k || !k->dequantize_row) continue;
            check(t.dequantize_row != nullptr,
                  std::string(isa_name(isa)) + " kernel without reference: " + t.name);
            if (t.dequantize_row) test_type(isa, t, k->dequantize_row, rng);
        }
    }
    std::printf("%d passed, %d failed\n", g_passed, g_failed);
    return g_failed == 0 ? 0 : 1;
}
