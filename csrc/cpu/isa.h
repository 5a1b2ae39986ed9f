// Which instruction sets this CPU has, read once by CPUID, and which one the kernels use.
#pragma once

#include <string>

namespace qrt {

enum class Isa { Scalar, Avx2, Neon };

struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false, avx512f = false, neon = false, dotprod = false;
    // AVX-VNNI (VEX vpdpbusd on ymm): the packed legacy kernels' dot products (cpu/quants/packed_legacy.cpp).
    // QRT_AVXVNNI=0 in the environment masks it, so that tests can run the plain AVX2 path on such a CPU.
    bool avxvnni = false;
};

const CpuFeatures& cpu_features();

// Best ISA that is both compiled in and supported; QRT_KERNELS=scalar in the environment forces Scalar.
Isa active_isa();
const char* isa_name(Isa isa);

}  // namespace qrt
