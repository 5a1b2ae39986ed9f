"""Perplexity by llama.cpp's method (tools/perplexity), so figures compare one to one.

The whole text is tokenized once (with BOS when the model adds one); it is cut into non-overlapping
chunks of n_ctx tokens; when the model adds BOS, BOS replaces the first token of each chunk; each chunk is
evaluated in a fresh context and only its second half is scored (token j+1 from the logits at j, for j from
n_ctx/2 to n_ctx-2), so every scored token has at least n_ctx/2 tokens of context.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np

from .model import Model


@dataclass(frozen=True)
class Perplexity:
    ppl: float  #: exp(mean negative log-likelihood)
    error: float  #: llama.cpp's ± estimate (standard error of the mean NLL, times ppl)
    chunks: int
    scored_tokens: int


def chunk_nll(logits: np.ndarray, targets: np.ndarray) -> np.ndarray:
    """Negative log-likelihood of each target under the matching row of logits (float64 log-softmax)."""
    z = logits.astype(np.float64)
    z -= z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    return log_norm - z[np.arange(len(targets)), targets]


def perplexity(
    model: Model,
    text: str,
    n_ctx: int = 512,
    on_chunk: Callable[[int, float], None] | None = None,
    max_chunks: int | None = None,
) -> Perplexity:
    """Perplexity of ``text`` under ``model`` with chunks of ``n_ctx`` tokens.

    ``on_chunk(i, running_ppl)`` is called after each chunk; ``max_chunks`` scores only the first chunks
    (llama-perplexity's ``--chunks``). ValueError when the text has fewer than 2 * n_ctx tokens (llama.cpp's
    requirement).
    """
    if n_ctx < 8 or n_ctx > model.n_ctx:
        raise ValueError(f"n_ctx must be in [8, {model.n_ctx}] (the model's context), got {n_ctx}")
    if max_chunks is not None and (isinstance(max_chunks, bool) or not isinstance(max_chunks, int)):
        raise TypeError(f"max_chunks must be an int or None, got {max_chunks!r}")
    if max_chunks is not None and max_chunks < 1:
        raise ValueError(f"max_chunks must be >= 1, got {max_chunks}")
    tokens = np.asarray(model.tokenize(text, add_bos=None), np.int64)
    n_chunks = len(tokens) // n_ctx
    if n_chunks < 2:
        raise ValueError(
            f"the text has {len(tokens)} tokens; perplexity needs at least 2 * n_ctx = {2 * n_ctx}"
        )
    if max_chunks is not None:
        n_chunks = min(n_chunks, max_chunks)
    bos = model.tokenizer.bos_id if model.tokenizer.add_bos else None
    first = n_ctx // 2
    nll_sum = nll2_sum = 0.0
    count = 0
    for i, chunk in enumerate(_chunks(tokens, n_ctx, n_chunks)):
        inputs = chunk.copy()
        if bos is not None:
            inputs[0] = bos
        logits = model.logits(inputs)
        nll = chunk_nll(logits[first : n_ctx - 1], chunk[first + 1 : n_ctx])
        nll_sum += float(nll.sum())
        nll2_sum += float((nll * nll).sum())
        count += len(nll)
        if on_chunk is not None:
            on_chunk(i, math.exp(nll_sum / count))
    mean = nll_sum / count
    var = nll2_sum / count - mean * mean
    ppl = math.exp(mean)
    error = math.sqrt(var / (count - 1)) * ppl if var > 0 else 0.0
    return Perplexity(ppl=ppl, error=error, chunks=n_chunks, scored_tokens=count)


def _chunks(tokens: np.ndarray, n_ctx: int, n_chunks: int) -> Iterator[np.ndarray]:
    for i in range(n_chunks):
        yield tokens[i * n_ctx : (i + 1) * n_ctx]
