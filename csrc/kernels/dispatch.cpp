#include "kernels/dispatch.h"

#include <cstdio>
#include <cstdlib>

namespace qrt::kernels {

namespace {

constexpr int kIsaCount = int(Isa::Neon) + 1;
constexpr int kMaxTypes = 64;  // per ISA; registration aborts loudly if a table ever fills up

struct Slot {
    TypeId type;
    CpuKernels kernels;
};

struct IsaTable {
    Slot slots[kMaxTypes];
    int count;
};

// constinit: filled in at compile time, so it is ready before any dynamic initializer runs and the
// registrars in other files may add to it in whatever order the linker runs them.
constinit IsaTable g_tables[kIsaCount] = {};

Slot* find_slot(Isa isa, TypeId type) {
    IsaTable& t = g_tables[int(isa)];
    for (int i = 0; i < t.count; ++i)
        if (t.slots[i].type == type) return &t.slots[i];
    return nullptr;
}

}  // namespace

Registrar::Registrar(Isa isa, TypeId type, const CpuKernels& k, unsigned slots) {
    Slot* s = find_slot(isa, type);
    if (!s) {
        IsaTable& t = g_tables[int(isa)];
        if (t.count == kMaxTypes) {
            std::fprintf(stderr, "qrt: kernel table of %s is full; raise kMaxTypes\n", isa_name(isa));
            std::abort();
        }
        s = &t.slots[t.count++];
        s->type = type;
    }
    if (k.dequantize_row && (slots & kDequantizeSlot)) s->kernels.dequantize_row = k.dequantize_row;
    if (k.quantize_row && (slots & kQuantizeSlot)) s->kernels.quantize_row = k.quantize_row;
    if (k.vec_dot && (slots & kVecDotSlot)) s->kernels.vec_dot = k.vec_dot;
    if (k.gemm && (slots & kGemmSlot)) s->kernels.gemm = k.gemm;
    if ((k.pack || k.pack_tensor) && (slots & kLayoutSlot)) {
        s->kernels.pack = k.pack;
        s->kernels.pack_tensor = k.pack_tensor;
        s->kernels.pack_block_bytes = k.pack_block_bytes;
        s->kernels.pack_needs_sums = k.pack_needs_sums;
    }
    if (k.packed_gemm && (slots & kPackedGemmSlot)) s->kernels.packed_gemm = k.packed_gemm;
}

const CpuKernels* find(Isa isa, TypeId type) {
    const Slot* s = find_slot(isa, type);
    return s ? &s->kernels : nullptr;
}

DequantizeRowFn dequantize_row(TypeId type) {
    const CpuKernels* k = find(active_isa(), type);
    if (k && k->dequantize_row) return k->dequantize_row;
    const TypeTraits* t = find_type(int32_t(type));
    return t ? t->dequantize_row : nullptr;
}

QuantizeRowFn quantize_row(TypeId type) {
    const CpuKernels* k = find(active_isa(), type);
    if (k && k->quantize_row) return k->quantize_row;
    const TypeTraits* t = find_type(int32_t(type));
    return t ? t->quantize_row_ref : nullptr;
}

VecDotFn vec_dot(TypeId type) {
    const CpuKernels* k = find(active_isa(), type);
    if (k && k->vec_dot) return k->vec_dot;
    const TypeTraits* t = find_type(int32_t(type));
    return t ? t->vec_dot : nullptr;
}

GemmFn gemm(TypeId type) {
    const CpuKernels* k = find(active_isa(), type);
    return k ? k->gemm : nullptr;
}

const CpuKernels* packed(TypeId type) {
    const CpuKernels* k = find(active_isa(), type);
    return k && (k->pack || k->pack_tensor) && k->packed_gemm && k->pack_block_bytes ? k : nullptr;
}

}  // namespace qrt::kernels
