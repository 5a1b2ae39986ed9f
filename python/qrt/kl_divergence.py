"""KL divergence of a model's next-token distributions from a base model's, by llama-perplexity's method and in
its file format (``--kl-divergence-base FILE`` / ``--kl-divergence``), so two files are compared on the same
tokens, and a base saved by either tool serves both.

:func:`save_base` tokenizes the text as :mod:`qrt.perplexity` does (chunks of ``n_ctx``, BOS first, the second
half of each chunk scored) and writes ``"_logits_"``, ``uint32 n_ctx``, ``int32 n_vocab``, ``int32 n_chunk``,
the ``int32`` tokens, then for every scored position the base log-probabilities as ``float scale``,
``float min_log_prob`` and ``n_vocab`` uint16 codes (``log p = scale·code + min_log_prob``, 16 nats of range),
padded to ``2·⌈n_vocab/2⌉ + 4`` uint16s. :func:`compare` evaluates another model on those tokens.
"""

from __future__ import annotations

import math
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ._C import FormatError
from .model import Model

MAGIC = b"_logits_"


@dataclass(frozen=True)
class KLDivergence:
    ppl: float  #: perplexity of the model
    ppl_base: float  #: perplexity of the base model (from the saved log-probabilities)
    mean_kld: float  #: mean KL(base ‖ model) per scored token, nats
    kld_99: float  #: 99th percentile of the per-token KL
    same_top: float  #: fraction of tokens where both models' most likely token agree
    rms_dp: float  #: RMS of p(model) - p(base) of the actual next token
    tokens: int  #: scored tokens


def _row_words(n_vocab: int) -> int:
    return 2 * ((n_vocab + 1) // 2) + 4


def _encode(logits: np.ndarray) -> np.ndarray:
    """llama-perplexity's log_softmax(..., uint16_t*): rows of logits -> rows of _row_words uint16s."""
    n, n_vocab = logits.shape
    mx = logits.max(axis=1)
    mn = np.maximum(logits.min(axis=1), mx - 16)
    lse = np.log(np.exp(logits - mx[:, None]).sum(axis=1, dtype=np.float64)).astype(np.float32)
    min_log_prob = (mn - mx - lse).astype(np.float32)
    scale = ((mx - mn) / np.float32(65535)).astype(np.float32)
    out = np.zeros((n, _row_words(n_vocab)), np.uint16)
    out[:, :4] = np.stack([scale, min_log_prob], axis=1).view(np.uint16)
    inv = np.where(scale > 0, 1 / np.where(scale > 0, scale, 1), 0).astype(np.float32)
    codes = np.rint(inv[:, None] * (logits - mn[:, None]))
    out[:, 4 : 4 + n_vocab] = np.where(logits > mn[:, None], codes, 0).astype(np.uint16)
    return out


def _chunk_inputs(model: Model, chunk: np.ndarray) -> np.ndarray:
    inputs = chunk.copy()
    if model.tokenizer.add_bos and model.tokenizer.bos_id is not None:
        inputs[0] = model.tokenizer.bos_id
    return inputs


def save_base(
    model: Model,
    text: str,
    path: str | os.PathLike[str],
    n_ctx: int = 512,
    *,
    max_chunks: int | None = None,
    on_chunk: Callable[[int, int], None] | None = None,
) -> int:
    """Write the base model's log-probabilities over ``text`` to ``path`` (atomically); returns the chunks.

    ValueError when the text has fewer than ``2 * n_ctx`` tokens."""
    if n_ctx < 8 or n_ctx > model.n_ctx:
        raise ValueError(f"n_ctx must be in [8, {model.n_ctx}] (the model's context), got {n_ctx}")
    tokens = np.asarray(model.tokenize(text, add_bos=None), np.int32)
    n_chunk = len(tokens) // n_ctx
    if n_chunk < 2:
        raise ValueError(f"the text has {len(tokens)} tokens; at least 2 * n_ctx = {2 * n_ctx} are needed")
    if max_chunks is not None:
        n_chunk = min(n_chunk, max_chunks)
    first = n_ctx // 2
    path = os.fspath(path)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(MAGIC + struct.pack("<Iii", n_ctx, model.n_vocab, n_chunk))
            f.write(tokens[: n_chunk * n_ctx].astype("<i4").tobytes())
            for i in range(n_chunk):
                chunk = tokens[i * n_ctx : (i + 1) * n_ctx]
                logits = model.logits(_chunk_inputs(model, chunk))[first : n_ctx - 1]
                f.write(_encode(logits).astype("<u2").tobytes())
                if on_chunk is not None:
                    on_chunk(i + 1, n_chunk)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return n_chunk


def compare(
    model: Model, base_path: str | os.PathLike[str], *, on_chunk: Callable[[int, int], None] | None = None
) -> KLDivergence:
    """Evaluate ``model`` on the tokens of a base file and compare with the saved log-probabilities.

    FormatError for a file that is not one or is truncated; ValueError when the vocabularies differ or the
    file's chunks do not fit the model's context."""
    path = os.fspath(base_path)
    size = os.path.getsize(path)
    with open(path, "rb") as f:
        head = f.read(20)
        if len(head) < 20 or head[:8] != MAGIC:
            raise FormatError(f"{path}: not a log-probability file (llama-perplexity --kl-divergence-base)")
        n_ctx, n_vocab, n_chunk = struct.unpack("<Iii", head[8:])
        first, nv = n_ctx // 2, _row_words(max(n_vocab, 0))
        n_tok = n_ctx - 1 - first
        if (
            n_ctx < 8
            or n_vocab < 1
            or n_chunk < 1
            or size != 20 + 4 * n_chunk * n_ctx + 2 * n_chunk * n_tok * nv
        ):
            raise FormatError(
                f"{path}: header (n_ctx {n_ctx}, n_vocab {n_vocab}, n_chunk {n_chunk}) does not match the file "
                f"size {size} (truncated?)"
            )
        if n_vocab != model.n_vocab:
            raise ValueError(
                f"{path}: the base model has {n_vocab} tokens in its vocabulary, this one {model.n_vocab}"
            )
        if n_ctx > model.n_ctx:
            raise ValueError(
                f"{path}: chunks of {n_ctx} tokens do not fit the model's context of {model.n_ctx}"
            )
        tokens = np.frombuffer(f.read(4 * n_chunk * n_ctx), "<i4").astype(np.int32)
        if tokens.min() < 0 or tokens.max() >= n_vocab:
            raise FormatError(f"{path}: token ids outside [0, {n_vocab})")
        nll, nll_base, kld, same, dp = [], [], [], [], []
        for i in range(n_chunk):
            rows = np.frombuffer(f.read(2 * n_tok * nv), "<u2").reshape(n_tok, nv)
            head_f = rows[:, :4].copy().view(np.float32)
            base = head_f[:, :1] * rows[:, 4 : 4 + n_vocab].astype(np.float32) + head_f[:, 1:2]
            chunk = tokens[i * n_ctx : (i + 1) * n_ctx]
            z = model.logits(_chunk_inputs(model, chunk))[first : n_ctx - 1].astype(np.float64)
            logp = z - z.max(axis=1, keepdims=True)
            logp -= np.log(np.exp(logp).sum(axis=1, keepdims=True))
            target = chunk[first + 1 : n_ctx]
            r = np.arange(n_tok)
            nll.append(-logp[r, target])
            nll_base.append(-base[r, target].astype(np.float64))
            pb = np.where(base > -16, np.exp(base.astype(np.float64)), 0.0)
            kld.append((pb * (base - logp)).sum(axis=1))
            same.append(z.argmax(axis=1) == base.argmax(axis=1))
            dp.append(np.exp(-nll[-1]) - np.exp(-nll_base[-1]))
            if on_chunk is not None:
                on_chunk(i + 1, n_chunk)
    nll_a, kld_a, dp_a = np.concatenate(nll), np.concatenate(kld), np.concatenate(dp)
    return KLDivergence(
        ppl=math.exp(nll_a.mean()),
        ppl_base=math.exp(np.concatenate(nll_base).mean()),
        mean_kld=float(kld_a.mean()),
        kld_99=float(np.percentile(kld_a, 99)),
        same_top=float(np.concatenate(same).mean()),
        rms_dp=float(np.sqrt((dp_a**2).mean())),
        tokens=int(nll_a.size),
    )
