// One register_X(module) per area of the API; module.cpp calls them all.
#pragma once

#include <pybind11/pybind11.h>

namespace qrt::bindings {

void register_format(pybind11::module_& m);
void register_gguf(pybind11::module_& m);
void register_sample(pybind11::module_& m);
void register_model(pybind11::module_& m);
void register_scheduler(pybind11::module_& m);
void register_cuda(pybind11::module_& m);
void register_imatrix(pybind11::module_& m);

}  // namespace qrt::bindings
