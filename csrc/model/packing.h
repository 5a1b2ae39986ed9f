// Load-time repacking of weight matrices for the active ISA's packed kernels (kernels/dispatch.h).
//
// A matrix whose type has packed kernels gets a second copy of its rows in groups of kernels::kPackRows,
// which matmul reads for prefill and decode alike; rows past the last whole group stay in the mapping
// only. The copy has as many bytes as the rows it replaces, and once a tensor is packed its pages of the
// file mapping are evicted from the process (they fault back in from the page cache if something still
// reads them, like the token embedding lookup of a tied output layer), so resident memory stays about
// one copy of the weights.
#pragma once

#include <cstdint>
#include <memory>

#include "model/weights.h"

namespace qrt::model {

// The bytes m's packed copy takes, rounded up to 64; 0 when it is not packed on this machine (no packed
// kernels for its type, fewer than kPackRows rows, or QRT_KERNELS=scalar).
uint64_t packed_size(const Matrix& m);

// Packs m into out (packed_size(m) bytes, 64-byte aligned) with up to n_threads threads and points
// m.packed at it.
void pack_matrix(Matrix& m, uint8_t* out, int n_threads);

// Anonymous memory from mmap, in transparent huge pages where the kernel allows (a 2 MiB page needs one
// fault and one TLB entry where 4 KiB pages need 512: decode streams all of it every token).
struct Unmap {
    size_t size = 0;
    void operator()(uint8_t* p) const;
};
using PackedBytes = std::unique_ptr<uint8_t, Unmap>;

// Packs the matrices of layers [layer_begin, layer_end) and, with `head`, the output layer, into one
// allocation, which it returns (empty if nothing is packed); pages of `file` that held them are evicted.
// QRT_REPACK=0 in the environment turns it off: the weights stay in the mapping only (less anonymous memory
// where RAM is tight, at the old kernels' speed).
PackedBytes pack_weights(Weights& w, const gguf::File& file, int64_t layer_begin, int64_t layer_end,
                         bool head, int n_threads);

}  // namespace qrt::model
