"""``qrt.imatrix()``: an importance matrix from qrt's engine, as llama-imatrix computes it.

The calibration text is tokenized once (BOS as the file asks, special tokens as text) and cut into chunks of
``n_ctx`` tokens; each chunk is evaluated as a fresh sequence with its first token replaced by BOS, while the
engine's matmul observer (``csrc/model/imatrix.h``) adds x² of every token's input to each block matrix's
per-column sums and counts the tokens. Like llama-imatrix it needs at least two chunks of text, skips the
output head unless ``process_output``, and ignores products of fewer than 16 tokens. The result is an
:class:`~qrt.imatrix_file.Imatrix`; :func:`qrt.imatrix_file.write_gguf` writes it in llama.cpp's format.
"""

from __future__ import annotations

import os
from collections.abc import Callable

import numpy as np

from . import _C
from .imatrix_file import Imatrix, ImatrixEntry


def imatrix(
    model: str | os.PathLike[str],
    text: str,
    *,
    n_ctx: int = 512,
    chunks: int | None = None,
    n_threads: int | None = None,
    process_output: bool = False,
    dataset: str = "",
    progress: Callable[[int, int], None] | None = None,
) -> Imatrix:
    """Collect an importance matrix for the GGUF ``model`` over the calibration ``text``.

    ``n_ctx``: tokens per chunk (llama-imatrix's ``-c``); ``chunks``: at most this many chunks (default:
    all whole chunks of the text); ``process_output``: also collect ``output.weight``; ``dataset``: the name
    recorded in the file (``imatrix.datasets``); ``progress(done, total)`` is called after every chunk.
    The model runs on the CPU; the GIL is released while each chunk is evaluated, and Ctrl-C stops between
    chunks (KeyboardInterrupt).

    Raises ValueError when the text has fewer than ``2 * n_ctx`` tokens (saying how many it has and needs),
    or for a bad ``n_ctx`` / ``chunks``."""
    from .model import Model

    if not isinstance(n_ctx, int) or n_ctx < 16:
        raise ValueError(f"n_ctx must be an integer >= 16, got {n_ctx!r}")
    if chunks is not None and (not isinstance(chunks, int) or chunks < 1):
        raise ValueError(f"chunks must be a positive integer, got {chunks!r}")
    with Model(model, n_ctx=n_ctx, n_threads=n_threads) as m:
        tokens = m.tokenizer.encode(text)
        if len(tokens) < 2 * n_ctx:  # llama-imatrix's rule
            raise ValueError(
                f"the calibration text has {len(tokens)} tokens; at least {2 * n_ctx} (2 chunks of {n_ctx}) are "
                "needed"
            )
        n_chunk = len(tokens) // n_ctx if chunks is None else min(chunks, len(tokens) // n_ctx)
        bos = m.tokenizer.bos_id if m.tokenizer.add_bos else None
        collector = _C.ImatrixCollector(process_output)
        for i in range(n_chunk):
            chunk = np.array(tokens[i * n_ctx : (i + 1) * n_ctx], np.int32)
            if bos is not None:
                chunk[0] = bos
            with m._lock:
                m._check_open()
                _C.imatrix_eval(m._native, chunk, collector, process_output)
            if progress is not None:
                progress(i + 1, n_chunk)
        stats = collector.stats()
    entries = {
        name: ImatrixEntry(sums.reshape(1, -1), np.array([count], np.int64))
        for name, (sums, count) in stats.items()
    }
    return Imatrix(entries, [dataset] if dataset else [], n_chunk, n_ctx)
