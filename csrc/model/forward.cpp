// The forward pass, one readable page (after llama2.c's run.c). x = token_embd[token] * embedding_scale, then
// per layer:
//
//   xb = rmsnorm(x) * attn_norm
//   q, k, v = xb Wq (+bq), xb Wk (+bk), xb Wv (+bv)
//   q, k = rmsnorm(each head) * attn_{q,k}_norm         (qwen3, gemma3)
//   rope(q, k) (not on smollm3's every 4th layer);  append k, v to the paged cache
//   att = softmax(scale q K^T) V   (per head; GQA: query head h reads KV head h / group; sliding-window
//                                   layers see the last n_swa keys only)
//   o = att Wo (+bo);  o = rmsnorm(o) * post_attention_norm (gemma3);  x += o * residual_scale
//   xb = rmsnorm(x) * ffn_norm
//   f = (act(xb Wgate) * (xb Wup)) Wdown   (act: silu, gemma3: gelu-tanh)
//   f = rmsnorm(f) * post_ffw_norm (gemma3);  x += f * residual_scale
//
// then logits = rmsnorm(x) * output_norm Woutput / logit_scale, soft-capped for gemma3. The scales are 1
// and the optional steps absent unless hparams.h says otherwise for the architecture. Shapes below are per
// batch of n tokens, which may belong to different sequences: token t is seq[t]'s token slot[t] in the
// cache, and attends to that sequence's slots [0, slot[t]] (sliding-window layers: the last n_swa of them).
// A mixture-of-experts FFN would be one more function beside ffn() below, chosen per layer.
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
    // RoPE frequencies (ggml_rope_ext: theta_i = pos * base^(-2i/n_rot) / factor_i). Llama 3.1's rope_freqs,
    // or phi3's LongRoPE factors: the long ones when the context exceeds the original one
    // (llama_model::get_rope_factors).
    const Weights& w = model.w;
    const Vector& factors = !w.rope_freqs.empty()                                   ? w.rope_freqs
                            : n_ctx > hp.n_ctx_orig && !w.rope_factors_long.empty() ? w.rope_factors_long
                                                                                    : w.rope_factors_short;
    const int64_t half = hp.n_rot / 2;
    inv_freq.resize(size_t(half));
    inv_freq_swa.resize(size_t(half));
    for (int64_t i = 0; i < half; ++i) {
        const double e = -2.0 * double(i) / double(hp.n_rot);
        const double f = std::pow(double(hp.rope_freq_base), e);
        inv_freq[size_t(i)] = float(factors.empty() ? f : f / factors[size_t(i)]);
        inv_freq_swa[size_t(i)] = float(std::pow(double(hp.rope_freq_base_swa), e));
    }
    kv_layer.resize(size_t(hp.n_layer));
    int32_t n_global = 0, n_swa = 0;
    for (int64_t l = 0; l < hp.n_layer; ++l) kv_layer[size_t(l)] = hp.is_swa(l) ? n_swa++ : n_global++;
}

namespace {

// The block of the Walsh-Hadamard rotation a cache of `type` applies to keys (values: is_v), or 0 for none:
// only quantized types, and head_dim a multiple of 64; keys take the largest power of two that divides
// head_dim, values 64 (llama.cpp's choice: smaller blocks measured better for V).
int kv_rotation(TypeId type, int head_dim, bool is_v) {
    if (type == TypeId::F16 || head_dim % 64 != 0) return 0;
    int n = 64;
    while (!is_v && head_dim % (2 * n) == 0) n *= 2;
    return n;
}

// Layers [first, ...)'s K/V pools addressed through the cache's block tables, with KvCache's store/view;
// with a window cache, each layer in its own cache (buf.kv_layer: the index among that cache's layers).
struct LayerKv {
    const KvCache& cache;
    const KvPools* pools;
    int64_t first;
    const KvCache* swa;
    const HParams& hp;
    const int32_t* kv_layer;
    void store(int layer, int seq, int t, const float* k, const float* v) const {
        if (!swa) return cache.store(pools[layer - first], seq, t, k, v);
        const KvCache& c = hp.is_swa(layer) ? *swa : cache;
        c.store(c.pools()[kv_layer[layer]], seq, t, k, v);
    }
    // The view for a tile whose first token is the sequence's token `slot`: a window layer's view starts at
    // the block holding the window's first key (earlier blocks may be given back); *skip is the keys it
    // leaves out.
    PagedKv view(int layer, int seq, int slot, int* skip) const {
        *skip = 0;
        if (!swa) return cache.view(pools[layer - first], seq);
        if (!hp.is_swa(layer)) return cache.view(cache.pools()[kv_layer[layer]], seq);
        PagedKv v = swa->view(swa->pools()[kv_layer[layer]], seq);
        const int first_key = std::max(0, slot + 1 - int(hp.n_swa));
        v.block_table += first_key / kKvBlockSize;
        *skip = first_key / kKvBlockSize * kKvBlockSize;
        return v;
    }
};

// The dense gated FFN, in place on buf.xb [n][n_embd]: xb = (act(xb Wgate) * (xb Wup)) Wdown. An
// expert-routed FFN (mixture of experts) would be a function beside this one, chosen per layer.
void ffn(const HParams& hp, const LayerWeights& L, ThreadPool& pool, ForwardBuffers& buf, int n) {
    const int64_t n_ff = hp.n_ff;
    float* xb = buf.xb.data();    // [n][n_embd]
    float* hb = buf.hb.data();    // [n][n_ff]
    float* hb2 = buf.hb2.data();  // [n][n_ff]
    {
        const Matrix* ws[2] = {&L.ffn_gate, &L.ffn_up};
        float* ys[2] = {hb, hb2};
        matmul(pool, ws, xb, n, ys, buf.row.data(), buf.row_stride);
    }
    const bool gelu = hp.ffn_act == FfnActivation::GeluTanh;
    pool.parallel_for(n, [&](int64_t b, int64_t e, int) {
        for (int64_t t = b; t < e; ++t) (gelu ? gelu_mul : silu_mul)(hb + t * n_ff, hb2 + t * n_ff, n_ff);
    });
    matmul(pool, L.ffn_down, hb, n, xb, buf.row.data(), buf.row_stride);
}

}  // namespace

void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, const int32_t* tokens,
             const int32_t* seq, const int32_t* pos, int n, const uint8_t* want, float* logits,
             DevicePart* device, KvCache* kv_swa) {
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
        if (slot[t] == kv.seq_len(seq[t])) {
            if (kv_swa) {  // the window cache gives back what no window from this token on reaches
                kv_swa->release_before(seq[t], slot[t] + 1 - int(hp.n_swa));
                kv_swa->reserve(seq[t], seq_n[seq[t]]);
            }
            kv.reserve(seq[t], seq_n[seq[t]]);
        }

    float* x = buf.x.data();  // [n][n_embd]
    for (int t = 0; t < n; ++t) {
        w.token_embd.dequantize_row(tokens[t], x + t * n_embd);
        if (hp.embedding_scale != 1.0f)
            for (int64_t i = 0; i < n_embd; ++i) x[t * n_embd + i] *= hp.embedding_scale;
    }

    const int64_t first_device = device ? device->placement().first : hp.n_layer;
    forward_layers(hp, w.layers.data(), 0, first_device, kv, kv.pools(), pool, buf, seq, pos, n, kv_swa);
    const bool head_on_device = device && device->placement().head;
    if (device) device->forward(kv, pool, DeviceBatch{seq, slot, pos, n}, x, want, logits);

    for (int t = 0; t < n; ++t)  // at its last token in the batch: the sequence grows by its tokens
        if (slot[t] == kv.seq_len(seq[t]) + seq_n[seq[t]] - 1) {
            if (kv_swa) kv_swa->commit(seq[t], seq_n[seq[t]]);
            kv.commit(seq[t], seq_n[seq[t]]);
        }

    if (logits && !head_on_device) forward_head(hp, w.output_norm, w.output, pool, buf, x, n, want, logits);
}

void forward_layers(const HParams& hp, const LayerWeights* layers, int64_t first, int64_t last,
                    const KvCache& kv_cache, const KvPools* pools, ThreadPool& pool, ForwardBuffers& buf,
                    const int32_t* seq, const int32_t* pos, int n, const KvCache* kv_swa) {
    const int64_t n_embd = hp.n_embd, n_q = hp.n_embd_q(), n_kv = hp.n_embd_kv();
    const int n_head = int(hp.n_head), n_head_kv = int(hp.n_head_kv), hd = int(hp.head_dim);
    const int group = n_head / n_head_kv;  // query heads per KV head
    const bool neox = hp.rope_type == RopeType::Neox;
    const LayerKv kv{kv_cache, pools, first, kv_swa, hp, buf.kv_layer.data()};
    // A quantized cache stores keys and values Walsh-Hadamard rotated (cpu/ops.h hadamard), as llama.cpp
    // does since its PR 21038 (llama-kv-cache.cpp attn_rot_k/v): keys and queries in blocks of the largest
    // power of two from 64 that divides head_dim, values in blocks of 64, rotated back after attention. q.k
    // is unchanged, and an outlier channel no longer sets the scale of its whole 32-value block.
    const int rot_k = kv_rotation(kv_cache.shape().k_type, hd, false);
    const int rot_v = kv_rotation(kv_cache.shape().v_type, hd, true);
    const int32_t* slot = buf.slot.data();  // [n]
    float* x = buf.x.data();                // [n][n_embd]
    float* xb = buf.xb.data();              // [n][n_embd]
    float* q = buf.q.data();                // [n][n_head*hd]
    float* k = buf.k.data();                // [n][n_head_kv*hd]
    float* v = buf.v.data();                // [n][n_head_kv*hd]
    float* att = buf.att.data();            // [n][n_head*hd]
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
    // x += out * residual_scale, after gemma3's post-norm of the sublayer's output
    auto residual_add = [&](const Vector& post_norm, float* out) {
        per_token([&](int64_t t) {
            float* o = out + t * n_embd;
            if (!post_norm.empty()) rmsnorm(o, o, post_norm.data(), n_embd, hp.rms_eps);
            if (hp.residual_scale != 1.0f)
                for (int64_t i = 0; i < n_embd; ++i) o[i] *= hp.residual_scale;
            add(x + t * n_embd, o, n_embd);
        });
    };

    for (int64_t l = first; l < last; ++l) {
        const LayerWeights& L = layers[size_t(l)];
        const bool swa = hp.is_swa(l), use_rope = hp.rope_on(l);
        const float* inv_freq = swa ? buf.inv_freq_swa.data() : buf.inv_freq.data();
        const float freq_scale = swa ? 1.0f : hp.rope_freq_scale;

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
            float *qt = q + t * n_q, *kt = k + t * n_kv;
            if (!L.attn_q_bias.empty()) add(qt, L.attn_q_bias.data(), n_q);
            if (!L.attn_k_bias.empty()) add(kt, L.attn_k_bias.data(), n_kv);
            if (!L.attn_v_bias.empty()) add(v + t * n_kv, L.attn_v_bias.data(), n_kv);
            if (!L.attn_q_norm.empty()) {
                for (int h = 0; h < n_head; ++h)
                    rmsnorm(qt + h * hd, qt + h * hd, L.attn_q_norm.data(), hd, hp.rms_eps);
                for (int h = 0; h < n_head_kv; ++h)
                    rmsnorm(kt + h * hd, kt + h * hd, L.attn_k_norm.data(), hd, hp.rms_eps);
            }
            if (use_rope) {
                rope(qt, n_head, hd, int(hp.n_rot), pos[t], inv_freq, freq_scale, hp.rope_attn_factor, neox);
                rope(kt, n_head_kv, hd, int(hp.n_rot), pos[t], inv_freq, freq_scale, hp.rope_attn_factor,
                     neox);
            }
            if (rot_k) {
                hadamard(qt, n_q / rot_k, rot_k);
                hadamard(kt, n_kv / rot_k, rot_k);
            }
            if (rot_v) hadamard(v + t * n_kv, n_kv / rot_v, rot_v);
            kv.store(int(l), seq[t], slot[t], kt, v + t * n_kv);
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
                int skip;
                const PagedKv view = kv.view(int(l), seq[t], slot[t], &skip);
                attention_tile(att + o, q + o, n_q, n_tok, group, view, int(h), slot[t] + 1 - skip,
                               hp.attention_scale, scores);  // att: [n][n_head*hd]
            }
        });
        if (rot_v) per_token([&](int64_t t) { hadamard(att + t * n_q, n_q / rot_v, rot_v); });
        mm(L.attn_output, att, n, xb);  // xb: [n][n_embd]
        if (!L.attn_output_bias.empty())
            per_token([&](int64_t t) { add(xb + t * n_embd, L.attn_output_bias.data(), n_embd); });
        residual_add(L.post_attention_norm, xb);

        // feed-forward
        per_token([&](int64_t t) {
            rmsnorm(xb + t * n_embd, x + t * n_embd, L.ffn_norm.data(), n_embd, hp.rms_eps);
        });
        ffn(hp, L, pool, buf, n);  // xb: [n][n_embd]
        residual_add(L.post_ffw_norm, xb);
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
    if (n_out == 0) return;
    matmul(pool, output, xb, n_out, logits, buf.row.data(), buf.row_stride);
    const int64_t n_logits = int64_t(n_out) * hp.n_vocab;
    if (hp.logit_scale != 1.0f)
        for (int64_t i = 0; i < n_logits; ++i) logits[i] /= hp.logit_scale;
    if (const float cap = hp.final_logit_softcap; cap > 0)
        for (int64_t i = 0; i < n_logits; ++i) logits[i] = cap * std::tanh(logits[i] / cap);
}

void forward(const Model& model, KvCache& kv, ThreadPool& pool, ForwardBuffers& buf, int seq,
             const int32_t* tokens, const int32_t* pos, int n, float* logits, bool all_logits,
             DevicePart* device, KvCache* kv_swa) {
    std::fill_n(buf.seq1.begin(), n, seq);
    std::fill_n(buf.want1.begin(), n, uint8_t(all_logits));
    buf.want1[size_t(n - 1)] = 1;
    forward(model, kv, pool, buf, tokens, buf.seq1.data(), pos, n, buf.want1.data(), logits, device, kv_swa);
}

}  // namespace qrt::model
