// Which instruction sets this CPU has, read once by CPUID, and which one the kernels use.
#pragma once

#include <string>

namespace qrt {

enum class Isa { Scalar, Avx2, Neon };

struct CpuFeatures {
    bool avx2 = false, fma = false, f16c = false, avx512f = false, neon = false, dotprod = false;
};

const CpuFeatures& cpu_features();

// Best ISA that is both compiled in and supported; QRT_KERNELS=scalar in the environment forces Scalar.
Isa active_isa();
const char* isa_name(Isa isa);

}  // namespace qrt
