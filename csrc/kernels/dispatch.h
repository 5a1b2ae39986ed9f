// Kernel dispatch: which function runs an op for a weight type on this machine.
//
// Each CPU ISA has a table of kernels indexed by type. A csrc/cpu/quants/<type>.cpp file fills its type's
// slots for the ISA it is compiled for with a static Registrar, so adding a type's fast kernels is adding
// its file: there is no central list to edit. The table starts empty and an empty slot falls back to the
// format/ reference from the type registry, which is always there. The ISA in use is cpu/isa.h's
// active_isa(), chosen once by CPUID (QRT_KERNELS=scalar forces the references).
//
// Rules for the per-ISA files (they are compiled with that ISA's flags, e.g. -mavx2):
//  - Put everything in a whole-file #if defined(__AVX2__) / __ARM_NEON section and an anonymous
//    namespace, and register with a namespace-scope `const Registrar`.
//  - Do not call inline functions from shared headers (fp16_to_fp32, get_scale_min_k4, std:: templates):
//    the linker keeps one copy of each, and if it keeps the one compiled with AVX2, scalar code on a CPU
//    without AVX2 would crash. Use intrinsics and file-local helpers instead.
//  - Kernels must match the reference bit for bit (same float operations in the same order; the build
//    compiles these files with -ffp-contract=off so mul+add is never fused behind our back).
#pragma once

#include "cpu/isa.h"
#include "format/types.h"

namespace qrt::kernels {

// One ISA's kernels for one weight type; nullptr = not provided (use the reference).
// Later: vec_dot, matvec, matmul.
struct CpuKernels {
    DequantizeRowFn dequantize_row = nullptr;
};

// Adds the non-null slots of `k` to `isa`'s table for `type`. Meant for static initialization, before
// any lookup; defined out of line so the ISA files' initializers contain no ISA-specific code.
struct Registrar {
    Registrar(Isa isa, TypeId type, const CpuKernels& k);
};

// What `isa` provides for `type` (nullptr if nothing): "a backend says what it supports".
// Tests use it to reach a specific ISA's kernel regardless of the active one.
const CpuKernels* find(Isa isa, TypeId type);

// The dequantize_row kernel to use on this machine: the active ISA's, else the registry's reference.
// nullptr only for types whose rows are not self-contained (NF4: use its dequantize_rows).
DequantizeRowFn dequantize_row(TypeId type);

}  // namespace qrt::kernels
