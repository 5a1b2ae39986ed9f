"""GPTQ onto GGUF block types: Hessian-guided rounding whose output is an ordinary llama.cpp tensor.

GPTQ (Frantar et al. 2022, reference code IST-DASLab/gptq ``gptq.py`` ``fasterquant``) quantizes a linear layer
``y = W x`` column by column (column = input channel) so as to keep ``‖W X − Q X‖²`` small over calibration
inputs ``X``: with ``H = Σ x xᵀ`` (damped by ``percdamp`` × its mean diagonal) and the upper Cholesky factor
``U`` of ``H⁻¹``, the rounding error of column ``j``, divided by ``U[j, j]``, is subtracted from the columns
after it along ``U[j, j+1:]``. Updates are applied lazily, a batch of columns at a time, as in the reference.

GGUF block types share scales across a block of 32 or 256 columns of a row, so the scales cannot follow each
column: when GPTQ reaches the first column of a block it chooses that block's scales from the block's current
(error-corrected) weights with the importance-weighted quantizer (``qrt.quantize(..., imatrix=diag(H))``,
ggml's ``quantize_row_*_impl``), then rounds the block's columns one at a time onto that fixed grid
(:func:`qrt.formats.block_grid`) and feeds each column's error forward. The stored result is the block bytes of
the chosen scales with the GPTQ-picked quants written in (:func:`qrt.formats.set_quants`): same type, same
size, readable by llama.cpp.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import glob
import os
from collections.abc import Iterator

import numpy as np

import qrt
from qrt.formats import block_grid, set_quants

PERCDAMP = 0.01  #: the reference's default damping, a fraction of mean(diag(H))
BATCH_COLUMNS = 256  #: lazy-update batch (the reference's blocksize is 128; 256 holds one k-quant block)


@functools.cache
def _openblas_threads() -> tuple[ctypes._CFuncPtr, ctypes._CFuncPtr] | None:
    """numpy's bundled OpenBLAS (get, set) thread-count functions, or None (another BLAS, other names)."""
    libs = os.path.join(os.path.dirname(os.path.dirname(np.__file__)), "numpy.libs")
    for path in glob.glob(os.path.join(libs, "*openblas*")):
        try:
            lib = ctypes.CDLL(path)
        except OSError:
            continue
        for prefix in ("scipy_openblas", "openblas"):
            for suffix in ("64_", ""):
                get = getattr(lib, f"{prefix}_get_num_threads{suffix}", None)
                put = getattr(lib, f"{prefix}_set_num_threads{suffix}", None)
                if get is not None and put is not None:
                    return get, put
    return None


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run LAPACK on one thread: OpenBLAS's threaded Cholesky and inverse wait whole scheduler slices for
    each other on a busy machine (measured 100x slower at n = 576 on 2 shared cores, 1.7 s vs 14 ms), and
    they are a small part of the work."""
    fns = _openblas_threads()
    if fns is None:
        yield
        return
    get, put = fns
    before = int(get())
    put(1)
    try:
        yield
    finally:
        put(before)


def inverse_cholesky(h: np.ndarray, percdamp: float = PERCDAMP) -> np.ndarray:
    """The upper Cholesky factor ``U`` of ``(H + λI)⁻¹`` (``H⁻¹ = Uᵀ U``), ``λ = percdamp · mean(diag H)``;
    ``H`` is modified in place (dead columns get 1 on the diagonal, as in the reference)."""
    diag = np.einsum("ii->i", h)
    diag[diag == 0] = 1.0
    diag += percdamp * float(np.mean(diag))
    # With J the order-reversing permutation and J H J = L Lᵀ, U = J L⁻¹ J is upper triangular and
    # Uᵀ U = J L⁻ᵀ L⁻¹ J = H⁻¹: one Cholesky and one triangular inverse instead of the reference's three steps.
    with one_blas_thread():
        lower = np.linalg.cholesky(h[::-1, ::-1])
        return np.ascontiguousarray(np.linalg.inv(lower)[::-1, ::-1])


def quantize(
    w: np.ndarray,
    h: np.ndarray,
    type: str,
    *,
    importance: np.ndarray | None = None,
    percdamp: float = PERCDAMP,
    n_threads: int = 0,
    factor: np.ndarray | None = None,
) -> np.ndarray:
    """GPTQ-quantize the float32 weight ``w`` (rows = outputs, columns = inputs) to ``type`` given the Hessian
        ``h = Σ x xᵀ`` of its inputs (columns × columns, float64; not modified). ``importance`` (one value per
        column, default ``diag(h)``) weights the choice of each block's scales; ``factor``: :func:`inverse_cholesky`
    of ``h`` when the caller already has it (linears sharing an input share it). Returns the tensor's bytes,
        shape ``(rows, row_bytes)``, as :func:`qrt.quantize` does."""
    rows, cols = w.shape
    info = qrt.types()[type]
    bs = info.block_size
    if cols % bs:
        raise ValueError(f"rows of {cols} values are not a multiple of {type}'s block size {bs}")
    dead = np.einsum("ii->i", h) == 0
    if importance is None:
        importance = np.einsum("ii->i", h).copy()
    importance = np.ascontiguousarray(importance, np.float32)
    w = np.array(w, np.float32, copy=True)
    w[:, dead] = 0
    if factor is None:
        factor = inverse_cholesky(np.array(h, np.float64, copy=True), percdamp)
    u = factor.astype(np.float32)

    row_bytes = cols // bs * info.type_size
    raw = np.zeros((rows, row_bytes), np.uint8)
    qint = np.zeros((rows, cols), np.int8)
    batch = max(bs, BATCH_COLUMNS // bs * bs)
    for i1 in range(0, cols, batch):
        i2 = min(i1 + batch, cols)
        w1 = w[:, i1:i2]  # a view: updates land in w
        err = np.zeros((rows, i2 - i1), np.float32)
        u1 = u[i1:i2, i1:i2]
        scale = offset = None
        qmin = qmax = 0
        for j in range(i2 - i1):
            col = i1 + j
            if col % bs == 0:  # a new block: fix its scales from the corrected weights, then round onto them
                blk = qrt.quantize(
                    np.ascontiguousarray(w1[:, j : j + bs]),
                    type,
                    n_threads=n_threads,
                    imatrix=importance[col : col + bs],
                )
                b0 = col // bs * info.type_size
                raw[:, b0 : b0 + info.type_size] = blk
                scale, offset, qmin, qmax = block_grid(blk, type, bs)
            assert scale is not None and offset is not None
            k = col % bs
            a, o, x = scale[:, k], offset[:, k], w1[:, j]
            q = np.clip(np.rint((x - o) / np.where(a != 0, a, 1)), qmin, qmax)
            q[a == 0] = np.clip(0, qmin, qmax)
            qint[:, col] = q
            e = (x - (a * q + o)) / u1[j, j]
            err[:, j] = e
            w1[:, j + 1 :] -= np.outer(e, u1[j, j + 1 :])
        w[:, i2:] -= err @ u[i1:i2, i2:]
    return set_quants(raw, type, qint)


def output_error(w: np.ndarray, wq: np.ndarray, h: np.ndarray) -> float:
    """``Σ ‖(W − Q) x‖²`` over the inputs whose ``Σ x xᵀ`` is ``h``: ``trace(D H Dᵀ)``, ``D = W − Q``."""
    d = (w - wq).astype(np.float32)
    return float(np.sum((d @ h.astype(np.float32)) * d, dtype=np.float64))
