#include "model/offload.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <type_traits>
#include <vector>

#include "errors.h"
#include "model/forward.h"
#include "model/matmul.h"
#include "model/packing.h"

#if defined(QRT_HAVE_CUDA)
#include "cuda/part.h"
#endif

namespace qrt::model {

namespace {

std::string mib(uint64_t bytes) {
    return std::to_string((bytes + (1u << 19)) >> 20) + " MiB";
}

// Memory from the "device": 64-byte aligned, freed with std::free.
struct FreeDeleter {
    void operator()(void* p) const { std::free(p); }
};
using DeviceBytes = std::unique_ptr<uint8_t, FreeDeleter>;

DeviceBytes device_alloc(uint64_t bytes) {
    const uint64_t rounded = (std::max<uint64_t>(bytes, 1) + 63) / 64 * 64;
    void* p = std::aligned_alloc(64, size_t(rounded));
    if (!p)
        throw DeviceAllocationError("cpu-test device: cannot allocate " + std::to_string(bytes) + " bytes");
    return DeviceBytes(static_cast<uint8_t*>(p));
}

// The test backend: a second CPU "device". Weights are copied into its own allocations (the mapping is
// not read again), K/V pools and work buffers are its own, and the CPU kernels run on them; x and the
// logits cross through explicit copies, as they would over PCIe.
class CpuTestPart final : public DevicePart {
  public:
    CpuTestPart(const Model& model, const Placement& p, const KvCache& kv, int n_batch, int n_threads,
                uint64_t free_bytes)
        : hp_(model.hp) {
        placement_ = p;
        memory_ = device_memory(model, p, kv.shape(), n_batch, n_threads);
        free_bytes_ = free_bytes;
        if (memory_.total() > free_bytes)
            throw DeviceAllocationError(
                "cannot put " + std::to_string(p.n_device()) + " layers" +
                (p.head ? " and the output head" : "") + " on the cpu-test device: they need " +
                std::to_string(memory_.total()) + " bytes (weights " + mib(memory_.weights) + ", KV cache " +
                mib(memory_.kv) + ", work buffers " + mib(memory_.work) + "), " + std::to_string(free_bytes) +
                " bytes are free");
        upload(model);
        const size_t k_bytes = kv.k_pool_bytes(), v_bytes = kv.v_pool_bytes();
        if (p.n_device() > 0) {
            k_ = device_alloc(uint64_t(k_bytes) * uint64_t(p.n_device()));
            v_ = device_alloc(uint64_t(v_bytes) * uint64_t(p.n_device()));
        }
        for (int64_t i = 0; i < p.n_device(); ++i)
            pools_.push_back(KvPools{k_.get() + size_t(i) * k_bytes, v_.get() + size_t(i) * v_bytes});
        buf_ = std::make_unique<ForwardBuffers>(model, n_batch, kv.shape().n_ctx, n_threads,
                                                kv.shape().n_seq_max);
    }

    std::string backend() const override { return "cpu-test"; }

    void forward(const KvCache& kv, ThreadPool& pool, const DeviceBatch& b, float* x, const uint8_t* want,
                 float* logits) override {
        const size_t n_x = size_t(b.n) * size_t(hp_.n_embd);
        std::memcpy(buf_->x.data(), x, n_x * sizeof(float));  // x crosses to the device
        std::copy_n(b.slot, b.n, buf_->slot.data());
        forward_layers(hp_, w_.layers.data(), placement_.first, placement_.n_layer, kv, pools_.data(), pool,
                       *buf_, b.seq, b.pos, b.n);
        if (placement_.head && logits) {  // only the logits come back
            forward_head(hp_, w_.output_norm, w_.output, pool, *buf_, buf_->x.data(), b.n, want, logits);
            return;
        }
        std::memcpy(x, buf_->x.data(), n_x * sizeof(float));  // x comes back
    }

    bool owns_its_weights() const override {
        for (const LayerWeights& L : w_.layers)
            for (const Matrix* m :
                 {&L.attn_q, &L.attn_k, &L.attn_v, &L.attn_output, &L.ffn_gate, &L.ffn_up, &L.ffn_down})
                if (m->present() && (!owned(m->data) || (m->packed && !owned(m->packed)))) return false;
        return !w_.output.present() ||
               (owned(w_.output.data) && (!w_.output.packed || owned(w_.output.packed)));
    }

  private:
    // The device's copy of the weights: the tensors on the device copied, the rest absent.
    void upload(const Model& model) {
        w_ = model.w;  // then every slot is either replaced by a device copy or dropped
        for_each_device_tensor(hp_, placement_, w_, [&](const std::string&, auto& slot) {
            if constexpr (std::is_same_v<std::remove_reference_t<decltype(slot)>, Matrix>) {
                if (!slot.present()) return;
                DeviceBytes bytes = device_alloc(slot.nbytes);
                std::memcpy(bytes.get(), slot.data, size_t(slot.nbytes));
                slot.data = bytes.get();
                blobs_.push_back(std::move(bytes));
                if (const uint64_t n = packed_size(slot)) {  // the host's kernels, so the host's layout too
                    DeviceBytes packed = device_alloc(n);
                    pack_matrix(slot, packed.get(), 1);
                    blobs_.push_back(std::move(packed));
                }
            }  // vectors: copied with w_ (std::vector, the device's own memory)
        });
    }

    bool owned(const uint8_t* p) const {
        for (const DeviceBytes& b : blobs_)
            if (p == b.get()) return true;
        return false;
    }

    HParams hp_;
    Weights w_;
    std::vector<DeviceBytes> blobs_;
    DeviceBytes k_, v_;
    std::vector<KvPools> pools_;  // [n_device]
    std::unique_ptr<ForwardBuffers> buf_;
};

}  // namespace

Placement place(int64_t n_layer, int64_t gpu_layers) {
    if (gpu_layers < 0)
        throw std::invalid_argument("gpu_layers must be >= 0 here, got " + std::to_string(gpu_layers));
    Placement p;
    p.n_layer = n_layer;
    p.first = n_layer - std::min(gpu_layers, n_layer);
    p.head = gpu_layers > n_layer;
    return p;
}

DeviceMemory device_memory(const Model& model, const Placement& p, const KvCacheShape& shape, int n_batch,
                           int n_threads) {
    const HParams& hp = model.hp;
    DeviceMemory m;
    Weights w = model.w;  // a view: matrices point into the mapping
    for_each_device_tensor(hp, p, w, [&](const std::string&, auto& slot) {
        if constexpr (std::is_same_v<std::remove_reference_t<decltype(slot)>, Matrix>)
            m.weights += slot.present() ? slot.nbytes : 0;
        else
            m.weights += slot.size() * sizeof(float);
    });
    if (!p.any()) return m;
    KvCacheShape s = shape;
    s.n_layer = int(p.n_device());
    m.kv = KvCache::bytes_needed(s);
    // ForwardBuffers' sizes (forward.cpp), plus the logits when the head is here.
    const uint64_t nb = uint64_t(n_batch);
    const uint64_t row_stride = uint64_t(kMatmulRowTile * std::max({hp.n_embd, hp.n_embd_q(), hp.n_ff}));
    const uint64_t floats =
        nb * uint64_t(2 * hp.n_embd + 2 * hp.n_embd_q() + 2 * hp.n_embd_kv() + 2 * hp.n_ff) +
        uint64_t(n_threads) * (uint64_t(shape.n_ctx) + row_stride) + uint64_t(hp.head_dim / 2) +
        (p.head ? nb * uint64_t(hp.n_vocab) : 0);
    m.work = floats * sizeof(float) + (3 * nb + uint64_t(shape.n_seq_max)) * sizeof(int32_t) + nb;
    return m;
}

int64_t choose_gpu_layers(const Model& model, const KvCacheShape& shape, int n_batch, int n_threads,
                          uint64_t free_bytes) {
    for (int64_t n = model.hp.n_layer + 1; n > 0; --n) {
        const uint64_t need =
            device_memory(model, place(model.hp.n_layer, n), shape, n_batch, n_threads).total();
        if (free_bytes >= kDeviceMarginBytes && need <= free_bytes - kDeviceMarginBytes) return n;
    }
    return 0;
}

uint64_t device_free_bytes(const std::string& backend, uint64_t free_bytes_override) {
    if (free_bytes_override != 0) return free_bytes_override;
    if (backend == "cpu-test") return physical_memory();
#if defined(QRT_HAVE_CUDA)
    if (backend == "cuda") return cuda::free_bytes();
#endif
    return 0;
}

bool backend_available(const std::string& backend) {
#if defined(QRT_HAVE_CUDA)
    if (backend == "cuda") return cuda::part_available();
#endif
    return backend == "cpu-test";
}

std::unique_ptr<DevicePart> make_device_part(const std::string& backend, const Model& model,
                                             const Placement& p, const KvCache& kv, int n_batch,
                                             int n_threads, uint64_t free_bytes_override) {
    if (model.hp.has_swa())  // the device parts keep one cache geometry; window caches are host-only
        throw UnsupportedError("offload of models with sliding-window layers (" + model.hp.arch +
                               ") is not supported yet");
    if (backend == "cpu-test")
        return std::make_unique<CpuTestPart>(model, p, kv, n_batch, n_threads,
                                             device_free_bytes(backend, free_bytes_override));
    if (backend == "cuda" && (kv.shape().k_type != TypeId::F16 || kv.shape().v_type != TypeId::F16))
        throw std::invalid_argument(
            std::string("a ") + kv_type_name(kv.shape().k_type) + "/" + kv_type_name(kv.shape().v_type) +
            " KV cache (kv_type) cannot be used with gpu_layers on the cuda backend (its layers "
            "keep an f16 cache): use kv_type f16 or gpu_layers 0");
    if (backend == "cuda")
        throw std::runtime_error("qrt's CUDA backend cannot run layers yet (kernels to come)");
    throw std::invalid_argument("unknown device backend '" + backend + "' (known: cpu-test, cuda)");
}

}  // namespace qrt::model
