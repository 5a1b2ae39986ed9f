// Visible CUDA devices, as the runtime reports them. Only compiled when the CUDA backend is built
// (QRT_HAVE_CUDA); a build or a machine without a GPU simply reports none.
#pragma once

#include <cstddef>
#include <string>
#include <vector>

namespace qrt::cuda {

struct DeviceInfo {
    int index;
    std::string name;
    int compute_capability;  // e.g. 90 for sm_90
    size_t total_bytes;
    size_t free_bytes;
};

// Empty when no driver or no device is present; never throws for that.
std::vector<DeviceInfo> devices();

// The CUDA runtime version this build was compiled against, e.g. 13000.
int runtime_version();

}  // namespace qrt::cuda
