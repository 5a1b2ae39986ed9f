// Exceptions that cross into Python with a type of their own (bindings/module.cpp maps them):
// FormatError -> qrt.FormatError(ValueError): the bytes are corrupt or inconsistent.
// UnsupportedError -> qrt.UnsupportedError(ValueError): valid content qrt does not handle.
#pragma once

#include <stdexcept>
#include <string>

namespace qrt {

struct FormatError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

struct UnsupportedError : std::runtime_error {
    using std::runtime_error::runtime_error;
};

}  // namespace qrt
