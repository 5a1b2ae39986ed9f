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
//  - dequantize_row and quantize_row must match the reference bit for bit (same float operations in the
//    same order; the build compiles these files with -ffp-contract=off so mul+add is never fused behind our
//    back). vec_dot and gemm compute the reference's integer sums exactly but may scale and add them up in
//    another float order (8-lane accumulators, FMA): tests compare them by error relative to sum |x*y|.
#pragma once

#include "cpu/isa.h"
#include "format/types.h"

namespace qrt::kernels {

// C[j * ldc + i] = (row i of A) . (row j of B) for i < m, j < n: A holds m weight rows of k elements of
// the kernel's type, lda bytes apart; B holds n activation rows of k elements in its vec_dot_type, ldb bytes
// apart (B = the tokens). Every C element is bit for bit what the same ISA's vec_dot returns for that pair,
// whatever m and n are, so results do not depend on batching or on how rows are split over threads.
using GemmFn = void (*)(int64_t k, const void* a, size_t lda, const void* b, size_t ldb, float* c,
                        int64_t ldc, int64_t m, int64_t n);

// Weights repacked at load time (llama.cpp's "repack" buffers, llamafile's tinyBLAS): kPackRows rows of a
// matrix become one group in which the same element of every row sits side by side, so one vector register
// holds a few elements of all eight rows. A tile then needs no horizontal sums, and one int->float
// conversion and one FMA serve eight outputs instead of one; this is where prefill spends its time.
// The layout of a group is the ISA file's business (each type documents its own); matmul only sizes it
// (pack_block_bytes per block of kPackRows rows) and hands groups to packed_gemm.
constexpr int kPackRows = 8;

// Packs rows [0, kPackRows) of a matrix (k elements per row of the kernel's type, lda bytes apart) into
// `group`, (k / block_size) * pack_block_bytes bytes.
using PackFn = void (*)(int64_t k, const void* rows, size_t lda, void* group);

// The same for types whose rows are not self-contained (NF4: the block scales come from per-tensor state
// after the blocks): packs rows [row, row + kPackRows) of the whole tensor of nrows x k elements that starts
// at `tensor`. A type's layout has pack or pack_tensor, not both.
using PackTensorFn = void (*)(int64_t k, const uint8_t* tensor, int64_t nrows, int64_t row, void* group);

// c[j * ldc + i] = (row i of the group) . (activation row j of b) for i < kPackRows, j < n; b as for GemmFn.
// sums[j * sums_stride + l] is the sum of the int8 quants of block l (32 elements) of activation row j,
// for kernels with pack_needs_sums (the Q8_0 partners of offset types: sum (q - o) y = sum q y - o sum y);
// nullptr otherwise. Each output is the same float operations whatever n is, so prefill and decode agree
// bit for bit; they differ from vec_dot's only in the float order (the integer sums are exact).
using PackedGemmFn = void (*)(int64_t k, const void* group, const void* b, size_t ldb, const int32_t* sums,
                              int64_t sums_stride, float* c, int64_t ldc, int64_t n);

// One ISA's kernels for one type; nullptr = not provided (use the reference, or loop over vec_dot).
// quantize_row is for activation types (Q8_0, Q8_1, Q8_K, F16, BF16) and equals their quantize_row_ref;
// vec_dot is this type . its vec_dot_type (as the registry's vec_dot); gemm is many vec_dots at once,
// register-blocked.
struct CpuKernels {
    DequantizeRowFn dequantize_row = nullptr;
    QuantizeRowFn quantize_row = nullptr;
    VecDotFn vec_dot = nullptr;
    GemmFn gemm = nullptr;
    // Repacked weights (all three set, or none, once every file has registered; pack_tensor in place of
    // pack for NF4). pack, pack_tensor, pack_block_bytes and pack_needs_sums (the layout) are registered
    // together; packed_gemm may come from another build of the same file (cpu/quants/packed_legacy.cpp:
    // AVX-VNNI).
    PackFn pack = nullptr;
    PackTensorFn pack_tensor = nullptr;
    PackedGemmFn packed_gemm = nullptr;
    size_t pack_block_bytes = 0;
    bool pack_needs_sums = false;
};

// Slots of a registration, for Registrar's mask.
enum SlotMask : unsigned {
    kDequantizeSlot = 1,
    kQuantizeSlot = 2,
    kVecDotSlot = 4,
    kGemmSlot = 8,
    kLayoutSlot = 16,  // pack or pack_tensor, pack_block_bytes, pack_needs_sums
    kPackedGemmSlot = 32,
    kAllSlots = 63,
};

// Adds the non-null slots of `k` that `slots` names to `isa`'s table for `type`. Meant for static
// initialization, before any lookup, and defined out of line: an ISA file's initializers must run on any
// x86-64 or AArch64 CPU, since they run at load whatever the CPU, so `k` should be a constexpr object
// (a temporary CpuKernels is built with vector stores in a file compiled for AVX2, which dies on CPUs
// without AVX) and `slots` a plain integer.
struct Registrar {
    Registrar(Isa isa, TypeId type, const CpuKernels& k, unsigned slots = kAllSlots);
};

// What `isa` provides for `type` (nullptr if nothing): "a backend says what it supports".
// Tests use it to reach a specific ISA's kernel regardless of the active one.
const CpuKernels* find(Isa isa, TypeId type);

// The kernels to use on this machine: the active ISA's, else the registry's reference.
// dequantize_row: nullptr only for types whose rows are not self-contained (NF4: use its dequantize_rows).
DequantizeRowFn dequantize_row(TypeId type);
// quantize_row: converts float activations to `type` (a vec_dot_type).
QuantizeRowFn quantize_row(TypeId type);
// vec_dot: nullptr for compute-only types and NF4 (use the registry's vec_dot_rows).
VecDotFn vec_dot(TypeId type);
// gemm: nullptr when the active ISA has none (the reference is vec_dot in a loop).
GemmFn gemm(TypeId type);
// The active ISA's kernels for `type` if they include a packed layout, else nullptr.
const CpuKernels* packed(TypeId type);

}  // namespace qrt::kernels
