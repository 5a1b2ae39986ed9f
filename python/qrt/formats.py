"""Tensor formats: quantize float32 arrays to GGUF/ggml block types (and NF4) and back."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from . import _C


@dataclass(frozen=True)
class TypeInfo:
    """One row of qrt's type registry."""

    name: str  #: GGUF spelling, e.g. ``"Q4_K"``
    id: int  #: ggml type id stored in GGUF files (NF4: qrt's own id, unknown to llama.cpp)
    block_size: int  #: elements per block
    type_size: int  #: bytes per block
    vec_dot_type: str  #: activation format the matmul kernels pair this type with
    in_files: bool  #: False for compute-only types (Q8_1, Q8_K)
    row_wise: bool  #: rows are self-contained blocks (False for NF4, which keeps per-tensor state)
    max_rel_rmse: float  #: round-trip error bound on N(0, 1) data used by the tests


def types() -> dict[str, TypeInfo]:
    """Every tensor type qrt knows, by name."""
    return {row["name"]: TypeInfo(**row) for row in _C.types()}


def quantize(
    a: np.ndarray, type: str, *, n_threads: int = 0, imatrix: np.ndarray | None = None
) -> np.ndarray:
    """Quantize ``a`` (float32, rows along the last axis) with ``type``'s reference quantizer.

    The result is bit-identical to ggml's ``quantize_row_<type>_ref`` (what ``llama-quantize`` uses
    without an importance matrix). With ``imatrix`` (one non-negative importance per column, e.g. an
    importance matrix's mean Σx² for this tensor) it is bit-identical to ``ggml_quantize_chunk(type, ...,
    imatrix)``: the weighted quantizers of Q2_K..Q6_K, Q4_0, Q4_1, Q5_0 and Q5_1, what ``llama-quantize
    --imatrix`` writes; the other types ignore it, as ggml does. For block types its shape is ``a.shape[:-1] + (row_bytes,)`` like
    gguf-py's ``gguf.quants.quantize``; for NF4 it is one flat run of bytes (blocks, then the tensor's
    double-quantization state). ``n_threads=0`` uses every core; the GIL is released while quantizing.

    Raises ValueError for an unknown type, a row length that is not a multiple of the block size,
    non-finite values, or an ``imatrix`` of the wrong length or with negative or non-finite values.
    """
    return _C.quantize(a, type, n_threads, None if imatrix is None else np.asarray(imatrix, np.float32))


def dequantize(
    raw: np.ndarray, type: str, shape: Sequence[int], *, n_threads: int = 0, out: np.ndarray | None = None
) -> np.ndarray:
    """Decode ``raw`` bytes holding a ``type`` tensor of numpy ``shape`` into a float32 array.

    ``raw`` may have any shape; only its byte count must match the type and shape. With ``out`` (a
    writeable C-contiguous float32 array of ``shape``) the values are written there and ``out`` is returned.
    Row-wise types run this CPU's fastest kernel (AVX2 where available), which gives the same bits as the
    reference.
    """
    raw = np.ascontiguousarray(raw).view(np.uint8)
    return _C.dequantize(raw, type, [int(s) for s in shape], n_threads, out)


def block_grid(raw: np.ndarray, type: str, ne0: int) -> tuple[np.ndarray, np.ndarray, int, int]:
    """The fixed grid of quantized rows: ``(scale, offset, qmin, qmax)``.

    ``raw`` holds rows of ``type`` blocks, shape ``(nrows, row_bytes)`` as :func:`quantize` returns for 2-D
    input; ``scale`` and ``offset`` are float32 ``(nrows, ne0)``. With the block scales as stored, element
    ``i`` of a row can take the values ``scale[i] * q + offset[i]`` for integers ``q`` in ``[qmin, qmax]``
    (the dequantizer's formula, q centred where the type centres it: Q4_0 ``[-8, 7]``, Q6_K ``[-32, 31]``).
    GPTQ rounds onto this grid column by column (``qrt_convert.gptq``). ValueError for types without a grid
    (floats, NF4) or a mis-shaped ``raw``.
    """
    return _C.block_grid(np.ascontiguousarray(raw, np.uint8), type, int(ne0))


def set_quants(raw: np.ndarray, type: str, q: np.ndarray) -> np.ndarray:
    """A copy of the quantized rows ``raw`` whose elements' integer ``q`` (int8, ``(nrows, ne0)``, within
    :func:`block_grid`'s range) replace the stored ones; block scales and mins are kept."""
    return _C.set_quants(np.ascontiguousarray(raw, np.uint8), type, np.ascontiguousarray(q, np.int8))
