// One register_X(module) per area of the API; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>

#include "sample/sampler.h"

namespace qrt::bindings {

void register_format(pybind11::module_& m);
void register_gguf(pybind11::module_& m);
void register_sample(pybind11::module_& m);
void register_model(pybind11::module_& m);
void register_scheduler(pybind11::module_& m);
void register_cuda(pybind11::module_& m);
void register_imatrix(pybind11::module_& m);

// SamplingParams from Python arguments, checked (ValueError for values out of range, TypeError for a seed
// that is not an int or None): the Sampler's and the Scheduler's bindings take the same arguments.
SamplingParams sampling_params(double temperature, int64_t top_k, double top_p, double min_p,
                               double repeat_penalty, double frequency_penalty, double presence_penalty,
                               int64_t penalty_last_n, const pybind11::object& seed);

}  // namespace qrt::bindings
