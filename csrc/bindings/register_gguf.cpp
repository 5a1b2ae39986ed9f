// Placeholder until the GGUF reader lands (owned by the GGUF work; replaced wholesale).
#include "bindings/register.h"

namespace qrt::bindings {
void register_gguf(pybind11::module_&) {}
}  // namespace qrt::bindings
