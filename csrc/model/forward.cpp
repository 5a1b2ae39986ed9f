// The forward pass, one readable page (after llama2.c's run.c). Per layer:
//
//   xb = rmsnorm(x) * attn_norm
//   q, k, v = xb Wq (+bq), xb Wk (+bk), xb Wv (+bv);  rope(q, k);  append k, v to the paged cache
//   att = softmax(q K^T / sqrt(head_dim)) V   (per head; GQA: query head h reads KV head h / group)
//   x += att Wo (+bo)
//   xb = rmsnorm(x) * ffn_norm
//   x += (silu(xb Wgate) * (xb Wup)) Wdown
//
// then logits = rmsnorm(x) * output_norm Woutput. Shapes below are per batch of n tokens, which may
// belong to different sequences: token t is seq[t]'s token slot[t] in the cache, and attends to that
// sequence's slots [0, slot[t]].
//
// With a device part (model/offload.h) the layers from its placement's first on, and the head when it
// holds it, run there: forward() hands it x once and gets back x or the logits.
#include "model/forward.h"

#include <algorithm>
#include <cmath>
#include <stdexcept>
#include <string>

#include "cpu/ops.h"
#include "model/matmul.h"
#include "model/offload.h"

namespace qrt::model {

namespace {

// Floats of attention scores per thread that tiles may use beyond one token's (512 KiB).
constexpr int64_t kScoresBudget = int64_t(1) << 17;

}  // namespace

ForwardBuffers::ForwardBuffers(const Model& model, int n_batch_, int n_ctx, int n_threads, int n_seq_max)
    : n_batch(n_batch_) {
    const HParams& hp = model.hp;
    const size_t nb = size_t(n_batch);
    row_stride = kMatmulRowTile * std::max({hp.n_embd, hp.n_embd_q(), hp.n_ff});
    x.resize(nb * size_t(hp.n_embd));
    xb.resize(nb * size_t(hp.n_embd));
    q.resize(nb * size_t(hp.n_embd_q()));
    k.resize(nb * size_t(hp.n_embd_kv()));
    v.resize(nb * size_t(hp.n_embd_kv()));
    att.resize(nb * size_t(hp.n_embd_q()));
    hb.resize(nb * size_t(hp.n_ff));
    hb2.resize(nb * size_t(hp.n_ff));
    // Room for a tile of kAttentionTile tokens' scores up to a budget, for one token over the whole context
    // at least: late in a long context tiles get fewer tokens (forward_layers).
    const int64_t heads = std::min(hp.n_head / hp.n_head_kv, int64_t(kAttentionMaxGroup));
    scores_stride = std::max(heads * n_ctx, std::min(kAttentionTile * heads * n_ctx, kScoresBudget));
    scores.resize(size_t(n_threads) * size_t(scores_stride));
    row.resize(size_t(n_threads) * size_t(row_stride));
    slot.resize(nb);
    tile.resize(nb + 1);
    seq_n.resize(size_t(n_seq_max));
    seq1.resize(nb);
    want1.resize(nb);
    const int64_t half = hp.head_dim / 2;
    inv_freq.resize(size_t(half));
    for (int64_t i = 0; i < half; ++i) {
        const double f = std::pow(double(hp.rope_freq_base), -2.0 * double(i) / double(hp.head_dim));
        inv_freq[size_t(i)] = float(model.w.rope_freqs.empty() ? f : f / model.w.rope_freqs[size_t(i)]);
    }
}

namespace {

// Layers [first, ...)'s K/V pools addressed through the cache's block tables, with KvCache's store/view.
struct LayerKv {
    const KvCache& cache;
    const KvPools* pools;
    int64_t first;
    void store(int layer, int seq, int t, const float* k, const float* v) const {
        cache.store(pools[layer - first], seq, t, k, v);
    }
    PagedKv view(int layer, int seq) const { return cache.view(pools[layer - first], seq); }
};

}  // namespace

void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, const int32_t* tokens,
             const int32_t* seq, const int32_t* pos, int n, const uint8_t* want, float* logits,
             DevicePart* device) {
    const HParams& hp = model.hp;
    const Weights& w = model.w;
    const int64_t n_embd = hp.n_embd;

    // Each token's cache slot: its sequence's length plus the sequence's earlier tokens in the batch.
    int32_t* slot = buf.slot.data();    // [n]
    int32_t* seq_n = buf.seq_n.data();  // [n_seq_max]; only the batch's sequences are touched
    for (int t = 0; t < n; ++t) {
        (void)kv.seq_len(seq[t]);  // std::out_of_range for a bad sequence id
        seq_n[seq[t]] = 0;
    }
    for (int t = 0; t < n; ++t) {
        slot[t] = kv.seq_len(seq[t]) + seq_n[seq[t]]++;
        if (slot[t] >= kv.shape().n_ctx)
            throw std::length_error("sequence " + std::to_string(seq[t]) + " would hold " +
                                    std::to_string(slot[t] + 1) + " tokens, context is " +
                                    std::to_string(kv.shape().n_ctx));
    }
    for (int t = 0; t < n; ++t)  // at its first token in the batch: blocks for all of its tokens
        if (slot[t] == kv.seq_len(seq[t])) kv.reserve(seq[t], seq_n[seq[t]]);

    float* x = buf.x.data();                                                             // [n][n_embd]
    for (int t = 0; t < n; ++t) w.token_embd.dequantize_row(tokens[t], x + t * n_embd);  // x: [n][n_embd]

    const int64_t first_device = device ? device->placement().first : hp.n_layer;
    forward_layers(hp, w.layers.data(), 0, first_device, kv, kv.pools(), pool, buf, seq, pos, n);
    const bool head_on_device = device && device->placement().head;
    if (device) device->forward(kv, pool, DeviceBatch{seq, slot, pos, n}, x, want, logits);

    for (int t = 0; t < n; ++t)  // at its last token in the batch: the sequence grows by its tokens
        if (slot[t] == kv.seq_len(seq[t]) + seq_n[seq[t]] - 1) kv.commit(seq[t], seq_n[seq[t]]);

    if (logits && !head_on_device) forward_head(hp, w.output_norm, w.output, pool, buf, x, n, want, logits);
}

void forward_layers(const HParams& hp, const LayerWeights* layers, int64_t first, int64_t last,
                    const KvCache& kv_cache, const KvPools* pools, ThreadPool& pool, ForwardBuffers& buf,
                    const int32_t* seq, const int32_t* pos, int n) {
    const int64_t n_embd = hp.n_embd, n_q = hp.n_embd_q(), n_kv = hp.n_embd_kv(), n_ff = hp.n_ff;
    const int n_head = int(hp.n_head), n_head_kv = int(hp.n_head_kv), hd = int(hp.head_dim);
    const int group = n_head / n_head_kv;  // query heads per KV head
    const bool neox = hp.rope_type == RopeType::Neox;
    const float scale = 1.0f / std::sqrt(float(hd));
    const LayerKv kv{kv_cache, pools, first};
    const int32_t* slot = buf.slot.data();  // [n]
    float* x = buf.x.data();                // [n][n_embd]
    float* xb = buf.xb.data();              // [n][n_embd]
    float* q = buf.q.data();                // [n][n_head*hd]
    float* k = buf.k.data();                // [n][n_head_kv*hd]
    float* v = buf.v.data();                // [n][n_head_kv*hd]
    float* att = buf.att.data();            // [n][n_head*hd]
    float* hb = buf.hb.data();              // [n][n_ff]
    float* hb2 = buf.hb2.data();            // [n][n_ff]
    auto mm = [&](const Matrix& m, const float* in, int n_tok, float* out) {
        matmul(pool, m, in, n_tok, out, buf.row.data(), buf.row_stride);
    };
    // Attention tiles: runs of up to kAttentionTile consecutive tokens of one sequence in consecutive slots
    // (a prompt), whose scores fit a thread's scratch; each tile reads its K and V rows once
    // (cpu/ops.h attention_tile). A token's output does not depend on its tile.
    int32_t* tile = buf.tile.data();  // [n_tiles + 1]
    int n_tiles = 0;
    const int64_t heads = std::min(group, kAttentionMaxGroup);
    for (int t = 0; t < n;) {
        tile[n_tiles++] = t;
        int e = t + 1;
        while (e < n && e - t < kAttentionTile && seq[e] == seq[t] && slot[e] == slot[t] + (e - t) &&
               (e - t + 1) * heads * (slot[e] + 1) <= buf.scores_stride)
            ++e;
        t = e;
    }
    tile[n_tiles] = n;
    auto per_token = [&](auto&& fn) {  // fn(t) for t in [0, n), over the pool
        pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
            for (int64_t t = b; t < e; ++t) fn(t);
        });
    };

    for (int64_t l = first; l < last; ++l) {
        const LayerWeights& L = layers[size_t(l)];

        // attention
        per_token([&](int64_t t) {
            rmsnorm(xb + t * n_embd, x + t * n_embd, L.attn_norm.data(), n_embd, hp.rms_eps);
        });
        {  // one quantization of xb, one parallel job for the three
            const Matrix* ws[3] = {&L.attn_q, &L.attn_k, &L.attn_v};
            float* ys[3] = {q, k, v};  // q: [n][n_head*hd], k, v: [n][n_head_kv*hd]
            matmul(pool, ws, xb, n, ys, buf.row.data(), buf.row_stride);
        }
        per_token([&](int64_t t) {
            if (!L.attn_q_bias.empty()) add(q + t * n_q, L.attn_q_bias.data(), n_q);
            if (!L.attn_k_bias.empty()) add(k + t * n_kv, L.attn_k_bias.data(), n_kv);
            if (!L.attn_v_bias.empty()) add(v + t * n_kv, L.attn_v_bias.data(), n_kv);
            rope(q + t * n_q, n_head, hd, pos[t], buf.inv_freq.data(), hp.rope_freq_scale, neox);
            rope(k + t * n_kv, n_head_kv, hd, pos[t], buf.inv_freq.data(), hp.rope_freq_scale, neox);
            kv.store(int(l), seq[t], slot[t], k + t * n_kv, v + t * n_kv);
        });
        const int64_t n_jobs = int64_t(n_tiles) * n_head_kv;
        pool.parallel_for(n_jobs, [&](int64_t b, int64_t e, int thread) {
            float* scores = buf.scores.data() + thread * buf.scores_stride;
            for (int64_t j = b; j < e; ++j) {
                // Tile i, KV head h: query heads [h * group, (h + 1) * group). The last tiles, which read the
                // most keys, go first so that the threads finish together.
                const int64_t i = (n_jobs - 1 - j) / n_head_kv, h = (n_jobs - 1 - j) % n_head_kv;
                const int t = tile[i], n_tok = tile[i + 1] - t;
                const int64_t o = t * n_q + h * group * hd;
                attention_tile(att + o, q + o, n_q, n_tok, group, kv.view(int(l), seq[t]), int(h),
                               slot[t] + 1, scale, scores);  // att: [n][n_head*hd]
            }
        });
        mm(L.attn_output, att, n, xb);  // xb: [n][n_embd]
        per_token([&](int64_t t) {
            if (!L.attn_output_bias.empty()) add(xb + t * n_embd, L.attn_output_bias.data(), n_embd);
            add(x + t * n_embd, xb + t * n_embd, n_embd);
        });

        // feed-forward
        per_token([&](int64_t t) {
            rmsnorm(xb + t * n_embd, x + t * n_embd, L.ffn_norm.data(), n_embd, hp.rms_eps);
        });
        {
            const Matrix* ws[2] = {&L.ffn_gate, &L.ffn_up};
            float* ys[2] = {hb, hb2};  // hb, hb2: [n][n_ff]
            matmul(pool, ws, xb, n, ys, buf.row.data(), buf.row_stride);
        }
        per_token([&](int64_t t) { silu_mul(hb + t * n_ff, hb2 + t * n_ff, n_ff); });
        mm(L.ffn_down, hb, n, xb);  // xb: [n][n_embd]
        per_token([&](int64_t t) { add(x + t * n_embd, xb + t * n_embd, n_embd); });
    }
}

void forward_head(const HParams& hp, const Vector& output_norm, const Matrix& output, ThreadPool& pool,
                  ForwardBuffers& buf, const float* x, int n, const uint8_t* want, float* logits) {
    const int64_t n_embd = hp.n_embd;
    float* xb = buf.xb.data();  // [n_out][n_embd]
    // logits: [n_out][n_vocab], the wanted tokens in order
    int n_out = 0;
    for (int t = 0; t < n; ++t)
        if (!want || want[t])
            rmsnorm(xb + n_out++ * n_embd, x + t * n_embd, output_norm.data(), n_embd, hp.rms_eps);
    if (n_out > 0) matmul(pool, output, xb, n_out, logits, buf.row.data(), buf.row_stride);
}

void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, int seq,
             const int32_t* tokens, const int32_t* pos, int n, float* logits, bool all_logits,
             DevicePart* device) {
    std::fill_n(buf.seq1.begin(), n, seq);
    std::fill_n(buf.want1.begin(), n, uint8_t(all_logits));
    buf.want1[size_t(n - 1)] = 1;
    forward(model, kv, pool, buf, tokens, buf.seq1.data(), pos, n, buf.want1.data(), logits, device);
}

}  // namespace qrt::model
