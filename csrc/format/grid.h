// Fixed-grid rounding for calibrated quantizers (GPTQ, issue 14).
//
// Once a block's scales are chosen (by a quantizer, weighted or not), every element of the block can take
// one of a few values: value = scale * q + offset with an integer q in [qmin, qmax], where scale and offset
// come from the block's stored scales (and mins) for the element's sub-block. GPTQ fixes the scales of a
// block first, then rounds its columns one at a time onto that grid, pushing each column's rounding error
// into the columns not yet rounded; it needs the grid per element (row_grid) and a way to store the q it
// picked without touching the scales (set_row_quants). The formulas are the dequantizers' (legacy.h,
// kquants.h), with q signed where the type centres it: Q4_0 q-8, Q5_0 q-16, Q3_K q-4, Q6_K q-32.
#pragma once

#include <cstdint>

#include "format/types.h"

namespace qrt {

// The range of q for `t`; false for types without a fixed affine grid per block (floats, NF4, Q8_1/Q8_K).
bool grid_range(const TypeTraits& t, int* qmin, int* qmax);

// scale[i], offset[i] of each of the n elements of one row of `t` blocks (grid_range(t) must be true).
void row_grid(const TypeTraits& t, const void* row, int64_t n, float* scale, float* offset);

// Store q[i] (in [qmin, qmax], checked by the caller) as the quant of element i of one row, keeping the
// row's scales and mins as they are.
void set_row_quants(const TypeTraits& t, void* row, int64_t n, const int8_t* q);

}  // namespace qrt
