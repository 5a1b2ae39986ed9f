"""ctypes wrapper around llama.cpp's ``libggml-base.so`` (the bit-exact quantization oracle).

Signatures follow ``ggml/include/ggml.h`` and ``ggml/src/ggml-quants.h`` of the llama.cpp
vendored in llama-cpp-python 0.3.36::

    void   quantize_row_<t>_ref(const float * x, block_<t> * y, int64_t k);
    size_t ggml_quantize_chunk(enum ggml_type, const float * src, void * dst,
                               int64_t start, int64_t nrows, int64_t n_per_row, const float * imatrix);
    const struct ggml_type_traits * ggml_get_type_traits(enum ggml_type);
    size_t ggml_type_size(enum ggml_type);  int64_t ggml_blck_size(enum ggml_type);

Usage: ``GgmlRef(path_to_libggml_base)`` or the module-level helpers, which build/load the
library on first use via :func:`tests.support.llamacpp.ensure_built`.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
from collections.abc import Sequence

import numpy as np

# enum ggml_type (ggml.h, this version)
GGML_TYPES: dict[str, int] = {
    "f32": 0,
    "f16": 1,
    "q4_0": 2,
    "q4_1": 3,
    "q5_0": 6,
    "q5_1": 7,
    "q8_0": 8,
    "q8_1": 9,
    "q2_K": 10,
    "q3_K": 11,
    "q4_K": 12,
    "q5_K": 13,
    "q6_K": 14,
    "q8_K": 15,
    "iq2_xxs": 16,
    "iq2_xs": 17,
    "iq3_xxs": 18,
    "iq1_s": 19,
    "iq4_nl": 20,
    "iq3_s": 21,
    "iq2_s": 22,
    "iq4_xs": 23,
    "i8": 24,
    "i16": 25,
    "i32": 26,
    "i64": 27,
    "f64": 28,
    "iq1_m": 29,
    "bf16": 30,
    "tq1_0": 34,
    "tq2_0": 35,
    "mxfp4": 39,
    "nvfp4": 40,
    "q1_0": 41,
    "q2_0": 42,
}
_LOWER = {k.lower(): k for k in GGML_TYPES}

# types with an exported quantize_row_<t>_ref (ggml-quants.h)
REF_TYPES = (
    "q1_0",
    "q2_0",
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "q8_0",
    "q8_1",
    "mxfp4",
    "nvfp4",
    "q2_K",
    "q3_K",
    "q4_K",
    "q5_K",
    "q6_K",
    "q8_K",
    "tq1_0",
    "tq2_0",
    "iq3_xxs",
    "iq4_nl",
    "iq4_xs",
    "iq3_s",
    "iq2_s",
)
# types ggml_quantize_chunk handles (anything else hits assert(false) and then aborts)
CHUNK_TYPES = (
    "q1_0",
    "q2_0",
    "q4_0",
    "q4_1",
    "q5_0",
    "q5_1",
    "q8_0",
    "mxfp4",
    "nvfp4",
    "q2_K",
    "q3_K",
    "q4_K",
    "q5_K",
    "q6_K",
    "tq1_0",
    "tq2_0",
    "iq2_xxs",
    "iq2_xs",
    "iq3_xxs",
    "iq3_s",
    "iq2_s",
    "iq1_s",
    "iq1_m",
    "iq4_nl",
    "iq4_xs",
    "f16",
    "bf16",
    "f32",
)

_TO_FLOAT_T = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_void_p, ctypes.c_int64)


class _TypeTraits(ctypes.Structure):
    # struct ggml_type_traits (ggml.h, this version: has blck_size_interleave)
    _fields_ = [
        ("type_name", ctypes.c_char_p),
        ("blck_size", ctypes.c_int64),
        ("blck_size_interleave", ctypes.c_int64),
        ("type_size", ctypes.c_size_t),
        ("is_quantized", ctypes.c_bool),
        ("to_float", ctypes.c_void_p),
        ("from_float_ref", ctypes.c_void_p),
    ]


def canonical(type_name: str) -> str:
    """'Q4_K' / 'q4_k' / 'q4_K' -> 'q4_K' (ggml's spelling)."""
    try:
        return _LOWER[type_name.lower()]
    except KeyError:
        raise ValueError(f"unknown ggml type {type_name!r}") from None


class GgmlRef:
    """Bound ``libggml-base.so``."""

    def __init__(self, lib_path: os.PathLike | str):
        self.path = pathlib.Path(lib_path)
        lib = ctypes.CDLL(str(self.path))
        self.lib = lib
        i64, sz, vp = ctypes.c_int64, ctypes.c_size_t, ctypes.c_void_p
        lib.ggml_type_size.argtypes, lib.ggml_type_size.restype = [ctypes.c_int], sz
        lib.ggml_blck_size.argtypes, lib.ggml_blck_size.restype = [ctypes.c_int], i64
        lib.ggml_row_size.argtypes, lib.ggml_row_size.restype = [ctypes.c_int, i64], sz
        lib.ggml_type_name.argtypes, lib.ggml_type_name.restype = [ctypes.c_int], ctypes.c_char_p
        lib.ggml_get_type_traits.argtypes = [ctypes.c_int]
        lib.ggml_get_type_traits.restype = ctypes.POINTER(_TypeTraits)
        lib.ggml_quantize_init.argtypes, lib.ggml_quantize_init.restype = [ctypes.c_int], None
        lib.ggml_quantize_requires_imatrix.argtypes = [ctypes.c_int]
        lib.ggml_quantize_requires_imatrix.restype = ctypes.c_bool
        lib.ggml_quantize_chunk.argtypes = [ctypes.c_int, vp, vp, i64, i64, i64, vp]
        lib.ggml_quantize_chunk.restype = sz
        self._ref: dict[str, ctypes._CFuncPtr] = {}
        for t in REF_TYPES:
            fn = getattr(lib, f"quantize_row_{t}_ref")
            fn.argtypes, fn.restype = [vp, vp, i64], None
            self._ref[t] = fn
        # sanity: the enum/struct layout above matches this library
        for t in ("q4_0", "q4_K", "q6_K", "bf16"):
            tr = lib.ggml_get_type_traits(GGML_TYPES[t]).contents
            if tr.type_name.decode() != t or tr.type_size != lib.ggml_type_size(GGML_TYPES[t]):
                raise RuntimeError(f"{self.path}: ggml_type_traits layout mismatch for {t}")

    # ------------------------------------------------------------------ sizes
    def type_id(self, type_name: str) -> int:
        return GGML_TYPES[canonical(type_name)]

    def type_size(self, type_name: str) -> int:
        """Bytes per block (``ggml_type_size``)."""
        return int(self.lib.ggml_type_size(self.type_id(type_name)))

    def block_size(self, type_name: str) -> int:
        """Elements per block (``ggml_blck_size``)."""
        return int(self.lib.ggml_blck_size(self.type_id(type_name)))

    def row_size(self, type_name: str, n: int) -> int:
        return int(self.lib.ggml_row_size(self.type_id(type_name), n))

    def _check_rows(self, t: str, x: np.ndarray) -> np.ndarray:
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.ndim == 1:
            x = x[None, :]
        if x.ndim != 2:
            raise ValueError(f"expected a 2-D float32 array, got shape {x.shape}")
        if x.shape[1] % self.block_size(t):
            raise ValueError(
                f"row length {x.shape[1]} is not a multiple of {t} block size {self.block_size(t)}"
            )
        return x

    # ------------------------------------------------------------------ quantize
    def quantize_ref(self, type_name: str, x: np.ndarray) -> np.ndarray:
        """``quantize_row_<t>_ref`` on each row of ``x`` -> uint8 array ``(rows, row_bytes)``."""
        t = canonical(type_name)
        if t not in self._ref:
            raise ValueError(f"no quantize_row_{t}_ref in ggml-base")
        x = self._check_rows(t, x)
        rows, n = x.shape
        out = np.zeros((rows, self.row_size(t, n)), dtype=np.uint8)
        self.lib.ggml_quantize_init(self.type_id(t))  # needed by iq* ref quantizers; no-op otherwise
        fn = self._ref[t]
        for r in range(rows):
            fn(x[r].ctypes.data, out[r].ctypes.data, n)
        return out

    def quantize_chunk(self, type_name: str, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
        """``ggml_quantize_chunk(type, x, dst, 0, rows, n_per_row, imatrix)`` (what llama-quantize
        calls per tensor chunk) -> uint8 array ``(rows, row_bytes)``."""
        t = canonical(type_name)
        if t not in CHUNK_TYPES:
            raise ValueError(f"ggml_quantize_chunk does not handle {t}")
        tid = self.type_id(t)
        x = self._check_rows(t, x)
        rows, n = x.shape
        imp = None
        if imatrix is not None:
            imatrix = np.ascontiguousarray(imatrix, dtype=np.float32)
            if imatrix.shape != (n,):
                raise ValueError(f"imatrix must have shape ({n},), got {imatrix.shape}")
            imp = imatrix.ctypes.data
        elif self.lib.ggml_quantize_requires_imatrix(tid):
            raise ValueError(f"{t} requires an importance matrix")
        out = np.zeros((rows, self.row_size(t, n)), dtype=np.uint8)
        got = self.lib.ggml_quantize_chunk(tid, x.ctypes.data, out.ctypes.data, 0, rows, n, imp)
        if got != out.nbytes:
            raise RuntimeError(f"ggml_quantize_chunk({t}) wrote {got} bytes, expected {out.nbytes}")
        return out

    # ------------------------------------------------------------------ dequantize
    def dequantize(self, type_name: str, raw: np.ndarray, shape: Sequence[int] | int) -> np.ndarray:
        """``ggml_get_type_traits(t)->to_float`` over ``raw`` -> float32 array of ``shape``."""
        t = canonical(type_name)
        tid = self.type_id(t)
        shape = (int(shape),) if isinstance(shape, int | np.integer) else tuple(int(s) for s in shape)
        n = int(np.prod(shape, dtype=np.int64))
        blk, tsz = self.block_size(t), self.type_size(t)
        if n % blk:
            raise ValueError(f"{n} elements is not a multiple of {t} block size {blk}")
        raw = np.ascontiguousarray(raw).view(np.uint8).reshape(-1)
        if raw.size != n // blk * tsz:
            raise ValueError(f"{t}: {raw.size} bytes for {n} elements, expected {n // blk * tsz}")
        out = np.empty(shape, dtype=np.float32)
        if t == "f32":
            out.reshape(-1)[:] = raw.view(np.float32)
            return out
        tr = self.lib.ggml_get_type_traits(tid).contents
        if tr.to_float:
            fn = _TO_FLOAT_T(tr.to_float)
        elif hasattr(self.lib, f"dequantize_row_{t}"):
            # e.g. q8_K: traits have no to_float, but dequantize_row_q8_K is exported
            fn = _TO_FLOAT_T(ctypes.cast(getattr(self.lib, f"dequantize_row_{t}"), ctypes.c_void_p).value)
        else:
            raise ValueError(f"{t} has no to_float / dequantize_row_{t} in ggml-base")
        fn(raw.ctypes.data, out.ctypes.data, n)
        return out


_default: GgmlRef | None = None


def default() -> GgmlRef:
    """The shared :class:`GgmlRef` over the cached llama.cpp build (built on first use)."""
    global _default
    if _default is None:
        from .llamacpp import ensure_built

        _default = GgmlRef(ensure_built().libggml_base)
    return _default


def quantize_ref(type_name: str, x: np.ndarray) -> np.ndarray:
    return default().quantize_ref(type_name, x)


def quantize_chunk(type_name: str, x: np.ndarray, imatrix: np.ndarray | None = None) -> np.ndarray:
    return default().quantize_chunk(type_name, x, imatrix)


def dequantize(type_name: str, raw: np.ndarray, shape: Sequence[int] | int) -> np.ndarray:
    return default().dequantize(type_name, raw, shape)


def type_size(type_name: str) -> int:
    return default().type_size(type_name)


def block_size(type_name: str) -> int:
    return default().block_size(type_name)
