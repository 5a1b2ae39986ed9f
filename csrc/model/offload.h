// Partial offload: the last N transformer layers (and the output head when N exceeds the layer count,
// as llama.cpp does) live and run on a device; the rest, and the token embedding, stay on the CPU.
//
//     tokens -> embedding (CPU) -> layers [0, first) (CPU) -> x crosses to the device -> layers
//     [first, n_layer) (device) -> either x crosses back and the head runs on the CPU, or the head runs
//     on the device and only the wanted logits cross back
//
// so activations cross once per device boundary. The host KvCache keeps every sequence's block table
// (the one allocator of blocks) and the K/V storage of the CPU layers; a device keeps K/V pools of the
// same geometry for its layers and addresses them through the host's tables.
//
// A DevicePart is one backend's copy of a range of layers: it allocates and uploads their weights
// (nothing it runs reads the file mapping afterwards), owns its K/V pools and work buffers, and runs its
// layers over a hidden-state batch. The split, the upload order and the hand-off are the same for every
// backend; backends differ only in where the bytes go and which kernels run. Two exist:
//   - "cuda" (csrc/cuda/, only in builds with QRT_HAVE_CUDA) for a real GPU;
//   - "cpu-test": a second CPU "device" that copies the weight bytes into its own allocations and runs
//     the CPU kernels on them. It is for tests only (the Python side selects it with the environment
//     variable QRT_TEST_DEVICE=cpu[:FREE_BYTES]); it lets CI exercise everything but the GPU kernels, and
//     since it runs the same kernels in the same order, its logits equal the all-CPU ones bit for bit.
#pragma once

#include <cstdint>
#include <memory>
#include <new>
#include <string>
#include <type_traits>
#include <vector>

#include "cpu/threadpool.h"
#include "kv/kv_cache.h"
#include "model/weights.h"

namespace qrt::model {

struct ForwardBuffers;

// A device part does not fit (what() states the bytes). A std::bad_alloc, so Python sees MemoryError.
class DeviceAllocationError : public std::bad_alloc {
  public:
    explicit DeviceAllocationError(std::string msg) : msg_(std::move(msg)) {}
    const char* what() const noexcept override { return msg_.c_str(); }

  private:
    std::string msg_;
};

// Which layers live where, from gpu_layers = N (>= 0; callers map "all"/-1 to n_layer + 1 and resolve
// "auto" with choose_gpu_layers).
struct Placement {
    int64_t n_layer = 0;
    int64_t first = 0;  // the first device layer; layers [first, n_layer) are on the device
    bool head = false;  // output_norm + output on the device
    int64_t n_device() const { return n_layer - first; }
    bool any() const { return first < n_layer || head; }
};
Placement place(int64_t n_layer, int64_t gpu_layers);

// Calls fn(name, slot) for every tensor slot of w (a copy of a model's weights) that p puts on the device,
// slot being a Matrix& or a Vector&, and empties every other slot (token_embd always stays on the CPU;
// rope_freqs is baked into the work buffers' RoPE table and left as is). The one walk over the tensors
// that every backend's upload, and device_memory(), make.
template <typename Fn>
void for_each_device_tensor(const HParams& hp, const Placement& p, Weights& w, Fn&& fn) {
    for_each_tensor(hp, w, [&](const std::string& name, const std::vector<int64_t>&, Need, auto& slot) {
        // layer index for blk.N.*, n_layer for the head, -1 for what stays on the CPU
        int64_t layer = -1;
        if (name.rfind("blk.", 0) == 0)
            layer = std::stoll(name.substr(4));
        else if (name == "output.weight" || name == "output_norm.weight")
            layer = p.n_layer;
        const bool here = layer >= 0 && (layer < p.n_layer ? layer >= p.first : p.head);
        if (here) {
            fn(name, slot);
        } else if (name != "rope_freqs.weight") {
            using Slot = std::remove_reference_t<decltype(slot)>;
            slot = Slot{};
        }
    });
}

// Device memory of a placement, in bytes, by part.
struct DeviceMemory {
    uint64_t weights = 0;  // matrices in their file types, 1-D tensors as f32
    uint64_t kv = 0;       // K/V pools of the device layers
    uint64_t work = 0;     // activation buffers for n_batch tokens, logits when the head is there
    uint64_t total() const { return weights + kv + work; }
};

// What a device part sized for `shape` (its n_layer ignored) and n_batch tokens needs.
DeviceMemory device_memory(const Model& model, const Placement& p, const KvCacheShape& shape, int n_batch,
                           int n_threads);

// Room left free on the device when choosing "auto": a fixed margin for the runtime's own allocations and
// fragmentation.
constexpr uint64_t kDeviceMarginBytes = uint64_t(256) << 20;

// "auto": the largest N in [0, n_layer + 1] whose device_memory().total() + kDeviceMarginBytes fits in
// free_bytes (0 when not even one layer fits).
int64_t choose_gpu_layers(const Model& model, const KvCacheShape& shape, int n_batch, int n_threads,
                          uint64_t free_bytes);

// One forward call's batch as the device sees it (all host pointers, [n] each).
struct DeviceBatch {
    const int32_t* seq = nullptr;   // sequence of each token
    const int32_t* slot = nullptr;  // each token's index in its sequence's cache
    const int32_t* pos = nullptr;   // RoPE positions
    int n = 0;
};

class DevicePart {
  public:
    virtual ~DevicePart() = default;

    virtual std::string backend() const = 0;
    const Placement& placement() const { return placement_; }
    const DeviceMemory& memory() const { return memory_; }
    uint64_t free_bytes() const { return free_bytes_; }  // as seen before uploading

    // Runs the device layers over the hidden states x [n][n_embd] (host memory), writing each token's K and
    // V into the device pools through kv's block tables (already reserved for the batch). Then, when the
    // head is on the device and logits != nullptr, writes the logits of the tokens with want[t] != 0
    // (want == nullptr: all) to logits [n_out][n_vocab] and leaves x unspecified; otherwise x is the
    // hidden state after the last layer.
    virtual void forward(const KvCache& kv, ThreadPool& pool, const DeviceBatch& batch, float* x,
                         const uint8_t* want, float* logits) = 0;

    // Every matrix the part reads lies in its own allocations, none in the host's file mapping (tests).
    virtual bool owns_its_weights() const = 0;

  protected:
    Placement placement_;
    DeviceMemory memory_;
    uint64_t free_bytes_ = 0;
};

// Builds the part of `model` that `p` puts on the backend named `backend` ("cpu-test", or "cuda" in CUDA
// builds), sized like `kv` for n_batch tokens. free_bytes_override != 0 stands in for the device's free
// memory (tests). Throws std::invalid_argument for an unknown backend, std::runtime_error when the backend
// has no usable device, and a std::bad_alloc (MemoryError, with the bytes) when the part does not fit.
std::unique_ptr<DevicePart> make_device_part(const std::string& backend, const Model& model,
                                             const Placement& p, const KvCache& kv, int n_batch,
                                             int n_threads, uint64_t free_bytes_override);

// The free memory of the backend's device (0 when none); free_bytes_override != 0 is returned as is.
uint64_t device_free_bytes(const std::string& backend, uint64_t free_bytes_override);

// Whether `backend` can run layers in this build on this machine ("cpu-test": always).
bool backend_available(const std::string& backend);

}  // namespace qrt::model
