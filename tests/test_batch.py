"""Sequences of different lengths in one forward batch (qrt._C.Model.eval_batch) on SmolLM2.

Each token of a batch goes to its own sequence's paged cache and attends only to that sequence (causal
within it), so a mixed batch must give the logits of each sequence evaluated alone: prefill, decode with
one token per sequence, freeing a sequence and reusing its blocks, batches split by n_batch, and bad
inputs (nothing appended to any sequence when a call is refused).
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import qrt

Model = qrt._C.Model
N_THREADS = 2
N_VOCAB = 49152
N_CTX = 64
# Relative to the logit scale: the same row dot products and cache contents give bit-identical logits today;
# this leaves room for batched kernels.
REL_TOL = 1e-4


@pytest.fixture(scope="module")
def smol(smollm2_path: pathlib.Path) -> Model:
    return Model(str(smollm2_path), n_ctx=N_CTX, n_threads=N_THREADS, n_seq_max=3)


def random_ids(n: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, N_VOCAB, n, dtype=np.int32)


def assert_close(got: np.ndarray, want: np.ndarray, what: str = "") -> None:
    assert got.shape == want.shape, what
    tol = REL_TOL * float(np.abs(want).max())
    err = float(np.abs(got - want).max())
    assert err <= tol, f"{what}: max abs diff {err} > {tol}"


def clear_all(m: Model) -> None:
    for s in range(m.n_seq_max):
        m.clear(s)


def contiguous(*seqs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(ids, seq_ids) with sequence i's tokens contiguous, sequence ids 0, 1, ..."""
    ids = np.concatenate(seqs)
    seq_ids = np.concatenate([np.full(len(s), i, dtype=np.int32) for i, s in enumerate(seqs)])
    return ids, seq_ids


def test_prefill_together_equals_each_alone(smol: Model) -> None:
    # lengths cross the 16-token block boundaries differently
    seqs = [random_ids(23, 1), random_ids(9, 2), random_ids(40, 3)]
    alone = [smol.logits(s) for s in seqs]
    clear_all(smol)

    ids, seq_ids = contiguous(*seqs)
    out = smol.eval_batch(ids, seq_ids, all_logits=True)
    assert out.dtype == np.float32 and out.shape == (len(ids), N_VOCAB)
    assert [smol.seq_len(s) for s in range(3)] == [23, 9, 40]
    clear_all(smol)
    for i in range(3):
        assert_close(out[seq_ids == i], alone[i], f"sequence {i}")

    # default: the last token of each sequence, in the order of those last tokens
    last = smol.eval_batch(ids, seq_ids)
    clear_all(smol)
    assert last.shape == (3, N_VOCAB)
    for i in range(3):
        assert_close(last[i], alone[i][-1], f"last of sequence {i}")

    # interleaved (round robin while a sequence lasts), sequence ids in another order
    order = sorted(
        ((j, i) for i, s in enumerate(seqs) for j in range(len(s))), key=lambda p: (p[0], (p[1] + 1) % 3)
    )
    ids = np.array([seqs[i][j] for j, i in order], dtype=np.int32)
    seq_ids = np.array([i for _, i in order], dtype=np.int32)
    out = smol.eval_batch(ids, seq_ids.tolist(), all_logits=True)  # any integer sequence
    clear_all(smol)
    for i in range(3):
        assert_close(out[seq_ids == i], alone[i], f"interleaved sequence {i}")


def test_decode_one_token_per_sequence(smol: Model) -> None:
    seqs = [random_ids(30, 4), random_ids(5, 5), random_ids(17, 6)]
    steps = 4
    alone = [smol.logits(s) for s in seqs]
    clear_all(smol)

    n_prompt = [len(s) - steps for s in seqs]
    last = smol.eval_batch(*contiguous(*[s[:n] for s, n in zip(seqs, n_prompt, strict=True)]))
    for i in range(3):
        assert_close(last[i], alone[i][n_prompt[i] - 1], f"prefill {i}")
    for k in range(steps):
        seq_ids = np.array([2, 0, 1], dtype=np.int32)  # rows come back in this order
        ids = np.array([seqs[i][n_prompt[i] + k] for i in seq_ids], dtype=np.int32)
        out = smol.eval_batch(ids, seq_ids)
        assert out.shape == (3, N_VOCAB)
        for row, i in enumerate(seq_ids):
            assert_close(out[row], alone[i][n_prompt[i] + k], f"step {k} sequence {i}")
    assert [smol.seq_len(s) for s in range(3)] == [len(s) for s in seqs]
    clear_all(smol)

    # batched decode == single-sequence decode through eval()
    for i, s in enumerate(seqs):
        smol.eval(s[: n_prompt[i]], seq_id=i)
    single = [
        [smol.eval(s[n_prompt[i] + k : n_prompt[i] + k + 1], seq_id=i) for k in range(steps)]
        for i, s in enumerate(seqs)
    ]
    clear_all(smol)
    for i in range(3):
        assert_close(np.stack(single[i]), alone[i][n_prompt[i] :], f"eval decode {i}")


def test_free_one_sequence_and_reuse_its_blocks(smol: Model) -> None:
    a, b, c, d = random_ids(40, 7), random_ids(35, 8), random_ids(21, 9), random_ids(33, 10)
    alone = {k: smol.logits(v) for k, v in {"a": a, "b": b, "c": c, "d": d}.items()}
    clear_all(smol)

    smol.eval_batch(*contiguous(a[:30], b[:25], c[:20]))
    smol.clear(1)  # b ends: its blocks go back to the pool
    assert smol.seq_len(1) == 0
    # d takes sequence 1 (and b's blocks) in the same batch as a and c continue
    ids = np.concatenate([a[30:], d, c[20:]])
    seq_ids = np.concatenate([np.full(10, 0), np.full(33, 1), np.full(1, 2)]).astype(np.int32)
    out = smol.eval_batch(ids, seq_ids, all_logits=True)
    assert [smol.seq_len(s) for s in range(3)] == [40, 33, 21]
    clear_all(smol)
    assert_close(out[seq_ids == 0], alone["a"][30:], "a")
    assert_close(out[seq_ids == 1], alone["d"], "d")
    assert_close(out[seq_ids == 2], alone["c"][20:], "c")


def test_small_n_batch_splits_the_batch(smollm2_path: pathlib.Path, smol: Model) -> None:
    seqs = [random_ids(19, 11), random_ids(6, 12), random_ids(26, 13)]
    alone = [smol.logits(s) for s in seqs]
    m = Model(str(smollm2_path), n_ctx=N_CTX, n_threads=N_THREADS, n_seq_max=3, n_batch=8)
    ids, seq_ids = contiguous(*seqs)
    order = np.random.default_rng(14).permutation(len(ids))
    # shuffle, then restore each sequence's own order: sequences interleave across the 8-token calls
    for i in range(3):
        at = np.nonzero(seq_ids[order] == i)[0]
        order[at] = np.sort(order[at])
    ids, seq_ids = ids[order], seq_ids[order]
    out = m.eval_batch(ids, seq_ids, all_logits=True)
    for i in range(3):
        m.clear(i)
    for i in range(3):
        assert_close(out[seq_ids == i], alone[i], f"sequence {i}")
    last = m.eval_batch(ids, seq_ids)
    ends = sorted(range(3), key=lambda i: int(np.nonzero(seq_ids == i)[0][-1]))
    for row, i in enumerate(ends):
        assert_close(last[row], alone[i][-1], f"last of sequence {i}")


def test_bad_inputs(smol: Model) -> None:
    clear_all(smol)
    smol.eval(random_ids(50, 15), seq_id=0)
    smol.eval(random_ids(10, 16), seq_id=2)
    before = [smol.seq_len(s) for s in range(3)]

    for bad in (-1, 3):
        with pytest.raises(ValueError, match="sequence id"):
            smol.eval_batch([1, 2], [1, bad])
    with pytest.raises(ValueError, match="sequence id"):
        smol.eval_batch([1], np.array([2**64 - 1], dtype=np.uint64))
    with pytest.raises(ValueError, match="out of range"):
        smol.eval_batch([1, N_VOCAB], [1, 1])
    with pytest.raises(ValueError, match="got 2 tokens but 1 sequence ids"):
        smol.eval_batch([1, 2], [1])
    with pytest.raises(ValueError, match="no tokens"):
        smol.eval_batch([], [])
    with pytest.raises(TypeError, match="integers"):
        smol.eval_batch([1], [1.0])
    with pytest.raises(ValueError, match="1-D"):
        smol.eval_batch([1, 2], [[1, 1]])
    # sequence 0 holds 50: 15 more overflow the 64-token context, and nothing goes to 1 or 2 either
    ids, seq_ids = contiguous(random_ids(3, 17), random_ids(15, 18))
    seq_ids = np.where(seq_ids == 0, 1, 0).astype(np.int32)
    with pytest.raises(
        ValueError, match=r"prompt has 15 tokens, context is 64 \(sequence 0 already holds 50\)"
    ):
        smol.eval_batch(np.concatenate([ids, [5]]), np.concatenate([seq_ids, [2]]))
    with pytest.raises(ValueError, match="prompt has 65 tokens, context is 64"):
        smol.eval_batch(random_ids(65, 19), np.ones(65, dtype=np.int32))
    assert [smol.seq_len(s) for s in range(3)] == before
    # exactly full is fine
    out = smol.eval_batch(random_ids(16, 20), np.array([0] * 14 + [1, 2], dtype=np.int32))
    assert out.shape == (3, N_VOCAB)
    assert [smol.seq_len(s) for s in range(3)] == [64, 1, 11]
    clear_all(smol)
