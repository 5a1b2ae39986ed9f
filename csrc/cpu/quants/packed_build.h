// What differs between the two builds of the packed kernel files (packed_legacy.cpp, packed_kquants.cpp):
// the plain AVX2 one and the AVX-VNNI one (-mavxvnni and QRT_AVXVNNI_BUILD, CMakeLists.txt), and which
// slots each registers. Include it only inside a file's `#if defined(__AVX2__)` section, after
// cpu/quants/avx2_util.h: everything here has internal linkage, so each build keeps its own copies (the rule
// in kernels/dispatch.h).
#pragma once

#if defined(__AVX2__)
#include <immintrin.h>

#include <cstdint>
#include <cstring>

#include "cpu/isa.h"
#include "kernels/dispatch.h"

namespace qrt::avx2 {
namespace {

#if defined(QRT_AVXVNNI_BUILD)
#if !defined(__AVXVNNI__)
#error "QRT_AVXVNNI_BUILD needs -mavxvnni"
#endif
constexpr bool kVnniBuild = true;

// acc + the sums of each 4 adjacent products of u (unsigned) and s (signed), per int32 lane (VEX vpdpbusd):
// exact, whatever the values.
inline __m256i dot4(__m256i acc, __m256i u, __m256i s) {
    return _mm256_dpbusd_avx_epi32(acc, u, s);
}

// acc + the sums of adjacent int16 products, per int32 lane (vpdpwssd).
inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
    return _mm256_dpwssd_avx_epi32(acc, a, b);
}
#else
constexpr bool kVnniBuild = false;

// The same via int16 pairs (vpmaddubsw saturates: exact only where each pair sum fits int16, as for every
// caller of the plain build), then vpmaddwd with ones.
inline __m256i dot4(__m256i acc, __m256i u, __m256i s) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(_mm256_maddubs_epi16(u, s), _mm256_set1_epi16(1)));
}

inline __m256i madd_acc(__m256i acc, __m256i a, __m256i b) {
    return _mm256_add_epi32(acc, _mm256_madd_epi16(a, b));
}
#endif

// The 4 bytes at p in every 32-bit lane: a token's quants for one quad of all 8 rows.
inline __m256i bcast4(const void* p) {
    int32_t v;
    std::memcpy(&v, p, 4);
    return _mm256_set1_epi32(v);
}

// What this build registers: the layout (pack, pack_block_bytes, pack_needs_sums) from the plain build only,
// packed_gemm from the build that matches cpu_features().avxvnni, so the two builds fill disjoint parts of
// the slots and the order of static initialization does not matter. A mask, not a modified copy of the
// kernels: kernels/dispatch.h Registrar.
inline unsigned this_build_slots() {
    unsigned slots = kernels::kAllSlots;
    if (kVnniBuild) slots &= ~unsigned(kernels::kLayoutSlot);
    if (cpu_features().avxvnni != kVnniBuild) slots &= ~unsigned(kernels::kPackedGemmSlot);
    return slots;
}

}  // namespace
}  // namespace qrt::avx2

#endif  // __AVX2__
