// Compiled once, without ISA flags: the layout is the same on every ISA, and the scales come from format/'s
// exact decoding (nf4_row_scales_i8), so they are the same bits everywhere.
#include "cpu/nf4_packed.h"

#include <cstring>
#include <vector>

#include "format/nf4.h"
#include "kernels/dispatch.h"

namespace qrt::cpu {

namespace {

int code_at(const block_nf4& x, int e) {
    return e % 2 == 0 ? x.qs[e / 2] >> 4 : x.qs[e / 2] & 0x0F;  // element 2i in the high nibble (nf4.h)
}

}  // namespace

void pack_nf4(int64_t k, const uint8_t* tensor, int64_t nrows, int64_t row, void* vgroup) {
    constexpr int R = kernels::kPackRows;
    const int64_t nb = k / QK_NF4;
    const block_nf4* blocks = reinterpret_cast<const block_nf4*>(tensor);
    std::vector<float> scales(size_t(R * nb));
    for (int r = 0; r < R; ++r) nf4_row_scales_i8(tensor, k, nrows, row + r, scales.data() + r * nb);
    uint8_t* out = static_cast<uint8_t*>(vgroup);
    for (int64_t l = 0; l < nb; ++l, out += kNf4PackBytes) {
        for (int r = 0; r < R; ++r) {
            const block_nf4& x = blocks[(row + r) * nb + l];
            std::memcpy(out + kNf4PackScalesAt + 4 * r, &scales[size_t(r * nb + l)], 4);
            for (int h = 0; h < 2; ++h)
                for (int c = 0; c < 4; ++c)
                    for (int i = 0; i < 4; ++i) {
                        const int e = 32 * h + 4 * c + i;
                        out[kNf4PackQsAt + 32 * (4 * h + c) + 4 * r + i] =
                            uint8_t(code_at(x, e) | code_at(x, e + 16) << 4);
                    }
        }
    }
}

}  // namespace qrt::cpu
