#include "model/packing.h"

#include <sys/mman.h>

#include <cstdlib>
#include <new>
#include <string_view>
#include <vector>

#include "cpu/parallel.h"
#include "kernels/dispatch.h"

namespace qrt::model {

namespace {

constexpr uint64_t kAlign = 64, kHugePage = uint64_t(2) << 20;

uint64_t round_up(uint64_t n, uint64_t to = kAlign) {
    return (n + to - 1) / to * to;
}

const kernels::CpuKernels* packed_kernels(const Matrix& m) {
    if (!m.present() || m.rows < kernels::kPackRows || m.cols % m.type->block_size != 0) return nullptr;
    return kernels::packed(m.type->id);
}

}  // namespace

void Unmap::operator()(uint8_t* p) const {
    ::munmap(p, size);
}

uint64_t packed_size(const Matrix& m) {
    const kernels::CpuKernels* k = packed_kernels(m);
    if (!k) return 0;
    const uint64_t groups = uint64_t(m.rows / kernels::kPackRows);
    return round_up(groups * uint64_t(m.cols / m.type->block_size) * k->pack_block_bytes);
}

void pack_matrix(Matrix& m, uint8_t* out, int n_threads) {
    const kernels::CpuKernels* k = packed_kernels(m);
    if (!k) return;
    const int64_t groups = m.rows / kernels::kPackRows;
    const uint64_t group_bytes = uint64_t(m.cols / m.type->block_size) * k->pack_block_bytes;
    parallel_for(groups, n_threads, 64, [&](int64_t g0, int64_t g1) {
        for (int64_t g = g0; g < g1; ++g) {
            uint8_t* group = out + uint64_t(g) * group_bytes;
            if (k->pack_tensor)
                k->pack_tensor(m.cols, m.data, m.rows, g * kernels::kPackRows, group);
            else
                k->pack(m.cols, m.data + uint64_t(g) * kernels::kPackRows * m.row_bytes, m.row_bytes, group);
        }
    });
    m.packed = out;
    m.packed_rows = groups * kernels::kPackRows;
    m.packed_group_bytes = group_bytes;
    m.packed_kernels = k;
}

PackedBytes pack_weights(Weights& w, const gguf::File& file, int64_t layer_begin, int64_t layer_end,
                         bool head, int n_threads) {
    if (const char* e = std::getenv("QRT_REPACK"); e && std::string_view(e) == "0") return nullptr;
    std::vector<Matrix*> ms;
    for (int64_t i = layer_begin; i < layer_end; ++i) {
        LayerWeights& L = w.layers[size_t(i)];
        for (Matrix* m :
             {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
            ms.push_back(m);
    }
    if (head) ms.push_back(&w.output);
    uint64_t total = 0;
    for (const Matrix* m : ms) total += packed_size(*m);
    if (total == 0) return nullptr;
    const size_t size = size_t(round_up(total, kHugePage));
    void* p = ::mmap(nullptr, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) throw std::bad_alloc();
#if defined(MADV_HUGEPAGE)
    ::madvise(p, size, MADV_HUGEPAGE);  // advice only: without THP this is plain 4 KiB pages
#endif
    PackedBytes bytes(static_cast<uint8_t*>(p), Unmap{size});
    uint8_t* out = bytes.get();
    for (Matrix* m : ms) {
        const uint64_t n = packed_size(*m);
        if (n == 0) continue;
        pack_matrix(*m, out, n_threads);
        file.evict(m->data, m->nbytes);
        out += n;
    }
    return bytes;
}

}  // namespace qrt::model
