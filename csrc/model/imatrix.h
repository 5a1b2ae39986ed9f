// The importance-matrix collector behind qrt-imatrix: what llama-imatrix's IMatrixCollector gathers
// (tools/imatrix/imatrix.cpp), observed at qrt's matmul instead of ggml's graph callback.
//
// For every weight matrix of the blocks ("blk.*"; the output head "output.weight" too with process_output)
// it sums x² per input column over every token whose activations enter the matrix, and counts the tokens.
// Like llama-imatrix it ignores products of fewer than 16 tokens (decode steps, short tails), and the sums
// are float32, accumulated token by token in order.
#pragma once

#include <cstdint>
#include <map>
#include <mutex>
#include <string>
#include <vector>

#include "model/matmul.h"

namespace qrt::model {

struct ImatrixStats {
    std::vector<float> sums;  // [cols]: Σx² per input column
    int64_t count = 0;        // tokens seen
};

class ImatrixCollector : public MatmulObserver {
  public:
    explicit ImatrixCollector(bool process_output = false) : process_output_(process_output) {}

    void observe(const Matrix& w, const float* x, int n_tokens) override;

    // A copy of the statistics, by matrix name (sorted).
    std::map<std::string, ImatrixStats> stats() const;

    // Smallest product llama-imatrix collects (its "why are small batches ignored (<16 tokens)?").
    static constexpr int kMinTokens = 16;

  private:
    bool process_output_;
    mutable std::mutex mutex_;
    std::map<std::string, ImatrixStats> stats_;
};

}  // namespace qrt::model
