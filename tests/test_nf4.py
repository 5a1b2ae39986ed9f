"""NF4 (QLoRA NormalFloat-4, double-quantized absmax) against bitsandbytes 0.50.2 on the CPU.

qrt's NF4 bytes (csrc/format/nf4.h) are bnb's ``quantize_4bit(x, blocksize=64, quant_type="nf4",
compress_statistics=True)`` in another layout: 33-byte blocks (8-bit absmax code + bnb's packed nibbles), then
the dynamic map, the offset and the second-level absmax. Everything is compared bit for bit.

The reference runs with one torch thread: bnb's offset is ``absmax.mean()``, and torch splits sums of >= 32768
values across its threads, which can move the last bit of the offset. qrt always computes the one-thread value.
"""

from __future__ import annotations

import math
import pathlib
import warnings

import numpy as np
import pytest

import qrt

try:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        import bitsandbytes as bnb
        import bitsandbytes.functional as bnbf
        import torch
        from bitsandbytes.cextension import ErrorHandlerMockBNBNativeLibrary, lib
except ImportError as e:
    NO_REFERENCE = f"bitsandbytes 0.50.2 + torch (CPU) are the NF4 reference and are not installed ({e})"
else:
    if bnb.__version__ != "0.50.2":
        NO_REFERENCE = f"the NF4 reference is bitsandbytes 0.50.2, found {bnb.__version__}"
    elif isinstance(lib, ErrorHandlerMockBNBNativeLibrary):
        NO_REFERENCE = (
            "bitsandbytes' native CPU library did not load (its Python fallback rounds absmax differently)"
        )
    else:
        NO_REFERENCE = ""

needs_bnb = pytest.mark.skipif(bool(NO_REFERENCE), reason=NO_REFERENCE)

BLOCK = 64
BLOCK_BYTES = 33
GROUP = 256
NF4 = qrt.types()["NF4"]
# The codebook (FORMATS.md §5), as torch rounds these Python floats to float32.
NF4_CODE = np.array(
    [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0,
    ],
    np.float32,
)  # fmt: skip


@pytest.fixture
def one_torch_thread():
    """Runs the test with one torch thread; yields the previous thread count."""
    n = torch.get_num_threads()
    torch.set_num_threads(1)
    yield n
    torch.set_num_threads(n)


def bnb_quantize(x: np.ndarray):
    q, state = bnbf.quantize_4bit(
        torch.from_numpy(x), blocksize=BLOCK, quant_type="nf4", compress_statistics=True
    )
    return q, state


def bnb_dequantize(q, state) -> np.ndarray:
    return bnbf.dequantize_4bit(q, state, quant_type="nf4").numpy().reshape(state.shape)


def split(raw: np.ndarray, n: int):
    """qrt NF4 bytes -> (absmax codes, packed nibbles, dynamic map, offset, absmax2)."""
    nb = n // BLOCK
    blocks = raw[: nb * BLOCK_BYTES].reshape(nb, BLOCK_BYTES)
    tail = raw[nb * BLOCK_BYTES :].view(np.float32)
    assert tail.size == 256 + 1 + math.ceil(nb / GROUP)
    return blocks[:, 0], blocks[:, 1:].reshape(-1), tail[:256], tail[256], tail[257:]


def from_bnb(q, state) -> np.ndarray:
    """bnb's packed weight + nested QuantState -> qrt NF4 bytes (what a converter of bnb checkpoints writes)."""
    nb = state.absmax.numel()
    blocks = np.empty((nb, BLOCK_BYTES), np.uint8)
    blocks[:, 0] = state.absmax.numpy()
    blocks[:, 1:] = q.numpy().reshape(nb, BLOCK // 2)
    tail = np.concatenate(
        [state.state2.code.numpy(), [state.offset.item()], state.state2.absmax.numpy()]
    ).astype(np.float32)
    return np.concatenate([blocks.reshape(-1), tail.view(np.uint8)])


def bits(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)


def _ties() -> np.ndarray:
    """Values exactly on the NF4 midpoints (absmax 1, so x * (1 / absmax) == x): ties go to the lower code."""
    mids = (NF4_CODE[:-1] + NF4_CODE[1:]) / np.float32(2)
    row = np.concatenate([[1.0], mids, -mids, NF4_CODE, [0.0, -0.0, -1.0]]).astype(np.float32)
    return np.resize(row, (4, 128))


def cases() -> dict[str, np.ndarray]:
    rng = np.random.default_rng(7)
    mixed = rng.standard_normal((64, 1024)) * np.exp(rng.uniform(-12, 12, (64, 1)))
    sparse = np.zeros((300, 64))
    sparse[77, 13] = -7.0
    zero_rows = rng.standard_normal((8, 256))
    zero_rows[::2] = 0.0
    outliers = np.where(rng.random((96, 512)) < 0.002, 60.0, rng.standard_normal((96, 512)))
    return {
        "1x64": rng.standard_normal(64),
        "3x128": rng.standard_normal((3, 128)),
        "768x576": rng.standard_normal((768, 576)) * 0.02,
        "5x3904 (305 blocks)": rng.standard_normal((5, 64 * 61)),
        "257x64 (one block past a group)": rng.uniform(-1, 1, (257, 64)),
        "all-zero rows": zero_rows,
        "all zeros": np.zeros((2, 128)),
        "constant": np.ones((8, 256)),
        "outliers": outliers,
        "single non-zero": sparse,
        "ties": _ties(),
        "tiny": rng.standard_normal((4, 256)) * 1e-30,
        "subnormal": rng.standard_normal((4, 256)) * 1e-39,
        "huge": rng.standard_normal((4, 256)) * 1e30,
        "mixed scales": mixed,
        "laplace": rng.laplace(size=(300, 640)),
    }


CASES = cases()


def test_registry_row() -> None:
    assert (NF4.id, NF4.block_size, NF4.type_size) == (1000, 64, 33)
    assert NF4.vec_dot_type == "Q8_0" and NF4.in_files and not NF4.row_wise


def test_layout_by_hand() -> None:
    """One block written by hand: the first element of each pair is the high nibble, absmax = dyn * a2 + off."""
    dyn = split(qrt.quantize(np.ones((1, 64), np.float32), "NF4"), 64)[2]
    assert dyn[255] == 1.0 and dyn[127] == 0.0
    codes = np.arange(64) % 16
    block = np.concatenate([[200], codes[0::2] << 4 | codes[1::2]]).astype(np.uint8)
    tail = np.concatenate([dyn, [0.25], [3.0]]).astype(np.float32)  # offset 0.25, absmax2 3
    raw = np.concatenate([block, tail.view(np.uint8)])
    absmax = np.float32(np.float32(dyn[200]) * np.float32(3.0)) + np.float32(0.25)
    np.testing.assert_array_equal(bits(qrt.dequantize(raw, "NF4", (64,))), bits(NF4_CODE[codes] * absmax))


@needs_bnb
def test_codebook_and_dynamic_map_are_bnbs() -> None:
    np.testing.assert_array_equal(bits(NF4_CODE), bits(bnbf.get_4bit_type("nf4", device="cpu").numpy()))
    raw = qrt.quantize(np.ones((1, 64), np.float32), "NF4")
    _, _, dyn, _, _ = split(raw, 64)
    np.testing.assert_array_equal(bits(dyn), bits(bnbf.create_dynamic_map().numpy()))


@needs_bnb
@pytest.mark.usefixtures("one_torch_thread")
@pytest.mark.parametrize("name", list(CASES))
def test_matches_bitsandbytes(name: str) -> None:
    x = np.ascontiguousarray(CASES[name], dtype=np.float32)
    q, state = bnb_quantize(x)
    raw = qrt.quantize(x, "NF4")
    nb = x.size // BLOCK
    assert raw.shape == (nb * BLOCK_BYTES + 4 * (257 + math.ceil(nb / GROUP)),)

    codes, qs, dyn, offset, absmax2 = split(raw, x.size)
    np.testing.assert_array_equal(qs, q.numpy().reshape(-1))  # nibbles, bnb's packing
    np.testing.assert_array_equal(codes, state.absmax.numpy())  # 8-bit absmax codes
    np.testing.assert_array_equal(bits(absmax2), bits(state.state2.absmax.numpy()))
    assert bits(offset) == bits(state.offset.numpy())
    np.testing.assert_array_equal(bits(dyn), bits(state.state2.code.numpy()))
    np.testing.assert_array_equal(raw, from_bnb(q, state))

    ref = bnb_dequantize(q, state)
    ours = qrt.dequantize(raw, "NF4", x.shape)
    assert ours.shape == x.shape
    np.testing.assert_array_equal(bits(ours), bits(ref))


@needs_bnb
def test_large_tensor_and_bnb_state_from_all_torch_threads(one_torch_thread: int) -> None:
    """40960 blocks: past torch's 32768-value threshold for splitting the mean over threads."""
    x = (np.random.default_rng(8).standard_normal((1024, 2560)) * 0.02).astype(np.float32)
    q, state = bnb_quantize(x)
    np.testing.assert_array_equal(qrt.quantize(x, "NF4"), from_bnb(q, state))
    # Whatever offset bnb computed with all its threads, qrt decodes bnb's state exactly as bnb does.
    torch.set_num_threads(one_torch_thread)
    q, state = bnb_quantize(x)
    ours = qrt.dequantize(from_bnb(q, state), "NF4", x.shape)
    np.testing.assert_array_equal(bits(ours), bits(bnb_dequantize(q, state)))


def test_result_does_not_depend_on_thread_count() -> None:
    x = np.random.default_rng(9).standard_normal((40, 4096)).astype(np.float32)  # 2560 blocks, 10 groups
    one = qrt.quantize(x, "NF4", n_threads=1)
    for n in (2, 3, 8):
        np.testing.assert_array_equal(qrt.quantize(x, "NF4", n_threads=n), one)
        np.testing.assert_array_equal(
            bits(qrt.dequantize(one, "NF4", x.shape, n_threads=n)),
            bits(qrt.dequantize(one, "NF4", x.shape, n_threads=1)),
        )


def rel_rmse(x: np.ndarray, y: np.ndarray) -> float:
    return float(np.sqrt(np.mean((y - x) ** 2)) / np.sqrt(np.mean(x**2)))


def q4_0_rule(x: np.ndarray, block: int) -> np.ndarray:
    """ggml's quantize_row_q4_0_ref rule (d = signed max / -8, 16 uniform levels) at any block size."""
    b = x.reshape(-1, block)
    m = b[np.arange(len(b)), np.argmax(np.abs(b), axis=1)]
    d = (m / -8).astype(np.float16).astype(np.float32)
    inv = np.divide(1.0, d, out=np.zeros_like(d), where=d != 0)
    q = np.clip(np.trunc(b * inv[:, None] + 8.5), 0, 15)
    return ((q - 8) * d[:, None]).reshape(x.shape)


def test_error_on_gaussian_weights() -> None:
    x = (np.random.default_rng(0).standard_normal((512, 4096)) * 0.02).astype(np.float32)
    nf4 = rel_rmse(x, qrt.dequantize(qrt.quantize(x, "NF4"), "NF4", x.shape))
    q4_0 = rel_rmse(x, qrt.dequantize(qrt.quantize(x, "Q4_0"), "Q4_0", x.shape))
    # Measured: NF4 0.0920 (4.125 bits/weight), Q4_0 0.0860 (4.5 bits/weight: a scale per 32 values, not 64).
    # At NF4's block size the normal-quantile levels beat Q4_0's uniform ones: 0.0949.
    assert nf4 < rel_rmse(x, q4_0_rule(x, 64))
    assert q4_0 < nf4 < 1.1 * q4_0
    assert nf4 <= NF4.max_rel_rmse


def test_round_trip_error_within_registry_bound() -> None:
    x = np.random.default_rng(3).standard_normal((16, 4096)).astype(np.float32)
    err = rel_rmse(x, qrt.dequantize(qrt.quantize(x, "NF4"), "NF4", x.shape))
    assert 0 < err <= NF4.max_rel_rmse


def test_rejects_rows_not_a_multiple_of_64() -> None:
    with pytest.raises(ValueError, match="not a multiple of NF4's block size 64"):
        qrt.quantize(np.ones((4, 96), np.float32), "NF4")
    with pytest.raises(ValueError, match="not a multiple of NF4's block size 64"):
        qrt.quantize(np.ones(32, np.float32), "NF4")


def test_dequantize_rejects_wrong_sizes() -> None:
    raw = qrt.quantize(np.ones((2, 128), np.float32), "NF4")  # 4 blocks: 132 + 4 * 258 bytes
    assert raw.size == 4 * 33 + 4 * 258
    with pytest.raises(ValueError, match=f"takes {raw.size} bytes, got {raw.size - 1}"):
        qrt.dequantize(raw[:-1], "NF4", (2, 128))
    with pytest.raises(ValueError, match="takes"):
        qrt.dequantize(np.concatenate([raw, raw[:4]]), "NF4", (2, 128))
    with pytest.raises(ValueError, match="takes"):
        qrt.dequantize(raw, "NF4", (4, 64 * 2))
    with pytest.raises(ValueError, match="not a positive multiple"):
        qrt.dequantize(raw, "NF4", (4, 96))


def test_rejects_values_too_large_for_the_mean() -> None:
    x = np.full((4, 64), 3e38, np.float32)  # the block absmax sum overflows float32
    with pytest.raises(ValueError, match="overflows"):
        qrt.quantize(x, "NF4")


# ---------------------------------------------------------------------------------------- packed kernels


def test_packed_kernels_track_the_exact_dequantization(tmp_path, monkeypatch) -> None:
    """SmolLM2 converted to NF4, run with the packed kernels (the int8 image of the codebook, kNF4_I8) and with
    QRT_REPACK=0 (the exact reference, bitsandbytes' dequantization against the same Q8_0 activations): the same
    argmax almost everywhere, and mean KL under 0.02, about twice what bench/nf4_accuracy.py measures over
    gpl-3.0.txt (0.009, README "NF4 in GGUF files"; the 0.001 aimed for is not reached by any int8 image)."""
    pytest.importorskip("transformers")
    from qrt_convert import cli
    from tests.support import hf_fixture

    try:
        hf = hf_fixture.smollm2_hf()
    except Exception as e:
        pytest.skip(f"SmolLM2 HF checkpoint fixture unavailable: {e}")
    path = tmp_path / "smollm2.NF4.gguf"
    assert cli.main([str(hf), "-o", str(path), "--type", "NF4"]) == 0
    text = (pathlib.Path(__file__).parent / "data" / "gpl-3.0.txt").read_text()[:2000]
    logp = {}
    for repack in ("1", "0"):
        monkeypatch.setenv("QRT_REPACK", repack)
        model = qrt.load(path, n_ctx=128, n_threads=2)
        ids = model.tokenize(text)[:48]
        x = model.logits(ids).astype(np.float64)
        x -= x.max(-1, keepdims=True)
        logp[repack] = x - np.log(np.exp(x).sum(-1, keepdims=True))
    exact, packed = logp["0"], logp["1"]
    kl = float((np.exp(exact) * (exact - packed)).sum(-1).mean())
    assert kl <= 0.02, kl
    assert (exact.argmax(-1) == packed.argmax(-1)).mean() >= 0.9
