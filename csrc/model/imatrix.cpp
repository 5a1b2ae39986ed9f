// Σx² per input column of each block matrix (model/imatrix.h).
#include "model/imatrix.h"

#include <stdexcept>

namespace qrt::model {

void ImatrixCollector::observe(const Matrix& w, const float* x, int n_tokens) {
    if (n_tokens < kMinTokens) return;
    const bool wanted = w.name.rfind("blk.", 0) == 0 || (process_output_ && w.name == "output.weight");
    if (!wanted) return;
    std::lock_guard<std::mutex> lock(mutex_);
    ImatrixStats& e = stats_[w.name];
    if (e.sums.empty()) e.sums.assign(size_t(w.cols), 0.0f);
    if (int64_t(e.sums.size()) != w.cols)  // two matrices of one name: a model bug, not an input error
        throw std::logic_error("imatrix: matrix " + w.name + " seen with " + std::to_string(w.cols) +
                               " columns after " + std::to_string(e.sums.size()));
    float* acc = e.sums.data();
    for (int t = 0; t < n_tokens; ++t) {
        const float* xt = x + int64_t(t) * w.cols;
        for (int64_t j = 0; j < w.cols; ++j) acc[j] += xt[j] * xt[j];
    }
    e.count += n_tokens;
}

std::map<std::string, ImatrixStats> ImatrixCollector::stats() const {
    std::lock_guard<std::mutex> lock(mutex_);
    return stats_;
}

}  // namespace qrt::model
