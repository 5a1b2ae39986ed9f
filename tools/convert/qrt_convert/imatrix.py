"""``qrt-convert --imatrix FILE``: what llama-quantize does with an importance matrix.

An importance matrix (llama-imatrix's or qrt-imatrix's file, GGUF or legacy ``.dat``, read by
:mod:`qrt.imatrix_file`) gives each input column of every weight matrix a weight; the weighted quantizers
(``qrt.quantize(..., imatrix=w)``, ggml's ``quantize_row_*_impl``) use it to decide each rounding. Beyond
the weights, llama-quantize changes three things, reproduced here so the files are byte-identical:

* type selection: Q4_0/Q5_0 files bump their first n_layer/8 ffn_down to Q4_1/Q5_1
  (:func:`presets.choose_types`), and Q2_K_S needs an imatrix for its Q2_K tensors;
* metadata, appended after ``general.file_type``: ``quantize.imatrix.file`` (the path as given, at most 127
  bytes), ``quantize.imatrix.dataset`` (the first dataset), ``quantize.imatrix.entries_count``,
  ``quantize.imatrix.chunks_count`` (when known);
* a tensor whose entry is missing is quantized without weights; one whose width differs is an error.

qrt is stricter than llama-quantize where a mismatch means the file was made for another model: an entry
that names no tensor of this model, or a block matrix without an entry, is an error naming it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

import numpy as np

from qrt import FormatError
from qrt.imatrix_file import Imatrix, read

from .gguf_writer import KV, STRING, UINT32
from .presets import requires_imatrix

if TYPE_CHECKING:
    from .converter import PlannedTensor

#: llama-quantize copies these strings into a fixed 128-byte field (strncpy, 127 bytes + NUL)
_MAX_STRING = 127


def load(path: str | os.PathLike[str]) -> Imatrix:
    """Read and check an importance-matrix file (``qrt.FormatError`` if it is malformed)."""
    return read(path)


def _truncated(s: str) -> str:
    b = s.encode("utf-8")[:_MAX_STRING]
    return b.decode("utf-8", "surrogateescape")


def metadata(path_as_given: str, m: Imatrix) -> list[KV]:
    """The ``quantize.imatrix.*`` keys llama-quantize writes (tools/quantize/quantize.cpp)."""
    kvs = [KV("quantize.imatrix.file", STRING, _truncated(path_as_given))]
    if m.datasets:
        kvs.append(KV("quantize.imatrix.dataset", STRING, _truncated(m.datasets[0])))
    kvs.append(KV("quantize.imatrix.entries_count", UINT32, len(m.entries)))
    if m.chunk_count > 0:
        kvs.append(KV("quantize.imatrix.chunks_count", UINT32, m.chunk_count))
    return kvs


def check_required(tensors: list[PlannedTensor], ftype: str, m: Imatrix | None) -> None:
    """Refuse, as llama-quantize does, a file type that needs an imatrix when none (or no entry) is given."""
    for t in tensors:
        if requires_imatrix(t.name, t.type, ftype) and (m is None or t.name not in m.entries):
            what = (
                "an importance matrix (--imatrix FILE)" if m is None else f"an imatrix entry for {t.name!r}"
            )
            raise ValueError(
                f"{ftype} requires {what}: tensor {t.name} would be {t.type}, which without importance "
                "weights gives garbage (llama-quantize refuses it too)"
            )


def attach(tensors: list[PlannedTensor], m: Imatrix, path: str) -> None:
    """Give every quantized tensor its column importances (``t.imatrix``), checking that ``m`` was made for
    this model: each entry names a tensor, each width matches, each block matrix has an entry."""
    by_name = {t.name: t for t in tensors}
    for name in m.entries:
        if name not in by_name:
            raise FormatError(
                f"{path}: imatrix entry {name!r} names no tensor of this model (made for another?)"
            )
    for t in tensors:
        if t.type in ("F32", "F16", "BF16") or len(t.shape) < 2:
            continue
        w = m.weights(t.name)
        if w is None:
            if t.name.startswith("blk."):
                raise FormatError(f"{path}: imatrix has no entry for {t.name} (made for another model?)")
            continue  # token_embd, output: llama-imatrix does not collect them by default
        if w.size != t.shape[-1]:
            if t.name == "token_embd.weight":  # llama-quantize ignores this one mismatch
                continue
            raise FormatError(
                f"{path}: imatrix entry {t.name!r} has {w.size} columns but the tensor has {t.shape[-1]} "
                "(made for another model?)"
            )
        t.imatrix = np.ascontiguousarray(w, np.float32)
