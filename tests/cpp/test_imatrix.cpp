// The importance-matrix collector (model/imatrix.h) and the matmul observer it hangs on (model/matmul.h):
// which products are collected, the sums and counts, the observer's scope. Run under ASan + UBSan; prints
// "N passed, M failed" and exits non-zero on any failure.
#include <cstdint>
#include <random>
#include <string>
#include <vector>

#include "check.h"
#include "cpu/threadpool.h"
#include "format/types.h"
#include "model/imatrix.h"
#include "model/matmul.h"

namespace {

using qrt::testing::check;
using namespace qrt::model;

Matrix f32_matrix(const std::string& name, const std::vector<float>& w, int64_t rows, int64_t cols) {
    Matrix m;
    m.name = name;
    m.data = reinterpret_cast<const uint8_t*>(w.data());
    m.type = &qrt::traits(qrt::TypeId::F32);
    m.rows = rows;
    m.cols = cols;
    m.row_bytes = uint64_t(cols) * 4;
    m.nbytes = m.row_bytes * uint64_t(rows);
    return m;
}

void test_collects_block_matrices() {
    const int64_t cols = 24;
    std::vector<float> w(size_t(cols), 0.0f);
    const Matrix q = f32_matrix("blk.0.attn_q.weight", w, 1, cols);
    const Matrix out = f32_matrix("output.weight", w, 1, cols);
    std::mt19937 rng(1);
    std::normal_distribution<float> n01;
    std::vector<float> x(size_t(40 * cols));
    for (float& v : x) v = n01(rng);

    ImatrixCollector c;
    c.observe(q, x.data(), 20);
    c.observe(q, x.data() + 20 * cols, 20);
    c.observe(q, x.data(), 15);  // under 16 tokens: ignored, as llama-imatrix
    c.observe(out, x.data(), 40);
    const auto stats = c.stats();
    check(stats.size() == 1 && stats.count("blk.0.attn_q.weight"), "only the block matrix is collected");
    const ImatrixStats& e = stats.at("blk.0.attn_q.weight");
    check(e.count == 40, "counts the tokens of the collected products");
    bool same = true;
    for (int64_t j = 0; j < cols; ++j) {
        float s = 0;
        for (int t = 0; t < 40; ++t) s += x[size_t(t * cols + j)] * x[size_t(t * cols + j)];
        same = same && s == e.sums[size_t(j)];
    }
    check(same, "sums of x² per column, token by token");

    ImatrixCollector with_output(true);
    with_output.observe(out, x.data(), 40);
    check(with_output.stats().count("output.weight") == 1, "process_output collects output.weight");
}

void test_observer_scope() {
    const int64_t cols = 32, rows = 3;
    std::vector<float> w(size_t(rows * cols), 0.5f);
    const Matrix m = f32_matrix("blk.1.ffn_up.weight", w, rows, cols);
    std::vector<float> x(size_t(16 * cols), 1.0f), y(size_t(16 * rows));
    qrt::ThreadPool pool(2);
    std::vector<float> scratch(size_t(2 * kMatmulRowTile * cols));
    ImatrixCollector c;
    {
        ScopedMatmulObserver observe(&c);
        matmul(pool, m, x.data(), 16, y.data(), scratch.data(), kMatmulRowTile * cols);
        const Matrix* ws[2] = {&m, &m};
        float* ys[2] = {y.data(), y.data()};
        matmul(pool, std::span<const Matrix* const>(ws, 2), x.data(), 16, std::span<float* const>(ys, 2),
               scratch.data(), kMatmulRowTile * cols);
    }
    matmul(pool, m, x.data(), 16, y.data(), scratch.data(), kMatmulRowTile * cols);  // after the scope
    const auto stats = c.stats();
    check(stats.size() == 1 && stats.at("blk.1.ffn_up.weight").count == 48,
          "every product inside the scope observed once per matrix, none after it");
    check(y[0] == 16.0f, "the product itself is unchanged");
}

}  // namespace

int main() {
    test_collects_block_matrices();
    test_observer_scope();
    return qrt::testing::report();
}
