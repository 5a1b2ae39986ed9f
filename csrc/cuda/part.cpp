// The CUDA device part: the same tensor walk as every backend uploads the device layers' matrices in their
// file types and their 1-D tensors as f32 (for_each_device_tensor); K/V pools of the host cache's
// geometry; activation buffers for n_batch tokens. forward() uploads x, the batch's sequence ids, slots,
// positions and the block tables of its sequences, runs the layers with the kernels in cuda/kernels.h,
// and downloads x or the wanted logits: one crossing each way.
//
// Written and compiled without a GPU: it has not run yet (tests/test_cuda.py, marker gpu, checks it
// against the CPU when a device is present).
#include "cuda/part.h"

#include <cuda_runtime.h>

#include <cmath>
#include <stdexcept>
#include <string>
#include <type_traits>
#include <unordered_map>
#include <vector>

#include "cuda/device.h"
#include "cuda/kernels.h"
#include "errors.h"

namespace qrt::cuda {

namespace {

// One cudaMalloc'd allocation.
class DeviceBuffer {
  public:
    DeviceBuffer() = default;
    explicit DeviceBuffer(uint64_t bytes) {
        if (bytes == 0) return;
        if (cudaMalloc(&p_, size_t(bytes)) != cudaSuccess) {
            cudaGetLastError();
            p_ = nullptr;
            throw model::DeviceAllocationError("CUDA: cannot allocate " + std::to_string(bytes) + " bytes");
        }
    }
    DeviceBuffer(DeviceBuffer&& o) noexcept : p_(o.p_) { o.p_ = nullptr; }
    DeviceBuffer& operator=(DeviceBuffer&& o) noexcept {
        std::swap(p_, o.p_);
        return *this;
    }
    DeviceBuffer(const DeviceBuffer&) = delete;
    DeviceBuffer& operator=(const DeviceBuffer&) = delete;
    ~DeviceBuffer() {
        if (p_) cudaFree(p_);
    }
    template <typename T>
    T* as() const {
        return static_cast<T*>(p_);
    }

  private:
    void* p_ = nullptr;
};

void copy(void* dst, const void* src, uint64_t bytes, cudaMemcpyKind kind, const char* what) {
    if (bytes > 0 && cudaMemcpy(dst, src, size_t(bytes), kind) != cudaSuccess) check(what);
}

std::string mib(uint64_t bytes) {
    return std::to_string((bytes + (1u << 19)) >> 20) + " MiB";
}

class CudaPart final : public model::DevicePart {
  public:
    CudaPart(const model::Model& model, const model::Placement& p, const KvCache& kv, int n_batch,
             int n_threads, uint64_t free_bytes)
        : hp_(model.hp), n_batch_(n_batch) {
        placement_ = p;
        memory_ = model::device_memory(model, p, kv.shape(), n_batch, n_threads);  // as "auto" counts
        free_bytes_ = free_bytes;
        if (memory_.total() > free_bytes)
            throw model::DeviceAllocationError("cannot put " + std::to_string(p.n_device()) + " layers" +
                                               (p.head ? " and the output head" : "") +
                                               " on the GPU: they need " + std::to_string(memory_.total()) +
                                               " bytes (weights " + mib(memory_.weights) + ", KV cache " +
                                               mib(memory_.kv) + ", work buffers " + mib(memory_.work) +
                                               "), " + std::to_string(free_bytes) + " bytes are free");
        if (hp_.head_dim > kMaxHeadDim)
            throw UnsupportedError("the CUDA backend handles head_dim up to " + std::to_string(kMaxHeadDim) +
                                   ", the model has " + std::to_string(hp_.head_dim));
        upload(model);
        const KvCacheShape& s = kv.shape();
        const int64_t n_embd = hp_.n_embd, n_q = hp_.n_embd_q(), n_kv = hp_.n_embd_kv(), n_ff = hp_.n_ff;
        const uint64_t nb = uint64_t(n_batch), f = sizeof(float);
        x_ = DeviceBuffer(nb * n_embd * f);
        xb_ = DeviceBuffer(nb * n_embd * f);
        q_ = DeviceBuffer(nb * n_q * f);
        k_ = DeviceBuffer(nb * n_kv * f);
        v_ = DeviceBuffer(nb * n_kv * f);
        att_ = DeviceBuffer(nb * n_q * f);
        hb_ = DeviceBuffer(nb * n_ff * f);
        hb2_ = DeviceBuffer(nb * n_ff * f);
        if (p.head) logits_ = DeviceBuffer(nb * uint64_t(hp_.n_vocab) * f);
        ints_ = DeviceBuffer(4 * nb * sizeof(int32_t));  // seq, slot, pos, wanted rows
        blocks_per_seq_ = (s.n_ctx + kKvBlockSize - 1) / kKvBlockSize;
        tables_host_.assign(size_t(s.n_seq_max) * size_t(blocks_per_seq_), 0);
        tables_ = DeviceBuffer(tables_host_.size() * sizeof(int32_t));
        seq_seen_.assign(size_t(s.n_seq_max), 0);
        ints_host_.assign(4 * size_t(n_batch), 0);
        // RoPE table, as ForwardBuffers computes it
        std::vector<float> inv(size_t(hp_.head_dim / 2));
        for (size_t i = 0; i < inv.size(); ++i) {
            const double fr = std::pow(double(hp_.rope_freq_base), -2.0 * double(i) / double(hp_.head_dim));
            inv[i] = float(model.w.rope_freqs.empty() ? fr : fr / model.w.rope_freqs[i]);
        }
        inv_freq_ = DeviceBuffer(inv.size() * sizeof(float));
        copy(inv_freq_.as<float>(), inv.data(), inv.size() * sizeof(float), cudaMemcpyHostToDevice,
             "RoPE table");
        // f16 pools (make_device_part refuses a quantized cache for this backend)
        for (int64_t l = 0; l < p.n_device(); ++l) {
            kpools_.emplace_back(uint64_t(kv.k_pool_bytes()));
            vpools_.emplace_back(uint64_t(kv.v_pool_bytes()));
        }
    }

    std::string backend() const override { return "cuda"; }
    bool owns_its_weights() const override { return true; }  // device pointers only

    void forward(const KvCache& kv, ThreadPool&, const model::DeviceBatch& b, float* x, const uint8_t* want,
                 float* logits) override {
        const int n = b.n;
        const int64_t n_embd = hp_.n_embd, n_q = hp_.n_embd_q(), n_kv = hp_.n_embd_kv(), n_ff = hp_.n_ff;
        // batch metadata and block tables up, x up
        int32_t* seq_h = ints_host_.data();
        int32_t* slot_h = seq_h + n_batch_;
        int32_t* pos_h = slot_h + n_batch_;
        int32_t* rows_h = pos_h + n_batch_;
        int n_out = 0;
        for (int t = 0; t < n; ++t) {
            seq_h[t] = b.seq[t], slot_h[t] = b.slot[t], pos_h[t] = b.pos[t];
            if (!want || want[t]) rows_h[n_out++] = t;
        }
        copy(ints_.as<int32_t>(), ints_host_.data(), ints_host_.size() * sizeof(int32_t),
             cudaMemcpyHostToDevice, "batch upload");
        for (int t = 0; t < n; ++t) seq_seen_[size_t(b.seq[t])] = 0;
        for (int t = 0; t < n; ++t) {
            const int s = b.seq[t];
            if (seq_seen_[size_t(s)]) continue;
            seq_seen_[size_t(s)] = 1;
            const std::vector<int32_t>& table = kv.block_table(s);
            int32_t* row = tables_host_.data() + size_t(s) * size_t(blocks_per_seq_);
            std::copy(table.begin(), table.end(), row);
            copy(tables_.as<int32_t>() + size_t(s) * size_t(blocks_per_seq_), row,
                 table.size() * sizeof(int32_t), cudaMemcpyHostToDevice, "block tables");
        }
        copy(x_.as<float>(), x, uint64_t(n) * n_embd * sizeof(float), cudaMemcpyHostToDevice,
             "hidden state up");

        const int32_t* seq = ints_.as<int32_t>();
        const int32_t* slot = seq + n_batch_;
        const int32_t* pos = slot + n_batch_;
        const int32_t* rows = pos + n_batch_;
        float *xd = x_.as<float>(), *xb = xb_.as<float>(), *q = q_.as<float>(), *k = k_.as<float>(),
              *v = v_.as<float>(), *att = att_.as<float>(), *hb = hb_.as<float>(), *hb2 = hb2_.as<float>();
        const int n_head = int(hp_.n_head), hd = int(hp_.head_dim);
        const bool neox = hp_.rope_type == model::RopeType::Neox;
        const float scale = 1.0f / std::sqrt(float(hd));
        auto mm = [&](const model::Matrix& m, const float* in, int n_tok, float* out) {
            matvec(m.type->id, m.data, m.cols, m.rows, m.row_bytes, in, n_tok, out);
        };
        auto bias = [&](const model::Vector& vec, float* y, int64_t width) {
            if (const float* d = dev(vec)) add(y, d, width, n, 0);
        };
        for (int64_t l = placement_.first; l < placement_.n_layer; ++l) {
            const model::LayerWeights& L = w_.layers[size_t(l)];
            const PagedPools pools{kpools_[size_t(l - placement_.first)].as<half_bits>(),
                                   vpools_[size_t(l - placement_.first)].as<half_bits>(),
                                   tables_.as<int32_t>(),
                                   blocks_per_seq_,
                                   int(hp_.n_head_kv),
                                   hd};
            rmsnorm(xb, xd, dev(L.attn_norm), n_embd, n, hp_.rms_eps);
            mm(L.attn_q, xb, n, q);
            mm(L.attn_k, xb, n, k);
            mm(L.attn_v, xb, n, v);
            bias(L.attn_q_bias, q, n_q);
            bias(L.attn_k_bias, k, n_kv);
            bias(L.attn_v_bias, v, n_kv);
            rope(q, n, n_head, hd, pos, inv_freq_.as<float>(), hp_.rope_freq_scale, neox);
            rope(k, n, int(hp_.n_head_kv), hd, pos, inv_freq_.as<float>(), hp_.rope_freq_scale, neox);
            kv_store(pools, k, v, n, seq, slot);
            attention(att, q, pools, n, n_head, seq, slot, scale);
            mm(L.attn_output, att, n, xb);
            bias(L.attn_output_bias, xb, n_embd);
            add(xd, xb, n_embd, n, n_embd);
            rmsnorm(xb, xd, dev(L.ffn_norm), n_embd, n, hp_.rms_eps);
            mm(L.ffn_gate, xb, n, hb);
            mm(L.ffn_up, xb, n, hb2);
            silu_mul(hb, hb2, int64_t(n) * n_ff);
            mm(L.ffn_down, hb, n, xb);
            add(xd, xb, n_embd, n, n_embd);
        }
        if (placement_.head && logits) {  // only the wanted logits come back
            gather_rows(xb, xd, rows, n_out, n_embd);
            rmsnorm(xb, xb, dev(w_.output_norm), n_embd, n_out, hp_.rms_eps);
            mm(w_.output, xb, n_out, logits_.as<float>());
            check("forward");
            copy(logits, logits_.as<float>(), uint64_t(n_out) * uint64_t(hp_.n_vocab) * sizeof(float),
                 cudaMemcpyDeviceToHost, "logits down");
            return;
        }
        check("forward");
        copy(x, xd, uint64_t(n) * n_embd * sizeof(float), cudaMemcpyDeviceToHost, "hidden state down");
    }

  private:
    void upload(const model::Model& model) {
        w_ = model.w;
        model::for_each_device_tensor(hp_, placement_, w_, [&](const std::string& name, auto& slot) {
            if constexpr (std::is_same_v<std::remove_reference_t<decltype(slot)>, model::Matrix>) {
                if (!slot.present()) return;
                if (!matvec_supports(slot.type->id))
                    throw UnsupportedError("the CUDA backend has no kernel for tensor '" + name +
                                           "' of type " + slot.type->name);
                DeviceBuffer d(slot.nbytes);
                copy(d.as<uint8_t>(), slot.data, slot.nbytes, cudaMemcpyHostToDevice, "weight upload");
                slot.data = d.as<uint8_t>();
                slot.dequantize_row_fn = nullptr;  // device memory: no host kernel may read it
                buffers_.push_back(std::move(d));
            } else {
                if (slot.empty()) return;
                DeviceBuffer d(slot.size() * sizeof(float));
                copy(d.as<float>(), slot.data(), slot.size() * sizeof(float), cudaMemcpyHostToDevice,
                     "upload");
                vectors_[&slot] = d.as<float>();
                buffers_.push_back(std::move(d));
            }
        });
    }

    // The device copy of a 1-D tensor of w_, or nullptr when it is absent.
    const float* dev(const model::Vector& v) const {
        const auto it = vectors_.find(&v);
        return it == vectors_.end() ? nullptr : it->second;
    }

    model::HParams hp_;
    int n_batch_ = 0;
    int blocks_per_seq_ = 0;
    model::Weights w_;  // matrices point to device memory
    std::vector<DeviceBuffer> buffers_;
    std::unordered_map<const model::Vector*, float*> vectors_;
    std::vector<DeviceBuffer> kpools_, vpools_;  // [n_device]
    DeviceBuffer x_, xb_, q_, k_, v_, att_, hb_, hb2_, logits_, ints_, tables_, inv_freq_;
    std::vector<int32_t> tables_host_, ints_host_;
    std::vector<uint8_t> seq_seen_;
};

}  // namespace

bool part_available() {
    return !devices().empty();
}

uint64_t free_bytes() {
    const std::vector<DeviceInfo> d = devices();
    return d.empty() ? 0 : d[0].free_bytes;
}

std::unique_ptr<model::DevicePart> make_part(const model::Model& model, const model::Placement& p,
                                             const KvCache& kv, int n_batch, int n_threads, uint64_t free) {
    if (!part_available()) throw std::runtime_error("no CUDA GPU is visible");
    // The CUDA layers are the llama graph; the other architectures' extra steps (q/k norms, windows,
    // scales, partial RoPE) have no kernels here yet, so their layers stay on the CPU.
    if (!model.hp.llama_graph())
        throw UnsupportedError("the CUDA backend runs llama, mistral and qwen2 layers; " + model.hp.arch +
                               " runs on the CPU");
    if (cudaSetDevice(0) != cudaSuccess) check("cudaSetDevice");
    return std::make_unique<CudaPart>(model, p, kv, n_batch, n_threads, free);
}

}  // namespace qrt::cuda
