// The llama.cpp oracle for logits and greedy text (tests only; built by tests/support/llama_logits.py against
// the cached llama.cpp build).
//
//   llama_logits MODEL N_CTX N_GEN OUT.f32 < ids
//
// Reads prompt token ids (whitespace-separated) from stdin, evaluates them in one batch with every
// position's logits wanted, writes them to OUT.f32 as float32 [n_prompt][n_vocab], then decodes N_GEN
// tokens greedily (argmax, the lowest id on ties) and prints their ids on one line.
#include <cstdio>
#include <cstdlib>
#include <vector>

#include "llama.h"

static void quiet(ggml_log_level, const char*, void*) {}

int main(int argc, char** argv) {
    if (argc != 5) {
        std::fprintf(stderr, "usage: %s MODEL N_CTX N_GEN OUT.f32 < ids\n", argv[0]);
        return 2;
    }
    const int n_ctx = std::atoi(argv[2]), n_gen = std::atoi(argv[3]);
    std::vector<llama_token> ids;
    for (int id; std::scanf("%d", &id) == 1;) ids.push_back(id);
    if (ids.empty()) return 2;

    llama_log_set(quiet, nullptr);
    llama_backend_init();
    llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    llama_model* model = llama_model_load_from_file(argv[1], mp);
    if (!model) return 3;
    llama_context_params cp = llama_context_default_params();
    cp.n_ctx = uint32_t(n_ctx);
    cp.n_batch = cp.n_ubatch = uint32_t(ids.size());
    cp.n_threads = cp.n_threads_batch = 2;
    llama_context* ctx = llama_init_from_model(model, cp);
    if (!ctx) return 4;
    const int n_vocab = llama_vocab_n_tokens(llama_model_get_vocab(model));

    llama_batch batch = llama_batch_init(int32_t(ids.size()), 0, 1);
    for (size_t i = 0; i < ids.size(); ++i) {
        batch.token[i] = ids[i];
        batch.pos[i] = llama_pos(i);
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = int32_t(ids.size());
    if (llama_decode(ctx, batch) != 0) return 5;
    FILE* out = std::fopen(argv[4], "wb");
    if (!out) return 6;
    for (size_t i = 0; i < ids.size(); ++i)
        std::fwrite(llama_get_logits_ith(ctx, int32_t(i)), sizeof(float), size_t(n_vocab), out);
    std::fclose(out);

    const float* logits = llama_get_logits_ith(ctx, int32_t(ids.size()) - 1);
    for (int g = 0; g < n_gen; ++g) {
        llama_token best = 0;
        for (llama_token t = 1; t < n_vocab; ++t)
            if (logits[t] > logits[best]) best = t;
        std::printf("%d%c", best, g + 1 < n_gen ? ' ' : '\n');
        llama_batch one = llama_batch_get_one(&best, 1);
        if (llama_decode(ctx, one) != 0) return 7;
        logits = llama_get_logits_ith(ctx, -1);
    }
    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    return 0;
}
