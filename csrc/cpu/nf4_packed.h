// The packed (8-row interleaved) layout of NF4 that the AVX2 and NEON packed kernels share
// (cpu/quants/packed_nf4.cpp, cpu/neon/nf4.cpp), and the load-time pack into it.
//
// One packed block = block l (64 elements) of the 8 rows r = 0..7 of a group:
//   scale[8]  float, row r at r: the block's absmax (decoded exactly, nf4.h) / kNF4_I8_SCALE   32 bytes
//   qs        8 chunks of 32 bytes; chunk 4h + c, byte 4r + i: low nibble = the code of row r's element
//             32h + 4c + i, high nibble = that of element 32h + 16 + 4c + i (h = 0, 1; c, i = 0..3)   256
//             bytes
// 288 bytes for 8 x 64 elements (4.5 bits per weight, as Q4_0; the file's blocks take 4.125). The scale is a
// float, not the file's 8-bit code, because decoding the double quantization per block and token would cost
// more than the dot product; the codes are reordered so that a chunk's low nibbles pair with the same 4
// activation bytes for all 8 rows, the high nibbles with the 4 bytes 16 further, exactly as in Q4_0's layout
// (packed_legacy.cpp), and each half of the block pairs with one Q8_0 activation block.
#pragma once

#include <cstddef>
#include <cstdint>

namespace qrt::cpu {

constexpr size_t kNf4PackScalesAt = 0, kNf4PackQsAt = 32, kNf4PackBytes = 32 + 256;

// kernels::PackTensorFn for NF4: rows [row, row + 8) of the nrows x k tensor at `tensor` into `group`.
void pack_nf4(int64_t k, const uint8_t* tensor, int64_t nrows, int64_t row, void* group);

}  // namespace qrt::cpu
