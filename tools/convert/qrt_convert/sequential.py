"""Layer-by-layer calibration (``--method gptq | awq | awq+gptq``): the quantized bytes of every block matrix.

The calibration tokens are embedded once; then, one decoder layer at a time (only that layer's weights in
memory), the layer's float weights are read from the checkpoint, AWQ scales are searched and folded in
(``awq``, ``awq+gptq``; :mod:`qrt_convert.awq`), and the layer is run over the calibration activations with
each group of linears quantized just before it is used (:func:`layer_forward.layer`), so every Hessian
``H = Σ x xᵀ`` comes from inputs that the already-quantized layers produced: GPTQ's sequential rule. ``gptq``
rounds with :func:`qrt_convert.gptq.quantize`, ``awq`` with the importance-weighted quantizer (RTN on the
scaled weights). The layer's output, computed with its quantized weights, is the next layer's input.

Each tensor the method changes (quantized matrices; norms and ``up`` rows that absorbed AWQ scales) is saved
to ``work_dir`` as the bytes :func:`converter.run_plan` writes; ``diag(H)`` per matrix gives an importance
matrix in llama-imatrix's format (Σx² and token counts), kept beside the output like ``--method imatrix``'s.
"""

from __future__ import annotations

import math
import pathlib
import sys
from collections.abc import Sequence

import numpy as np

import qrt
from qrt.imatrix_file import Imatrix, ImatrixEntry

from . import awq, gptq
from .checkpoint import Checkpoint
from .converter import Plan, PlannedTensor, _chunks
from .layer_forward import GROUPS, LayerShape, layer

METHODS = ("gptq", "awq", "awq+gptq")
GFLOPS = 20.0  #: rough float32 rate of numpy on two cores, for --dry-run's estimate


def read_tensor(ckpt: Checkpoint, t: PlannedTensor) -> np.ndarray:
    """The float32 values of ``t`` as the converter would quantize them (permuted, offset applied)."""
    return np.concatenate([x.reshape(-1) for x, _ in _chunks(ckpt, t)]).reshape(t.shape)


def embed(ckpt: Checkpoint, t: PlannedTensor, tokens: np.ndarray) -> np.ndarray:
    """Rows ``tokens`` of the embedding ``t``, read a chunk of rows at a time (the table is never whole)."""
    out = np.empty((*tokens.shape, t.shape[1]), np.float32)
    r0 = 0
    for x, _ in _chunks(ckpt, t):
        x = x.reshape(-1, t.shape[1])
        hit = (tokens >= r0) & (tokens < r0 + len(x))
        out[hit] = x[tokens[hit] - r0]
        r0 += len(x)
    return out


def _hessian(x: np.ndarray) -> np.ndarray:
    h = np.zeros((x.shape[1], x.shape[1]), np.float64)
    for i in range(0, len(x), 4096):  # float32 products, float64 sums across pieces
        h += (x[i : i + 4096].T @ x[i : i + 4096]).astype(np.float64)
    return h


def estimate(plan: Plan, n_tokens: int, method: str) -> str:
    """What calibrating ``plan`` over ``n_tokens`` tokens will cost: a line for ``--dry-run``."""
    shape = LayerShape.from_metadata({kv.key: kv.value for kv in plan.kvs})
    mats = [t for t in plan.tensors if t.name.startswith("blk.0.") and len(t.shape) == 2]
    params = sum(math.prod(t.shape) for t in mats)
    widths = {t.shape[1] for t in mats}
    n_ff = max(widths)
    flop = 2 * n_tokens * params * (2 if "awq" in method else 1)  # forward (twice with AWQ's float pass)
    flop += 2 * n_tokens * sum(c * c for c in widths)  # Hessians
    if "awq" in method:
        flop += awq.N_GRID * 2 * sum(math.prod(t.shape) * t.shape[1] for t in mats)  # error of each candidate
    if "gptq" in method:
        flop += sum(2 * math.prod(t.shape) * t.shape[1] + t.shape[1] ** 3 for t in mats)
    flop *= shape.n_layer
    mem = 4 * n_tokens * (2 * shape.n_embd + 3 * n_ff)  # residual, layer input, group inputs
    mem += 8 * n_ff * n_ff * 2 + 4 * params * 3  # H and its factor, the layer's weights and copies
    mem += 4 * shape.n_head * 512 * 512 * 3  # one sequence's attention scores
    return (
        f"calibration ({method}): {n_tokens:,} tokens x {shape.n_layer} layers, about {flop / 1e9:,.0f} GFLOP "
        f"(~{flop / 1e9 / GFLOPS / 60:.1f} min at {GFLOPS:.0f} GFLOP/s) and ~{mem / 2**20:,.0f} MiB of memory beyond "
        "a plain conversion"
    )


class _Calibrator:
    """The per-tensor work of :func:`calibrate`: quantize, save, remember the importances."""

    def __init__(self, method: str, work_dir: pathlib.Path, n_threads: int) -> None:
        self.method, self.work_dir, self.n_threads = method, work_dir, n_threads
        self.saved: dict[str, pathlib.Path] = {}
        self.sums: dict[str, tuple[np.ndarray, int]] = {}

    def save(self, t: PlannedTensor, data: np.ndarray) -> None:
        path = self.work_dir / f"{t.name}.npy"
        np.save(path, data)
        self.saved[t.name] = path

    def stored(
        self,
        t: PlannedTensor,
        w: np.ndarray,
        importance: np.ndarray,
        h: np.ndarray | None = None,
        u: np.ndarray | None = None,
    ) -> np.ndarray:
        """The bytes the file will hold for ``w`` (GPTQ with ``h`` and its factor ``u``, else the weighted
        quantizer)."""
        if t.type == "F32":
            return w
        if h is not None:
            return gptq.quantize(w, h, t.type, importance=importance, n_threads=self.n_threads, factor=u)
        return qrt.quantize(w, t.type, n_threads=self.n_threads, imatrix=importance)

    def roundtrip(self, t: PlannedTensor, w: np.ndarray, importance: np.ndarray) -> np.ndarray:
        raw = qrt.quantize(w, t.type, n_threads=self.n_threads, imatrix=importance)
        return qrt.dequantize(raw, t.type, w.shape, n_threads=self.n_threads)

    def awq_fold(
        self, x: np.ndarray, w: dict[str, np.ndarray], planned: dict[str, PlannedTensor], shape: LayerShape
    ) -> set[str]:
        """Search and fold AWQ scales into the layer's float weights ``w``; returns the names changed."""
        captured: dict[tuple[str, ...], np.ndarray] = {}

        def capture(names: Sequence[str], inp: np.ndarray) -> dict[str, np.ndarray]:
            captured[tuple(names)] = inp
            return {}

        layer(x, dict(w), shape, capture)  # the float layer: every group's input
        changed: set[str] = set()
        for names in GROUPS:
            if names[0] not in awq.FOLD_INTO:
                continue
            inp = captured[names]
            s = awq.search_scales(
                names, w, inp, _hessian(inp), lambda n, ws, imp: self.roundtrip(planned[n], ws, imp)
            )
            awq.fold(names, w, s)
            changed.update([*names, awq.FOLD_INTO[names[0]]])
        return changed

    def quantize_layer(
        self, x: np.ndarray, w: dict[str, np.ndarray], planned: dict[str, PlannedTensor], shape: LayerShape
    ) -> np.ndarray:
        """Run the layer, each group quantized (and saved) on its inputs just before use; returns its output."""

        def quantize(names: Sequence[str], inp: np.ndarray) -> dict[str, np.ndarray]:
            h = _hessian(inp)
            importance = np.diag(h).astype(np.float32)
            use_gptq = "gptq" in self.method and any(planned[n].type != "F32" for n in names)
            u = gptq.inverse_cholesky(h.copy()) if use_gptq else None  # one factor for the group
            out = {}
            for n in names:
                t = planned[n]
                self.sums[t.name] = (importance, len(inp))
                data = self.stored(t, w[n], importance / len(inp), h if use_gptq else None, u)
                self.save(t, data)
                out[n] = (
                    data
                    if t.type == "F32"
                    else qrt.dequantize(data, t.type, t.shape, n_threads=self.n_threads)
                )
            return out

        return layer(x, w, shape, quantize)


def calibrate(
    ckpt: Checkpoint,
    plan: Plan,
    chunks: np.ndarray,
    method: str,
    work_dir: pathlib.Path,
    *,
    dataset: str = "",
    progress: bool = True,
    n_threads: int = 0,
) -> tuple[dict[str, pathlib.Path], Imatrix]:
    """Run ``method`` over the token ``chunks`` (sequences, tokens); returns {tensor name: saved bytes} and
    the importance matrix of the quantized inputs."""
    if method not in METHODS:
        raise ValueError(f"unknown layer-wise calibration method {method!r}; available: {', '.join(METHODS)}")
    shape = LayerShape.from_metadata({kv.key: kv.value for kv in plan.kvs})
    by_name = {t.name: t for t in plan.tensors}
    cal = _Calibrator(method, work_dir, n_threads)
    x = embed(ckpt, by_name["token_embd.weight"], chunks)
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=shape.n_layer, desc=method, unit="layer", file=sys.stderr, dynamic_ncols=True)
    try:
        for il in range(shape.n_layer):
            prefix = f"blk.{il}."
            # short names: attn_q (the weight), attn_q.bias, attn_norm
            planned = {
                n[len(prefix) :].removesuffix(".weight"): t
                for n, t in by_name.items()
                if n.startswith(prefix)
            }
            w = {k: read_tensor(ckpt, t) for k, t in planned.items()}
            changed = cal.awq_fold(x, w, planned, shape) if "awq" in method else set()
            x = cal.quantize_layer(x, w, planned, shape)
            for n in changed:  # norms (float) that absorbed scales
                if planned[n].name not in cal.saved:
                    cal.save(
                        planned[n], cal.stored(planned[n], w[n], np.ones(w[n].shape[-1], np.float32), None)
                    )
            if bar is not None:
                bar.update(1)
    finally:
        if bar is not None:
            bar.close()
    entries = {
        name: ImatrixEntry(s.astype(np.float32).reshape(1, -1), np.array([n], np.int64))
        for name, (s, n) in cal.sums.items()
    }
    return cal.saved, Imatrix(entries, [dataset] if dataset else [], len(chunks), chunks.shape[1])
