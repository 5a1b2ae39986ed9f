"""AWQ's activation-aware channel scaling, folded exactly into the operation before each group of linears.

AWQ (Lin et al. 2023, reference code mit-han-lab/llm-awq ``awq/quantize/auto_scale.py``) multiplies each input
channel ``j`` of a group of linears sharing an input by ``s_j`` and divides the operation producing that input
by the same ``s_j``, so the float model computes the same function while salient channels (large mean
``|x|``) get finer rounding. ``s = mean|x|^α`` normalised by ``sqrt(max(s)·min(s))``, with ``α`` from the grid
0, 0.1, …, 0.9 (the reference: 20 points) that minimises the group's output error after quantization. The reference measures the
error on the whole block's output; here it is ``Σ ‖(W − Q) x‖²`` over the group's linears, computed from
``H = Σ x xᵀ`` (:func:`qrt_convert.gptq.output_error`) without rerunning the block. Folding targets: the RMSNorm
weight before Q/K/V and before gate/up, and the rows of ``up`` before ``down`` (``act = silu(gate)·up``).
V → output is skipped when heads share V (grouped-query attention), as the reference does.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from .gptq import output_error

N_GRID = 10  #: the reference searches 20 points; 10 (α = 0, 0.1, …, 0.9) halves the cost

#: group -> the float tensor whose output channels feed it (its values are divided by the scales)
FOLD_INTO = {"attn_q": "attn_norm", "ffn_gate": "ffn_norm", "ffn_down": "ffn_up"}

#: ``roundtrip(name, w, importance) -> w`` quantizes and dequantizes one tensor as the file will store it
Roundtrip = Callable[[str, np.ndarray, np.ndarray], np.ndarray]


def search_scales(
    names: Sequence[str], w: dict[str, np.ndarray], x: np.ndarray, h: np.ndarray, roundtrip: Roundtrip
) -> np.ndarray:
    """The per-channel scales (float32, one per input column) that minimise the group's output error over
    the inputs ``x`` (tokens, columns) with ``h = xᵀx``; all ones when no α > 0 helps."""
    x_mean = np.mean(np.abs(x), axis=0, dtype=np.float64)
    diag = np.diag(h)
    best, best_err = np.ones(x.shape[1]), np.inf
    for i in range(N_GRID):
        s = np.maximum(x_mean ** (i / N_GRID), 1e-4)
        s = s / np.sqrt(s.max() * s.min())
        err = 0.0
        for n in names:
            ws = (w[n] * s).astype(np.float32)
            q = roundtrip(n, ws, (diag / s**2).astype(np.float32)) / s
            err += output_error(w[n], q.astype(np.float32), h)
        if err < best_err:
            best, best_err = s, err
    return best.astype(np.float32)


def fold(names: Sequence[str], w: dict[str, np.ndarray], s: np.ndarray) -> None:
    """Scale the group's input columns by ``s`` and divide the preceding operation's outputs by it, in place.
    The float function is unchanged: ``(W·diag(s)) (x / s) = W x``."""
    prev = FOLD_INTO[names[0]]
    w[prev] = (w[prev] / (s if w[prev].ndim == 1 else s[:, None])).astype(np.float32)
    for n in names:
        w[n] = (w[n] * s).astype(np.float32)
