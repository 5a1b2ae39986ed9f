"""qrt._C.Sampler and StopMatcher.

References: hand-computed values, and ``ref_candidates`` / ``ref_draw`` below, a numpy transcription of
llama.cpp's chain (FORMATS.md §7.1: penalties -> top_k -> top_p -> min_p -> temperature -> dist) written
from the spec, not from qrt's code. The draw uses MT19937 words from numpy and libstdc++'s
``generate_canonical<double, 53>`` (two 32-bit words: (a + b * 2**32) / 2**64). When the llama.cpp
build is available, the same seeds are also run through libllama.so's own sampler chain (ctypes).
"""

from __future__ import annotations

import collections
import ctypes
import math
import threading
import time

import numpy as np
import pytest

from qrt import _C

Sampler = _C.Sampler
StopMatcher = _C.StopMatcher

OFF = {"top_k": 0, "top_p": 1.0, "min_p": 0.0}  # every filter off


def random_logits(n: int, seed: int, scale: float = 3.0) -> np.ndarray:
    return (np.random.default_rng(seed).standard_normal(n) * scale).astype(np.float32)


# ---- an independent reference of llama.cpp's chain ----


def ref_penalize(
    logits: np.ndarray, history: list[int], repeat: float, freq: float, present: float, last_n: int
) -> np.ndarray:
    x = logits.astype(np.float32).copy()
    if last_n == 0 or (repeat == 1.0 and freq == 0.0 and present == 0.0):
        return x
    rep, fr, pr = np.float32(repeat), np.float32(freq), np.float32(present)
    for tok, count in collections.Counter(history[-last_n:]).items():
        v = x[tok] * rep if x[tok] <= 0 else x[tok] / rep
        x[tok] = v - (np.float32(count) * fr + np.float32(1) * pr)
    return x


def sort_desc(ids: np.ndarray, x: np.ndarray) -> np.ndarray:
    """ids ordered by descending logit, lower id first on ties."""
    return ids[np.lexsort((ids, -x[ids]))]


def ref_candidates(
    logits: np.ndarray,
    *,
    temperature: float = 0.8,
    top_k: int = 40,
    top_p: float = 0.95,
    min_p: float = 0.05,
    repeat_penalty: float = 1.0,
    frequency_penalty: float = 0.0,
    presence_penalty: float = 0.0,
    penalty_last_n: int = 64,
    history: list[int] | None = None,
) -> tuple[np.ndarray, np.ndarray]:
    """(ids, logits after temperature) in the order llama.cpp's dist walks them."""
    x = ref_penalize(
        logits, history or [], repeat_penalty, frequency_penalty, presence_penalty, penalty_last_n
    )
    ids = np.arange(len(x))
    if temperature <= 0:
        best = int(np.argmax(x))
        return np.array([best]), x[[best]]
    is_sorted = False
    if top_k > 0:
        ids = sort_desc(ids, x)[:top_k]
        is_sorted = True
    if top_p < 1.0:
        v = x[ids]
        e = np.exp((v - v.max()).astype(np.float64)).astype(np.float32)
        total = np.cumsum(e, dtype=np.float32)[-1]  # float, summed in the current order
        if not is_sorted:
            ids = sort_desc(ids, x)
            is_sorted = True
        p = (np.exp((x[ids] - x[ids].max()).astype(np.float64)).astype(np.float32) / total).astype(np.float32)
        cum = np.cumsum(p, dtype=np.float32)
        hit = np.nonzero(cum >= np.float32(top_p))[0]
        ids = ids[: hit[0] + 1] if len(hit) else ids
    if min_p > 0.0:
        threshold = x[ids].max() + np.float32(math.log(np.float32(min_p)))
        ids = ids[x[ids] >= np.float32(threshold)]
    return ids, (x[ids] / np.float32(temperature)).astype(np.float32)


class RefRng:
    """std::mt19937 + std::uniform_real_distribution<double>(0, 1) as libstdc++ computes it."""

    def __init__(self, seed: int) -> None:
        self.bits = np.random.MT19937(0)
        self.bits._legacy_seeding(seed)  # init_genrand(seed), the std::mt19937(seed) seeding

    def uniform(self) -> float:
        a, b = (float(w) for w in self.bits.random_raw(2))
        u = (a + b * 2.0**32) / 2.0**64
        return u if u < 1.0 else math.nextafter(1.0, 0.0)


def ref_draw(ids: np.ndarray, values: np.ndarray, rng: RefRng) -> int:
    """llama_sampler_dist_apply: float exps, double sum, first running sum >= u * sum."""
    u = rng.uniform()
    if len(ids) == 1:
        return int(ids[0])
    p = np.exp((values - values.max()).astype(np.float64)).astype(np.float32).astype(np.float64)
    cum = np.cumsum(p)
    i = int(np.searchsorted(cum, cum[-1] * u, side="left"))
    return int(ids[min(i, len(ids) - 1)])


# ---- the steps ----


def test_greedy_is_argmax() -> None:
    s = Sampler(49152, temperature=0.0)
    for seed in range(5):
        x = random_logits(49152, seed)
        assert s.sample(x) == int(np.argmax(x))
    ties = np.array([0.0, 2.0, 1.0, 2.0], np.float32)
    assert s.n_vocab == 49152
    assert Sampler(4, temperature=0).sample(ties) == 1  # lowest id on ties
    ids, _ = Sampler(4, temperature=0).candidates(ties)
    assert ids.tolist() == [1]


def test_greedy_sees_penalties() -> None:
    s = Sampler(5, temperature=0.0, repeat_penalty=4.0)
    x = np.array([1.0, 3.0, 2.0, 0.0, -1.0], np.float32)
    assert s.sample(x) == 1
    s.accept(1)  # 3 / 4 = 0.75 < 2
    assert s.sample(x) == 2


@pytest.mark.parametrize("k", [1, 2, 40, 128, 129, 1000, 4999, 5000, 7000])
def test_top_k_keeps_exactly_k(k: int) -> None:
    x = random_logits(5000, 1)
    ids, vals = Sampler(5000, temperature=1.0, top_k=k, top_p=1.0, min_p=0.0).candidates(x)
    want = np.argsort(-x, kind="stable")[: min(k, 5000)]
    assert ids.tolist() == want.tolist()
    np.testing.assert_array_equal(vals, x[want])


def test_top_p_hand_example() -> None:
    # probabilities 0.5, 0.3, 0.15, 0.05 at ids 2, 0, 3, 1
    x = np.log(np.array([0.3, 0.05, 0.5, 0.15], np.float32))
    kept = {
        p: Sampler(4, temperature=1, top_k=0, min_p=0, top_p=p).candidates(x)[0].tolist()
        for p in (0.4, 0.75, 0.9, 0.99)
    }
    assert kept == {0.4: [2], 0.75: [2, 0], 0.9: [2, 0, 3], 0.99: [2, 0, 3, 1]}
    assert Sampler(4, temperature=1, **OFF).candidates(x)[0].tolist() == [0, 1, 2, 3]  # top_p 1: no-op


@pytest.mark.parametrize("scale", [0.05, 1.0, 4.0])
@pytest.mark.parametrize("p", [0.1, 0.5, 0.9, 0.95, 0.999])
def test_top_p_smallest_prefix(scale: float, p: float) -> None:
    x = random_logits(30000, 2, scale)
    ids, _ = Sampler(30000, temperature=1.0, top_k=0, min_p=0.0, top_p=p).candidates(x)
    probs = np.exp(x.astype(np.float64) - x.max())
    probs /= probs.sum()
    order = np.lexsort((np.arange(len(x)), -x))
    assert ids.tolist() == order[: len(ids)].tolist()  # a sorted prefix
    mass = probs[ids].sum()
    assert mass >= p - 1e-4  # reaches p (llama.cpp sums in float: allow its rounding)
    assert mass - probs[ids[-1]] < p + 1e-4  # one token fewer does not


def test_min_p_threshold() -> None:
    # max logit 2; min_p 0.1 keeps logit >= 2 + ln 0.1 = -0.3026 (prob >= 0.1 * max prob)
    x = np.array([-0.3, 2.0, -0.31, 1.0, -5.0], np.float32)
    ids, _ = Sampler(5, temperature=1.0, top_k=0, top_p=1.0, min_p=0.1).candidates(x)
    assert ids.tolist() == [0, 1, 3]  # unsorted input keeps vocabulary order
    ids, _ = Sampler(5, temperature=1.0, top_k=5, top_p=1.0, min_p=0.1).candidates(x)
    assert ids.tolist() == [1, 3, 0]  # after top_k: sorted
    ids, _ = Sampler(5, temperature=1.0, top_k=0, top_p=1.0, min_p=1.0).candidates(x)
    assert ids.tolist() == [1]


def test_temperature_is_applied_last() -> None:
    # raw probabilities 0.6, 0.3, 0.1: top_p 0.85 keeps two. Dividing by T=3 first would flatten them to
    # 0.43, 0.34, 0.23 and top_p would then need all three (HF's order).
    x = np.log(np.array([0.6, 0.3, 0.1], np.float32))
    ids, vals = Sampler(3, temperature=3.0, top_k=0, top_p=0.85, min_p=0.0).candidates(x)
    assert ids.tolist() == [0, 1]
    np.testing.assert_array_equal(vals, x[:2] / np.float32(3.0))
    # min_p too: at T=1 ln(0.1/0.6) = -1.79 < ln 0.2 = -1.61 cuts token 2; at T=3 it would survive
    ids, _ = Sampler(3, temperature=3.0, top_k=0, top_p=1.0, min_p=0.2).candidates(x)
    assert ids.tolist() == [0, 1]
    hf_order = np.exp(x / 3) / np.exp(x / 3).sum()
    assert hf_order[2] >= 0.2 * hf_order[0]  # the case really distinguishes the two orders


def test_penalties_hand_example() -> None:
    s = Sampler(
        6,
        temperature=1.0,
        **OFF,
        repeat_penalty=2.0,
        frequency_penalty=0.5,
        presence_penalty=0.25,
        penalty_last_n=4,
    )
    x = np.array([3.0, -1.0, 0.0, 2.0, 1.0, 5.0], np.float32)
    s.accept_many([5, 5, 0, 1, 1, 3])  # only the last 4 (0 1 1 3) count; the 5s fell out of the window
    assert s.history_size == 4
    ids, vals = s.candidates(x)
    got = dict(zip(ids.tolist(), vals.tolist(), strict=True))
    # positive divided, negative multiplied, then count * 0.5 + 0.25 subtracted
    assert got == {0: 3 / 2 - 0.75, 1: -1 * 2 - 1.25, 2: 0.0, 3: 2 / 2 - 0.75, 4: 1.0, 5: 5.0}
    s.reset()
    assert s.history_size == 0
    np.testing.assert_array_equal(s.candidates(x)[1], x)


def test_penalty_last_n_zero_disables() -> None:
    s = Sampler(3, temperature=1.0, **OFF, repeat_penalty=5.0, penalty_last_n=0)
    s.accept_many([0, 1, 2])
    x = np.array([1.0, 2.0, 3.0], np.float32)
    np.testing.assert_array_equal(s.candidates(x)[1], x)


CONFIGS = [
    {},  # llama.cpp defaults
    {"temperature": 1.3, "top_k": 0},
    {"temperature": 0.5, "top_k": 0, "top_p": 1.0},
    {"temperature": 0.7, "top_k": 200, "top_p": 0.8, "min_p": 0.0},
    {"temperature": 1.0, "top_k": 0, "top_p": 1.0, "min_p": 0.0},
    {"temperature": 1.0, "top_k": 0, "top_p": 0.9, "min_p": 0.0},
    {
        "temperature": 0.9,
        "repeat_penalty": 1.3,
        "frequency_penalty": 0.2,
        "presence_penalty": 0.4,
        "penalty_last_n": 16,
    },
    {"temperature": 1.1, "top_k": 5000, "top_p": 0.99, "min_p": 0.01, "repeat_penalty": 0.8},
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_chain_matches_reference(cfg: dict) -> None:
    """Candidates and seeded draws over many steps equal the numpy reference of llama.cpp's chain."""
    n = 4096
    s = Sampler(n, seed=77, **cfg)
    rng = RefRng(77)
    history = [int(t) for t in np.random.default_rng(0).integers(0, n, 50)]
    s.accept_many(history)
    for step in range(40):
        x = random_logits(n, 100 + step, scale=2.0)
        x[history[-1]] += 4.0  # penalized tokens near the top
        ids, vals = s.candidates(x)
        want_ids, want_vals = ref_candidates(x, history=history, **cfg)
        assert ids.tolist() == want_ids.tolist(), f"step {step}"
        np.testing.assert_array_equal(vals, want_vals)
        tok = s.sample(x)
        assert tok == ref_draw(want_ids, want_vals, rng), f"step {step}"
        s.accept(tok)
        history.append(tok)


def test_same_seed_same_tokens_different_seeds_differ() -> None:
    x = random_logits(49152, 3, scale=2.0)

    def run(seed: int | None, n: int = 64, sampler: Sampler | None = None) -> list[int]:
        s = sampler or Sampler(49152, seed=seed, top_k=0, min_p=0.0)
        out = []
        for _ in range(n):
            t = s.sample(x)
            s.accept(t)
            out.append(t)
        return out

    a = run(1234)
    assert run(1234) == a
    assert run(1235) != a
    assert run(0) != run(2**32 - 1)
    s = Sampler(49152, seed=None, top_k=0, min_p=0.0)
    first = run(None, sampler=s)
    assert run(s.seed) == first  # a random seed is reported and replays
    s.reset()
    assert s.history_size == 0


def test_reset_replays_the_seeded_stream() -> None:
    x = random_logits(1000, 4)
    s = Sampler(1000, seed=9, top_k=0, min_p=0.0, repeat_penalty=1.5)
    seq = []
    for _ in range(20):
        seq.append(s.sample(x))
        s.accept(seq[-1])
    s.reset()
    again = []
    for _ in range(20):
        again.append(s.sample(x))
        s.accept(again[-1])
    assert again == seq


# chi-square critical values at p = 0.001 (scipy.stats.chi2.ppf(0.999, dof))
CHI2_999 = {5: 20.515, 7: 24.322}


@pytest.mark.parametrize("temperature", [0.5, 1.0, 1.7])
def test_empirical_distribution(temperature: float) -> None:
    x = np.array([1.0, 0.5, -0.5, 0.0, 1.5, -2.0, 0.25, -1.0], np.float32)
    s = Sampler(len(x), temperature=temperature, seed=2024, **OFF)
    n = 20000
    counts = np.bincount([s.sample(x) for _ in range(n)], minlength=len(x))
    p = np.exp(x.astype(np.float64) / temperature)
    expected = n * p / p.sum()
    assert expected.min() > 5  # the chi-square approximation holds
    chi2 = ((counts - expected) ** 2 / expected).sum()
    assert chi2 < CHI2_999[len(x) - 1], (counts, expected)


def test_empirical_distribution_after_filters() -> None:
    """Defaults on a 6-token vocabulary: the draw follows softmax(l / T) over min-p's survivors."""
    x = np.array([2.0, 1.8, 1.0, -3.0, 0.5, -4.0], np.float32)  # min_p 0.05 cuts ids 3 and 5
    s = Sampler(len(x), seed=5)
    ids, _ = s.candidates(x)
    assert sorted(ids.tolist()) == [0, 1, 2, 4]
    n = 20000
    counts = np.bincount([s.sample(x) for _ in range(n)], minlength=len(x))
    assert counts[3] == counts[5] == 0
    p = np.exp(x[[0, 1, 2, 4]].astype(np.float64) / 0.8)
    expected = n * p / p.sum()
    chi2 = ((counts[[0, 1, 2, 4]] - expected) ** 2 / expected).sum()
    assert chi2 < 16.27  # 3 dof, p = 0.001


# ---- errors ----


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"top_p": 0.0}, "top_p"),
        ({"top_p": -0.5}, "top_p"),
        ({"top_p": 1.0000001}, "top_p"),
        ({"top_p": float("nan")}, "top_p"),
        ({"temperature": -0.01}, "temperature"),
        ({"temperature": float("nan")}, "temperature"),
        ({"temperature": float("inf")}, "temperature"),
        ({"top_k": -1}, "top_k"),
        ({"min_p": -1e-9}, "min_p"),
        ({"min_p": 1.0000001}, "min_p"),
        ({"min_p": float("nan")}, "min_p"),
        ({"repeat_penalty": 0.0}, "repeat_penalty"),
        ({"repeat_penalty": -1.0}, "repeat_penalty"),
        ({"frequency_penalty": float("inf")}, "frequency_penalty"),
        ({"frequency_penalty": 1e300}, "frequency_penalty"),  # overflows float
        ({"presence_penalty": float("nan")}, "presence_penalty"),
        ({"penalty_last_n": -1}, "penalty_last_n"),
        ({"penalty_last_n": 2**20 + 1}, "penalty_last_n"),
        ({"seed": -1}, "seed"),
        ({"seed": 2**32}, "seed"),
        ({"seed": 2**70}, "seed"),
    ],
)
def test_invalid_arguments_raise_value_error(kwargs: dict, name: str) -> None:
    with pytest.raises(ValueError, match=name):
        Sampler(100, **kwargs)


def test_valid_edges() -> None:
    Sampler(100, top_p=1.0, min_p=0.0, temperature=0.0, top_k=0, seed=0)
    Sampler(100, min_p=1.0, seed=2**32 - 1, top_k=2**40)  # top_k above the vocabulary: keep all
    with pytest.raises(ValueError, match="n_vocab"):
        Sampler(0)
    with pytest.raises(TypeError):
        Sampler(10, seed="1")
    with pytest.raises(TypeError):
        Sampler(10, seed=1.0)
    with pytest.raises(TypeError):
        Sampler(10, 0.5)  # options are keyword-only


def test_nan_logits_raise_runtime_error() -> None:
    for temperature in (0.0, 0.8):
        s = Sampler(1000, temperature=temperature)
        x = random_logits(1000, 5)
        x[123] = np.nan
        with pytest.raises(RuntimeError, match="NaN"):
            s.sample(x)
        x[123] = np.inf
        with pytest.raises(RuntimeError, match=r"\+inf"):
            s.sample(x)
        with pytest.raises(RuntimeError, match="-inf"):
            s.sample(np.full(1000, -np.inf, np.float32))
        x[123] = -np.inf  # a masked token is fine
        assert s.sample(x) != 123


def test_bad_shapes_and_tokens() -> None:
    s = Sampler(10)
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        s.sample(np.zeros(11, np.float32))
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        s.sample(np.zeros((1, 10), np.float32))
    for bad in (-1, 10, 2**40):
        with pytest.raises(ValueError, match="outside"):
            s.accept(bad)
    with pytest.raises(ValueError, match="outside"):
        s.accept_many([1, 2, 10])
    assert s.history_size == 0  # all or nothing
    with pytest.raises(ValueError, match="outside"):
        s.set_suppressed([10])


def test_suppressed_tokens_are_never_sampled() -> None:
    x = np.array([0.0, 9.0, 1.0, 10.0], np.float32)
    s = Sampler(4, temperature=1.5, seed=3, **OFF)
    s.set_suppressed([3, 1])  # e.g. EOS/EOT for ignore_eos
    assert {s.sample(x) for _ in range(200)} == {0, 2}
    assert Sampler(4, temperature=0).sample(x) == 3
    g = Sampler(4, temperature=0)
    g.set_suppressed([3])
    assert g.sample(x) == 1
    g.set_suppressed([])
    assert g.sample(x) == 3


def test_params_and_threads() -> None:
    s = Sampler(32000, seed=7)
    assert s.params == {
        "temperature": pytest.approx(0.8),
        "top_k": 40,
        "top_p": pytest.approx(0.95),
        "min_p": pytest.approx(0.05),
        "repeat_penalty": 1.0,
        "frequency_penalty": 0.0,
        "presence_penalty": 0.0,
        "penalty_last_n": 64,
        "seed": 7,
    }
    assert s.n_vocab == 32000 and s.seed == 7
    x = random_logits(32000, 8)
    want = [Sampler(32000, seed=i).sample(x) for i in range(8)]
    got: list[int | None] = [None] * 8

    def work(i: int) -> None:
        got[i] = Sampler(32000, seed=i).sample(x)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert got == want


def test_sampling_is_fast() -> None:
    """Defaults on a 49152-token vocabulary: well under a millisecond per token (a loose bound)."""
    s = Sampler(49152, seed=1)
    x = random_logits(49152, 9)
    s.sample(x)
    t0 = time.perf_counter()
    for _ in range(200):
        s.sample(x)
    assert (time.perf_counter() - t0) / 200 < 2e-3


# ---- llama.cpp itself (libllama.so from the oracle build) ----


class TokenData(ctypes.Structure):
    _fields_ = [("id", ctypes.c_int32), ("logit", ctypes.c_float), ("p", ctypes.c_float)]


class TokenDataArray(ctypes.Structure):
    _fields_ = [
        ("data", ctypes.POINTER(TokenData)),
        ("size", ctypes.c_size_t),
        ("selected", ctypes.c_int64),
        ("sorted", ctypes.c_bool),
    ]


class LlamaChain:
    """common/sampling.cpp's chain: penalties, top_k, top_p, min_p, temp_ext, dist (min_keep 0)."""

    def __init__(self, lib: ctypes.CDLL, n_vocab: int, cfg: dict, seed: int) -> None:
        p = ctypes.c_void_p
        lib.llama_sampler_chain_init.argtypes = [ctypes.c_bool]  # struct { bool no_perf; } by value
        lib.llama_sampler_chain_init.restype = p
        lib.llama_sampler_chain_add.argtypes = [p, p]
        lib.llama_sampler_init_penalties.argtypes = [ctypes.c_int32, ctypes.c_int32] + [ctypes.c_float] * 3
        lib.llama_sampler_init_top_k.argtypes = [ctypes.c_int32]
        lib.llama_sampler_init_top_p.argtypes = [ctypes.c_float, ctypes.c_size_t]
        lib.llama_sampler_init_min_p.argtypes = [ctypes.c_float, ctypes.c_size_t]
        lib.llama_sampler_init_temp_ext.argtypes = [ctypes.c_float] * 3
        lib.llama_sampler_init_dist.argtypes = [ctypes.c_uint32]
        for f in ("penalties", "top_k", "top_p", "min_p", "temp_ext", "dist"):
            getattr(lib, f"llama_sampler_init_{f}").restype = p
        lib.llama_sampler_apply.argtypes = [p, ctypes.POINTER(TokenDataArray)]
        lib.llama_sampler_accept.argtypes = [p, ctypes.c_int32]
        lib.llama_sampler_free.argtypes = [p]
        c = {
            "temperature": 0.8,
            "top_k": 40,
            "top_p": 0.95,
            "min_p": 0.05,
            "repeat_penalty": 1.0,
            "frequency_penalty": 0.0,
            "presence_penalty": 0.0,
            "penalty_last_n": 64,
        } | cfg
        self.lib = lib
        self.chain = lib.llama_sampler_chain_init(True)
        for s in (
            lib.llama_sampler_init_penalties(
                n_vocab,
                c["penalty_last_n"],
                c["repeat_penalty"],
                c["frequency_penalty"],
                c["presence_penalty"],
            ),
            lib.llama_sampler_init_top_k(c["top_k"]),
            lib.llama_sampler_init_top_p(c["top_p"], 0),
            lib.llama_sampler_init_min_p(c["min_p"], 0),
            lib.llama_sampler_init_temp_ext(c["temperature"], 0.0, 1.0),
            lib.llama_sampler_init_dist(seed),
        ):
            lib.llama_sampler_chain_add(self.chain, s)
        self.buf = (TokenData * n_vocab)()

    def sample(self, logits: np.ndarray) -> int:
        for i, v in enumerate(logits.tolist()):
            self.buf[i].id, self.buf[i].logit, self.buf[i].p = i, v, 0.0
        arr = TokenDataArray(self.buf, len(logits), -1, False)
        self.lib.llama_sampler_apply(self.chain, ctypes.byref(arr))
        return int(arr.data[arr.selected].id)

    def accept(self, token: int) -> None:
        self.lib.llama_sampler_accept(self.chain, token)

    def __del__(self) -> None:
        self.lib.llama_sampler_free(self.chain)


@pytest.fixture(scope="module")
def libllama(llamacpp) -> ctypes.CDLL:
    path = llamacpp.bin_dir / "libllama.so"
    if not path.is_file():
        pytest.skip(f"{path} not built")
    return ctypes.CDLL(str(path))


@pytest.mark.parametrize("cfg", CONFIGS, ids=[str(i) for i in range(len(CONFIGS))])
def test_same_tokens_as_llamacpp(libllama: ctypes.CDLL, cfg: dict) -> None:
    """Seeded runs pick the same tokens as llama.cpp's own sampler chain (same libstdc++)."""
    n = 4096
    for seed in (1, 4242):
        ours = Sampler(n, seed=seed, **cfg)
        theirs = LlamaChain(libllama, n, cfg, seed)
        prompt = [int(t) for t in np.random.default_rng(seed).integers(0, n, 30)]
        ours.accept_many(prompt)
        for t in prompt:
            theirs.accept(t)
        for step in range(30):
            x = random_logits(n, 1000 * seed + step, scale=2.0)
            x[prompt[-1]] += 3.0
            tok = ours.sample(x)
            assert tok == theirs.sample(x), f"seed {seed} step {step}"
            ours.accept(tok)
            theirs.accept(tok)
            prompt.append(tok)


# ---- StopMatcher ----


def feed(m: StopMatcher, pieces: list[bytes]) -> bytes:
    out = b"".join(m.push(p) for p in pieces)
    return out if m.stopped else out + m.flush()


def test_stop_split_across_pieces() -> None:
    m = StopMatcher(["###"])
    assert m.push(b"Hello #") == b"Hello "
    assert m.push(b"#") == b""
    assert m.held == b"##"
    assert m.push(b"# and more") == b""
    assert m.stopped and m.stop_index == 0
    assert m.push(b"after") == b"" and m.flush() == b""
    m = StopMatcher(["###"])
    assert feed(m, [b"a #", b"# b"]) == b"a ## b" and not m.stopped and m.stop_index is None


def test_stop_inside_multibyte_character() -> None:
    stop = "é!"  # C3 A9 21
    enc = "café!x".encode()
    pieces = [enc[:4], enc[4:5], enc[5:6], enc[6:]]  # "caf", C3, A9, "!x"
    assert feed(StopMatcher([stop]), pieces) == b"caf"
    assert feed(StopMatcher(["\u00e9"]), [b"caf", b"\xc3", b"\xa9"]) == b"caf"
    m = StopMatcher([stop])
    assert m.push(b"caf\xc3") == b"caf"  # a lone lead byte is held
    assert feed(m, [b"\xa9?"]) == "é?".encode()
    emoji = "🙂 done".encode()  # a 4-byte character split byte by byte
    assert feed(StopMatcher(["🙂"]), [b"ok ", *[bytes([b]) for b in emoji]]) == b"ok "


def test_stop_overlapping_prefixes() -> None:
    assert feed(StopMatcher(["aab"]), [b"a", b"a", b"a", b"b", b"c"]) == b"a"
    assert feed(StopMatcher(["abab"]), [b"aba", b"bab"]) == b""
    assert feed(StopMatcher(["abab"]), [b"xab", b"aab", b"ab"]) == b"xaba"


def test_several_stop_strings() -> None:
    m = StopMatcher(["END", "ND!", "x"])
    assert feed(m, [b"abcE", b"ND!"]) == b"abc" and m.stop_index == 0
    m = StopMatcher(["abc", "ab"])
    assert feed(m, [b"zab", b"c"]) == b"z" and m.stop_index == 1
    m = StopMatcher(["bc", "abcd"])
    assert feed(m, [b"abc"]) == b"a" and m.stop_index == 0
    m = StopMatcher([b"\n\n", "User:"])
    assert feed(m, [b"hi\n", b"Us", b"er", b":"]) == b"hi\n" and m.stop_index == 1
    m.reset()
    assert not m.stopped and feed(m, [b"x\n", b"\n"]) == b"x"
    assert m.stops == [b"\n\n", b"User:"]


def test_stop_matcher_brute_force() -> None:
    rng = np.random.default_rng(3)
    stops = [b"aba", b"bb", b"cab", b"\xc3\xa9"]
    alphabet = [b"a", b"b", b"c", b"\xc3", b"\xa9"]
    for _ in range(3000):
        text = b"".join(alphabet[i] for i in rng.integers(0, len(alphabet), rng.integers(0, 20)))
        cuts = sorted(rng.integers(0, len(text) + 1, rng.integers(0, 6)).tolist())
        pieces = [text[a:b] for a, b in zip([0, *cuts], [*cuts, len(text)], strict=True)]
        found = [i for i in (text.find(s) for s in stops) if i >= 0]
        m = StopMatcher(stops)
        assert feed(m, pieces) == text[: min(found, default=len(text))], (text, pieces)
        assert m.stopped == bool(found)


def test_stop_matcher_edges() -> None:
    assert feed(StopMatcher([]), [b"any", b"thing"]) == b"anything"
    assert feed(StopMatcher(["stop"]), [b"st", b"", b"op"]) == b""
    with pytest.raises(ValueError, match="empty"):
        StopMatcher(["ok", ""])
    with pytest.raises(TypeError):
        StopMatcher("###")  # a str is not a list of stops
