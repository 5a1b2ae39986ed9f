#include "cuda/testing.h"

#include <cuda_runtime.h>

#include <stdexcept>
#include <string>

#include "cuda/device.h"
#include "cuda/kernels.h"

namespace qrt::cuda::testing {

namespace {

// A device copy of host data (or n zeroed bytes), freed on scope exit.
class Dev {
  public:
    Dev(const void* host, uint64_t bytes) : bytes_(bytes) {
        if (devices().empty()) throw std::runtime_error("no CUDA GPU is visible");
        if (cudaMalloc(&p_, size_t(bytes ? bytes : 1)) != cudaSuccess) check("cudaMalloc");
        if (host && bytes && cudaMemcpy(p_, host, size_t(bytes), cudaMemcpyHostToDevice) != cudaSuccess)
            check("upload");
    }
    Dev(const Dev&) = delete;
    Dev& operator=(const Dev&) = delete;
    ~Dev() { cudaFree(p_); }
    template <typename T>
    T* as() const {
        return static_cast<T*>(p_);
    }
    std::vector<float> download() const {
        check("kernel");
        std::vector<float> out(size_t(bytes_ / sizeof(float)));
        if (cudaMemcpy(out.data(), p_, size_t(bytes_), cudaMemcpyDeviceToHost) != cudaSuccess)
            check("download");
        return out;
    }

  private:
    void* p_ = nullptr;
    uint64_t bytes_;
};

}  // namespace

std::vector<float> matvec(TypeId type, const uint8_t* w, uint64_t nbytes, int64_t cols, int64_t rows,
                          const float* x, int n_tok) {
    if (!matvec_supports(type))
        throw std::invalid_argument("no CUDA matvec for type id " + std::to_string(int(type)));
    const TypeTraits& t = traits(type);
    Dev dw(w, nbytes), dx(x, uint64_t(n_tok) * uint64_t(cols) * 4),
        dy(nullptr, uint64_t(n_tok) * uint64_t(rows) * 4);
    cuda::matvec(type, dw.as<uint8_t>(), cols, rows, uint64_t(cols / t.block_size) * t.type_size,
                 dx.as<float>(), n_tok, dy.as<float>());
    return dy.download();
}

std::vector<float> rmsnorm(const float* x, const float* w, int64_t n, int n_tok, float eps) {
    Dev dx(x, uint64_t(n_tok) * uint64_t(n) * 4), dw(w, uint64_t(n) * 4),
        dy(nullptr, uint64_t(n_tok) * uint64_t(n) * 4);
    cuda::rmsnorm(dy.as<float>(), dx.as<float>(), dw.as<float>(), n, n_tok, eps);
    return dy.download();
}

std::vector<float> rope(const float* x, int n_tok, int n_head, int head_dim, const int32_t* pos,
                        const float* inv_freq, float freq_scale, bool neox) {
    Dev dx(x, uint64_t(n_tok) * uint64_t(n_head) * uint64_t(head_dim) * 4), dp(pos, uint64_t(n_tok) * 4),
        df(inv_freq, uint64_t(head_dim / 2) * 4);
    cuda::rope(dx.as<float>(), n_tok, n_head, head_dim, dp.as<int32_t>(), df.as<float>(), freq_scale, neox);
    return dx.download();
}

std::vector<float> silu_mul(const float* gate, const float* up, int64_t n) {
    Dev dg(gate, uint64_t(n) * 4), du(up, uint64_t(n) * 4);
    cuda::silu_mul(dg.as<float>(), du.as<float>(), n);
    return dg.download();
}

}  // namespace qrt::cuda::testing
