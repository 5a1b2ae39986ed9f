#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/device.h"
#include "cuda/kernels.h"

namespace qrt::cuda {

std::vector<DeviceInfo> devices() {
    std::vector<DeviceInfo> out;
    int count = 0;
    if (cudaGetDeviceCount(&count) != cudaSuccess) {
        cudaGetLastError();  // no driver / no device: clear the sticky error and report none
        return out;
    }
    for (int i = 0; i < count; ++i) {
        cudaDeviceProp prop{};
        if (cudaGetDeviceProperties(&prop, i) != cudaSuccess) continue;
        DeviceInfo info{i, prop.name, prop.major * 10 + prop.minor, prop.totalGlobalMem, 0};
        size_t free_bytes = 0, total_bytes = 0;
        if (cudaSetDevice(i) == cudaSuccess && cudaMemGetInfo(&free_bytes, &total_bytes) == cudaSuccess)
            info.free_bytes = free_bytes;
        out.push_back(info);
    }
    return out;
}

void check(const char* what) {
    const cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        throw std::runtime_error(std::string("CUDA: ") + what + ": " + cudaGetErrorString(e));
}

int runtime_version() {
    return CUDART_VERSION;
}

}  // namespace qrt::cuda
