// The CUDA device part (model/offload.h): the backend's weights, K/V pools and work buffers in GPU memory.
#pragma once

#include <memory>

#include "model/offload.h"

namespace qrt::cuda {

// Whether a CUDA device is visible and the backend can run there.
bool part_available();
// Free memory of device 0 in bytes (0 when none).
uint64_t free_bytes();

// Throws std::runtime_error without a device, UnsupportedError for a weight type or head size the kernels
// do not handle, model::DeviceAllocationError when the part does not fit.
std::unique_ptr<model::DevicePart> make_part(const model::Model& model, const model::Placement& p,
                                             const KvCache& kv, int n_batch, int n_threads,
                                             uint64_t free_bytes);

}  // namespace qrt::cuda
