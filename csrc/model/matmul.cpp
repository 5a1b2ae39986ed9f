#include "model/matmul.h"

#include <algorithm>

#include "cpu/ops.h"

namespace qrt::model {

void matmul(ThreadPool& pool, const Matrix& w, const float* x, int n_tokens, float* y, float* scratch,
            int64_t scratch_stride) {
    const int64_t cols = w.cols, rows = w.rows;
    pool.parallel_for(rows, [&](int64_t begin, int64_t end, int thread) {
        float* tile = scratch + int64_t(thread) * scratch_stride;  // [kMatmulRowTile][cols]
        for (int64_t r0 = begin; r0 < end; r0 += kMatmulRowTile) {
            const int64_t nr = std::min<int64_t>(kMatmulRowTile, end - r0);
            for (int64_t i = 0; i < nr; ++i) w.dequantize_row(r0 + i, tile + i * cols);
            // each token's activations stay in L1 while the tile's rows pass over them
            for (int t = 0; t < n_tokens; ++t)
                for (int64_t i = 0; i < nr; ++i)
                    y[t * rows + r0 + i] = dot(tile + i * cols, x + t * cols, cols);
        }
    });
}

}  // namespace qrt::model
