#include "cpu/isa.h"

#include <cstdlib>
#include <cstring>

#if defined(__x86_64__) || defined(__i386__)
#include <cpuid.h>
#endif
#if defined(__aarch64__) && defined(__linux__)
#include <asm/hwcap.h>
#include <sys/auxv.h>
#endif

namespace qrt {

namespace {

CpuFeatures detect() {
    CpuFeatures f;
#if defined(__x86_64__) || defined(__i386__)
    __builtin_cpu_init();
    f.avx2 = __builtin_cpu_supports("avx2");
    f.fma = __builtin_cpu_supports("fma");
    f.f16c = __builtin_cpu_supports("f16c");
    f.avx512f = __builtin_cpu_supports("avx512f");
    // CPUID leaf 7 subleaf 1, EAX bit 4. It runs on ymm registers, so it also needs the OS to save AVX state,
    // which __builtin_cpu_supports("avx2") has checked (XGETBV) already.
    unsigned eax = 0, ebx = 0, ecx = 0, edx = 0;
    const char* vnni = std::getenv("QRT_AVXVNNI");
    f.avxvnni = f.avx2 && __get_cpuid_count(7, 1, &eax, &ebx, &ecx, &edx) && (eax & (1u << 4)) &&
                !(vnni && std::strcmp(vnni, "0") == 0);
#elif defined(__aarch64__)
    f.neon = true;  // mandatory in AArch64
#if defined(__linux__) && defined(HWCAP_ASIMDDP)
    f.dotprod = (getauxval(AT_HWCAP) & HWCAP_ASIMDDP) != 0;
#endif
#endif
    return f;
}

Isa choose() {
    const char* forced = std::getenv("QRT_KERNELS");
    if (forced && std::strcmp(forced, "scalar") == 0) return Isa::Scalar;
    const CpuFeatures& f = cpu_features();
#if defined(QRT_HAVE_AVX2)
    if (f.avx2 && f.fma && f.f16c) return Isa::Avx2;
#endif
#if defined(QRT_HAVE_NEON)
    if (f.neon) return Isa::Neon;
#endif
    (void)f;
    return Isa::Scalar;
}

}  // namespace

const CpuFeatures& cpu_features() {
    static const CpuFeatures features = detect();
    return features;
}

Isa active_isa() {
    static const Isa isa = choose();
    return isa;
}

const char* isa_name(Isa isa) {
    switch (isa) {
        case Isa::Avx2:
            return "avx2";
        case Isa::Neon:
            return "neon";
        default:
            return "scalar";
    }
}

}  // namespace qrt
