#include "model/matmul.h"

#include <algorithm>
#include <stdexcept>
#include <string>
#include <string_view>

#include "format/legacy.h"
#include "kernels/dispatch.h"

namespace qrt::model {

namespace {

constexpr int kMaxMatrices = 8;  // per call of the multi-matrix form
static_assert(kMatmulRowGroup % kernels::kPackRows == 0, "work items hold whole packed groups");

size_t round_up(size_t n, size_t to) {
    return (n + to - 1) / to * to;
}

// How one call quantizes and multiplies; the same for every matrix of a multi-matrix call.
struct Plan {
    const TypeTraits* act = nullptr;  // the activations' type (the weights' vec_dot_type)
    size_t act_row = 0;               // bytes of one quantized token (one pass)
    bool as_is = false;               // F32 activations: x itself, no copy
    int passes = 1;                   // 2: x ~ q1 + q2 (Activations::Int8x2)
    bool sums = false;                // per-block sums of the Q8_0 activations, for packed offset types
    int64_t n_sums = 0;               // blocks of 32 per token and pass
    QuantizeRowFn quantize = nullptr;
    DequantizeRowFn dequantize = nullptr;  // of the activation type, for the residual
};

Plan make_plan(const Matrix& w, Activations acts) {
    Plan p;
    p.act = &traits(w.type->vec_dot_type);
    p.act_row = size_t(w.cols / p.act->block_size) * p.act->type_size;
    p.as_is = p.act->id == TypeId::F32;
    p.passes = acts == Activations::Int8x2 && !p.as_is ? 2 : 1;
    p.quantize = kernels::quantize_row(p.act->id);
    p.dequantize = kernels::dequantize_row(p.act->id);
    p.n_sums = (w.cols + 31) / 32;
    return p;
}

// Where things sit in the scratch area for a pass of `chunk` tokens.
struct Layout {
    int chunk = 1;
    uint8_t* act = nullptr;   // [chunk][passes][act_row]
    int32_t* sums = nullptr;  // [chunk][passes][n_sums]       (Plan::sums)
    float* resid = nullptr;   // [n_threads][cols]             (passes == 2)
    float* tmp = nullptr;     // [n_threads][2*chunk][kMatmulRowGroup] (passes == 2)
};

// Bytes of scratch a pass needs besides its tokens, and per token.
void scratch_bytes(const Plan& p, int64_t cols, int n_threads, size_t* fixed, size_t* per_token) {
    *fixed = 0;
    *per_token = size_t(p.passes) * p.act_row + 64;
    if (p.sums) *per_token += size_t(p.passes) * size_t(p.n_sums) * sizeof(int32_t) + 64;
    if (p.passes == 2) {
        *fixed = size_t(n_threads) * size_t(cols) * sizeof(float) + 64;
        *per_token += size_t(n_threads) * kMatmulRowGroup * 2 * sizeof(float) + 64;
    }
}

Layout make_layout(const Plan& p, int64_t cols, int n_tokens, int n_threads, float* scratch, int64_t stride) {
    const size_t total = size_t(n_threads) * size_t(stride) * sizeof(float);
    Layout l;
    uint8_t* base = reinterpret_cast<uint8_t*>(scratch);
    if (p.as_is) {
        l.chunk = n_tokens;
        return l;
    }
    size_t fixed, per_token;
    scratch_bytes(p, cols, n_threads, &fixed, &per_token);
    if (total < fixed + per_token)
        throw std::invalid_argument("matmul: scratch of " + std::to_string(total) + " bytes, " +
                                    std::to_string(fixed + per_token) + " needed");
    l.chunk = int(std::min<size_t>((total - fixed) / per_token, size_t(n_tokens)));
    l.act = base;
    base += round_up(size_t(l.chunk) * size_t(p.passes) * p.act_row, 64);
    if (p.sums) {
        l.sums = reinterpret_cast<int32_t*>(base);
        base += round_up(size_t(l.chunk) * size_t(p.passes) * size_t(p.n_sums) * sizeof(int32_t), 64);
    }
    if (p.passes == 2) {
        l.resid = reinterpret_cast<float*>(base);
        l.tmp = l.resid + size_t(n_threads) * size_t(cols);
    }
    return l;
}

// Token t of x into the activation rows of pass 0 (and the residual into pass 1), and their block sums.
void quantize_token(const Plan& p, const float* x, int64_t cols, uint8_t* out, float* resid, int32_t* sums) {
    p.quantize(x, out, cols);
    if (p.passes == 2) {
        p.dequantize(out, resid, cols);
        for (int64_t i = 0; i < cols; ++i) resid[i] = x[i] - resid[i];
        p.quantize(resid, out + p.act_row, cols);
    }
    if (p.sums)
        for (int pass = 0; pass < p.passes; ++pass)
            q8_0_block_sums(out + size_t(pass) * p.act_row, cols, sums + pass * p.n_sums);
}

// Rows [r0, r1) of w times the nt tokens at `a` (passes rows per token): y[t * w.rows + r].
void multiply_rows(const Plan& p, const Matrix& w, int64_t r0, int64_t r1, const uint8_t* a,
                   const int32_t* sums, int nt, float* y, float* tmp) {
    const int64_t cols = w.cols, rows = w.rows;
    const size_t rb = w.row_bytes, ab = p.act_row;
    const int np = p.passes;
    if (w.packed && r0 < w.packed_rows) {  // whole groups of packed rows, then the rest below
        // one pass: straight into y; two: tmp[j][i] for the 2*nt activation rows, added at the end
        float* dst = np == 1 ? y + r0 : tmp;
        const int64_t ldc = np == 1 ? rows : kMatmulRowGroup;
        const int64_t end = std::min(r1, w.packed_rows);
        for (int64_t r = r0; r < end; r += kernels::kPackRows)
            w.packed_kernels->packed_gemm(cols,
                                          w.packed + uint64_t(r / kernels::kPackRows) * w.packed_group_bytes,
                                          a, ab, sums, p.n_sums, dst + (r - r0), ldc, int64_t(nt) * np);
        if (end < r1) multiply_rows(p, w, end, r1, a, sums, nt, y, tmp + (end - r0));
        if (np == 2)
            for (int t = 0; t < nt; ++t)
                for (int64_t i = 0; i < end - r0; ++i)
                    y[t * rows + r0 + i] =
                        tmp[(2 * t) * kMatmulRowGroup + i] + tmp[(2 * t + 1) * kMatmulRowGroup + i];
        return;
    }
    const uint8_t* wr = w.data + size_t(r0) * rb;
    if (const kernels::GemmFn gemm = kernels::gemm(w.type->id)) {
        if (np == 1) {
            gemm(cols, wr, rb, a, ab, y + r0, rows, r1 - r0, nt);
        } else {  // tmp[j][i] for the 2*nt activation rows, then the two passes of each token added
            gemm(cols, wr, rb, a, ab, tmp, kMatmulRowGroup, r1 - r0, 2 * nt);
            for (int t = 0; t < nt; ++t)
                for (int64_t i = 0; i < r1 - r0; ++i)
                    y[t * rows + r0 + i] =
                        tmp[(2 * t) * kMatmulRowGroup + i] + tmp[(2 * t + 1) * kMatmulRowGroup + i];
        }
    } else if (const VecDotFn dot = kernels::vec_dot(w.type->id)) {
        for (int t = 0; t < nt; ++t) {
            for (int64_t r = r0; r < r1; ++r) {
                const uint8_t* row = w.data + size_t(r) * rb;
                float v = dot(cols, row, a + size_t(t * np) * ab);
                if (np == 2) v = v + dot(cols, row, a + size_t(t * np + 1) * ab);
                y[t * rows + r] = v;
            }
        }
    } else {  // rows that are not self-contained (NF4): the tensor-level reference
        for (int t = 0; t < nt; ++t) {
            float* yt = y + t * rows + r0;
            w.type->vec_dot_rows(w.data, cols, rows, r0, r1, a + size_t(t * np) * ab, yt);
            if (np == 2) {
                w.type->vec_dot_rows(w.data, cols, rows, r0, r1, a + size_t(t * np + 1) * ab, tmp);
                for (int64_t i = 0; i < r1 - r0; ++i) yt[i] = yt[i] + tmp[i];
            }
        }
    }
}

// All matrices share cols and the plan.
void run(ThreadPool& pool, const Matrix* const* ws, int n_w, Plan p, const float* x, int n_tokens,
         float* const* ys, float* scratch, int64_t scratch_stride) {
    const int64_t cols = ws[0]->cols;
    for (int m = 0; m < n_w; ++m)
        if (ws[m]->packed && ws[m]->packed_kernels->pack_needs_sums) {
            if (p.act->id != TypeId::Q8_0)
                throw std::logic_error("matmul: packed " + ws[m]->name + " needs Q8_0 activation sums");
            p.sums = true;
        }
    const Layout l = make_layout(p, cols, n_tokens, pool.n_threads(), scratch, scratch_stride);
    int64_t group_end[kMaxMatrices];  // cumulative row groups
    int64_t n_groups = 0;
    for (int m = 0; m < n_w; ++m)
        group_end[m] = n_groups += (ws[m]->rows + kMatmulRowGroup - 1) / kMatmulRowGroup;

    for (int t0 = 0; t0 < n_tokens; t0 += l.chunk) {
        const int nt = std::min(l.chunk, n_tokens - t0);
        const float* xt = x + int64_t(t0) * cols;
        const size_t token_bytes = size_t(p.passes) * p.act_row;
        // a: [nt][passes][act_row], the tokens in the activation type
        const uint8_t* a = p.as_is ? reinterpret_cast<const uint8_t*>(xt) : l.act;
        if (!p.as_is) {
            if (nt == 1) {
                quantize_token(p, xt, cols, l.act, l.resid, l.sums);
            } else {
                pool.parallel_for(nt, [&](int64_t b, int64_t e, int thread) {
                    float* resid = l.resid ? l.resid + int64_t(thread) * cols : nullptr;
                    for (int64_t t = b; t < e; ++t)
                        quantize_token(p, xt + t * cols, cols, l.act + size_t(t) * token_bytes, resid,
                                       l.sums ? l.sums + t * p.passes * p.n_sums : nullptr);
                });
            }
        }
        pool.parallel_for(n_groups, [&](int64_t gb, int64_t ge, int thread) {
            float* tmp = l.tmp ? l.tmp + int64_t(thread) * kMatmulRowGroup * 2 * l.chunk : nullptr;
            int m = 0;
            for (int64_t g = gb; g < ge; ++g) {
                while (g >= group_end[m]) ++m;
                const Matrix& w = *ws[m];
                const int64_t first = (m ? group_end[m - 1] : 0);
                const int64_t r0 = (g - first) * kMatmulRowGroup, r1 = std::min(w.rows, r0 + kMatmulRowGroup);
                multiply_rows(p, w, r0, r1, a, l.sums, nt, ys[m] + int64_t(t0) * w.rows, tmp);
            }
        });
    }
}

}  // namespace

int64_t matmul_scratch_min_floats(int64_t cols, int n_threads) {
    // the most any plan needs: two passes of F16 activations (2 bytes per input)
    Plan p;
    p.passes = 2;
    p.act_row = size_t(cols) * 2;
    p.sums = true;
    p.n_sums = (cols + 31) / 32;
    size_t fixed, per_token;
    scratch_bytes(p, cols, n_threads, &fixed, &per_token);
    return int64_t((fixed + per_token + sizeof(float) - 1) / sizeof(float));
}

Activations default_activations(const Matrix& w) {
    // GGUF names: blk.N.attn_{q,k,v}.weight (phi3: row views of blk.N.attn_qkv.weight); the output layer is
    // output.weight, or token_embd.weight when tied (the embedding lookup itself dequantizes rows and never
    // comes here).
    const std::string_view name = w.name;
    for (const char* role : {".attn_q.", ".attn_k.", ".attn_v.", ".attn_qkv."})
        if (name.find(role) != std::string_view::npos) return Activations::Int8x2;
    if (name == "output.weight" || name == "token_embd.weight") return Activations::Int8x2;
    return Activations::Int8;
}

namespace {
thread_local MatmulObserver* t_observer = nullptr;
}  // namespace

ScopedMatmulObserver::ScopedMatmulObserver(MatmulObserver* observer) : previous_(t_observer) {
    t_observer = observer;
}

ScopedMatmulObserver::~ScopedMatmulObserver() {
    t_observer = previous_;
}

void matmul(ThreadPool& pool, const Matrix& w, const float* x, int n_tokens, float* y, float* scratch,
            int64_t scratch_stride, Activations acts) {
    if (t_observer) t_observer->observe(w, x, n_tokens);
    const Matrix* ws[1] = {&w};
    float* ys[1] = {y};
    run(pool, ws, 1, make_plan(w, acts), x, n_tokens, ys, scratch, scratch_stride);
}

void matmul(ThreadPool& pool, const Matrix& w, const float* x, int n_tokens, float* y, float* scratch,
            int64_t scratch_stride) {
    matmul(pool, w, x, n_tokens, y, scratch, scratch_stride, default_activations(w));
}

void matmul(ThreadPool& pool, std::span<const Matrix* const> ws, const float* x, int n_tokens,
            std::span<float* const> ys, float* scratch, int64_t scratch_stride) {
    const size_t n = ws.size();
    bool shared = n >= 1 && n <= size_t(kMaxMatrices) && ys.size() == n;
    for (size_t i = 1; shared && i < n; ++i)
        shared = ws[i]->cols == ws[0]->cols && ws[i]->type->vec_dot_type == ws[0]->type->vec_dot_type &&
                 default_activations(*ws[i]) == default_activations(*ws[0]);
    if (!shared) {
        for (size_t i = 0; i < n && i < ys.size(); ++i)
            matmul(pool, *ws[i], x, n_tokens, ys[i], scratch, scratch_stride);
        return;
    }
    if (t_observer)
        for (size_t i = 0; i < n; ++i) t_observer->observe(*ws[i], x, n_tokens);
    run(pool, ws.data(), int(n), make_plan(*ws[0], default_activations(*ws[0])), x, n_tokens, ys.data(),
        scratch, scratch_stride);
}

}  // namespace qrt::model
