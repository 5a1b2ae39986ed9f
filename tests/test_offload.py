"""Partial offload (gpu_layers) on SmolLM2, without a GPU.

The layer split, weight upload and hand-off run against qrt's second CPU "device" backend (cpu-test,
selected with the test-only environment variable QRT_TEST_DEVICE=cpu[:FREE_BYTES]). It copies its layers'
weights into its own memory and runs the CPU kernels on them in the same order, so every split must give
the all-CPU logits bit for bit. What is left untested here is only the GPU kernels themselves.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import warnings

import numpy as np
import pytest

import qrt
from qrt import _C

PROMPT = "The capital of France is"
N_CTX = 128
MARGIN = _C.DEVICE_MARGIN_BYTES
NOTHING_FITS = (
    "gpu_layers='auto': not even one layer fits in the device's free memory (keeping 256 MiB free): "
    "running every layer on the CPU"
)


@pytest.fixture
def test_device(monkeypatch: pytest.MonkeyPatch):
    """Selects the cpu-test backend; call it with a byte count to fake the device's free memory."""

    def use(free_bytes: int | None = None) -> None:
        monkeypatch.setenv("QRT_TEST_DEVICE", "cpu" if free_bytes is None else f"cpu:{free_bytes}")

    use()
    return use


@pytest.fixture(scope="module")
def cpu(smollm2_path) -> qrt.Model:
    with qrt.load(smollm2_path, n_ctx=N_CTX) as m:
        yield m


@pytest.fixture(scope="module")
def ids(cpu: qrt.Model) -> list[int]:
    # 40 tokens: crosses two 16-token cache blocks
    text = "Once upon a time, in a small village by the sea, there lived an old fisherman who"
    out = cpu.tokenize(text * 3)[:40]
    assert len(out) == 40
    return out


@pytest.fixture(scope="module")
def cpu_logits(cpu: qrt.Model, ids: list[int]) -> np.ndarray:
    return cpu.logits(ids)


@pytest.mark.parametrize("gpu_layers", [0, 1, "half", "n_layer", "n_layer+1", -1, "all", 99])
def test_split_logits_equal_cpu_bit_for_bit(
    smollm2_path, test_device, cpu, ids, cpu_logits, gpu_layers
) -> None:
    L = cpu.n_layer
    n = {"half": L // 2, "n_layer": L, "n_layer+1": L + 1}.get(gpu_layers, gpu_layers)
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=n) as m:
        o = m.offload
        if n == 0:
            assert o is None
        else:
            want = L + 1 if n in (-1, "all", 99) else n
            assert o["backend"] == "cpu-test" and o["gpu_layers"] == want
            assert o["n_layer_device"] == min(want, L) and o["first_layer"] == L - min(want, L)
            assert o["head"] == (want > L)
            assert o["weights_copied"]
        got = m.logits(ids)
    assert got.dtype == np.float32 and got.shape == cpu_logits.shape
    np.testing.assert_array_equal(got, cpu_logits)


@pytest.mark.parametrize("split", ["half", "n_layer+1"])
def test_decode_through_the_split_equals_prefill(
    smollm2_path, test_device, cpu, ids, cpu_logits, split
) -> None:
    n = cpu.n_layer // 2 if split == "half" else cpu.n_layer + 1
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=n) as m:
        native = m._native
        native.clear(0)
        rows = [native.eval(np.array([t], np.int32), 0, False) for t in ids]  # one token at a time
        np.testing.assert_array_equal(np.stack(rows), cpu_logits)
        native.clear(0)
        # uneven chunks, all logits
        parts, start = [], 0
        for size in (5, 17, 1, 17):
            parts.append(native.eval(np.array(ids[start : start + size], np.int32), 0, True))
            start += size
        np.testing.assert_array_equal(np.concatenate(parts), cpu_logits)
        native.clear(0)


def test_batch_of_sequences_through_the_split(smollm2_path, test_device, cpu, ids, cpu_logits) -> None:
    with qrt.load(smollm2_path, n_ctx=N_CTX, n_seq_max=2, gpu_layers=cpu.n_layer // 2) as m:
        native = m._native
        a, b = ids[:20], ids[:13]
        out = native.eval_batch(np.array(a + b, np.int32), np.array([0] * 20 + [1] * 13, np.int32), False)
        np.testing.assert_array_equal(out, cpu_logits[[19, 12]])
        # one more token for each, interleaved: each attends through its own block table on both devices
        out = native.eval_batch(np.array([ids[20], ids[13]], np.int32), np.array([0, 1], np.int32), False)
        np.testing.assert_array_equal(out, cpu_logits[[20, 13]])


def test_greedy_text_through_the_split_equals_cpu(smollm2_path, test_device, cpu) -> None:
    expected = cpu.generate(PROMPT, max_tokens=16, temperature=0)
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=8) as m:
        assert m.generate(PROMPT, max_tokens=16, temperature=0) == expected


def test_device_memory_by_part(smollm2_path, test_device, cpu) -> None:
    L = cpu.n_layer
    with qrt.gguf.open(smollm2_path) as f:
        sizes = {name: t.nbytes for name, t in f.tensors.items()}
    assert "output.weight" not in sizes  # SmolLM2 ties the output to token_embd
    kv_per_layer = cpu._native.kv_bytes // L
    for n in (1, L // 2, L, L + 1):
        with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=n) as m:
            o = m.offload
            first = L - min(n, L)
            want = sum(v for k, v in sizes.items() if k.startswith("blk.") and int(k.split(".")[1]) >= first)
            if n > L:  # the head: output_norm and the (tied) output matrix
                want += sizes["output_norm.weight"] + sizes["token_embd.weight"]
            assert o["weights_bytes"] == want
            assert o["kv_bytes"] == kv_per_layer * min(n, L)
            assert m._native.kv_bytes == kv_per_layer * first  # the host keeps only its layers' K/V
            assert 0 < o["work_bytes"] < o["weights_bytes"] + (64 << 20)
            assert o["total_bytes"] == o["weights_bytes"] + o["kv_bytes"] + o["work_bytes"]
            if n > L:  # logits for a batch live on the device too
                assert o["work_bytes"] > m.n_vocab * 4 * m._native.n_batch


def test_auto_picks_the_largest_n_that_fits(smollm2_path, test_device, cpu) -> None:
    L = cpu.n_layer
    need = {}
    for n in (1, 2, L // 2, L, L + 1):
        with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=n) as m:
            need[n] = m.offload["total_bytes"]
    assert need[1] < need[2] < need[L // 2] < need[L] < need[L + 1]
    cases = [(MARGIN + need[n], n) for n in need] + [(MARGIN + need[n] - 1, n - 1) for n in need]
    cases += [(MARGIN + need[L + 1] + (1 << 30), L + 1), (MARGIN + need[1] // 2, 0), (1 << 20, 0)]
    for budget, expected in cases:
        test_device(budget)
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            m = qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers="auto")
        assert [str(w.message) for w in caught] == ([] if expected else [NOTHING_FITS])
        with m:
            got = 0 if m.offload is None else m.offload["gpu_layers"]
            assert got == expected, f"budget {budget}: auto chose {got}, expected {expected}"
            if m.offload:
                assert m.offload["free_bytes"] == budget
                assert m.offload["total_bytes"] + MARGIN <= budget


def test_auto_logits_equal_cpu(smollm2_path, test_device, cpu, ids, cpu_logits) -> None:
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=cpu.n_layer // 2) as m:
        budget = MARGIN + m.offload["total_bytes"]
    test_device(budget)
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers="auto") as m:
        assert m.offload["gpu_layers"] == cpu.n_layer // 2
        np.testing.assert_array_equal(m.logits(ids), cpu_logits)


def test_layers_that_do_not_fit_are_a_memory_error(smollm2_path, test_device) -> None:
    test_device(50 << 20)  # 50 MiB: fewer than all layers
    with pytest.raises(MemoryError, match=r"need \d+ bytes .* 52428800 bytes are free"):
        qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers="all")


@pytest.mark.parametrize("bad", [-2, -100, "lots", "ALL", "", "1"])
def test_bad_gpu_layers_are_value_errors(smollm2_path, bad) -> None:
    with pytest.raises(ValueError, match="gpu_layers"):
        qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=bad)


@pytest.mark.parametrize("bad", [True, 1.5, None])
def test_mistyped_gpu_layers_are_type_errors(smollm2_path, bad) -> None:
    with pytest.raises(TypeError, match="gpu_layers"):
        qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=bad)


def test_bad_test_device_spec(smollm2_path, monkeypatch) -> None:
    monkeypatch.setenv("QRT_TEST_DEVICE", "cpu:lots")
    with pytest.raises(ValueError, match="QRT_TEST_DEVICE"):
        qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=1)


needs_no_gpu = pytest.mark.skipif("cuda" in _C.offload_backends(), reason="a usable GPU is present")


@needs_no_gpu
@pytest.mark.parametrize("gpu_layers", [8, -1, "all", "auto"])
def test_require_gpu_without_a_gpu_is_a_clear_error(smollm2_path, gpu_layers) -> None:
    with pytest.raises(RuntimeError, match=r"require_gpu=True, but .*(CUDA|GPU)"):
        qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=gpu_layers, require_gpu=True)


def test_require_gpu_with_zero_layers_loads(smollm2_path) -> None:
    with qrt.load(smollm2_path, n_ctx=N_CTX, gpu_layers=0, require_gpu=True) as m:
        assert m.offload is None


def run_cli(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "qrt.cli.run", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, **(env or {})},
    )


@needs_no_gpu
def test_cli_without_a_gpu_warns_in_one_line_and_runs_on_the_cpu(smollm2_path) -> None:
    common = ["-m", str(smollm2_path), "-p", PROMPT, "-n", "8", "--temp", "0", "-c", str(N_CTX)]
    cpu = run_cli(*common)
    gpu = run_cli(*common, "--gpu-layers", "8")
    assert cpu.returncode == 0 and gpu.returncode == 0, gpu.stderr
    assert gpu.stdout == cpu.stdout
    warn = [line for line in gpu.stderr.splitlines() if "warning" in line]
    assert len(warn) == 1 and warn[0].startswith("qrt-run: warning: ") and "CPU" in warn[0]
    failed = run_cli(*common, "--gpu-layers", "all", "--require-gpu")
    assert failed.returncode == 1 and failed.stderr.startswith("qrt-run: error: ")
    assert failed.stderr.count("\n") == 1 and "require_gpu" in failed.stderr


def test_cli_reports_the_device_memory_at_load(smollm2_path) -> None:
    common = ["-m", str(smollm2_path), "-p", PROMPT, "-n", "8", "--temp", "0", "-c", str(N_CTX)]
    cpu = run_cli(*common)
    split = run_cli(*common, "--gpu-layers", "auto", env={"QRT_TEST_DEVICE": "cpu"})
    assert split.returncode == 0, split.stderr
    assert split.stdout == cpu.stdout
    line = [s for s in split.stderr.splitlines() if "on cpu-test" in s]
    assert len(line) == 1 and "30/30 layers + output head" in line[0]
    assert all(part in line[0] for part in ("weights", "KV cache", "work buffers", "free"))
    bad = run_cli(*common, "--gpu-layers", "lots")
    assert bad.returncode == 2 and "expected an int, 'all' or 'auto'" in bad.stderr


def test_bench_runs_each_split(smollm2_path) -> None:
    args = ["-m", str(smollm2_path), "-p", "8", "-n", "2", "-r", "1", "-t", "1", "--json", "-ngl", "0,15,all"]
    done = subprocess.run(
        [sys.executable, "-m", "qrt.cli.bench", *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "QRT_TEST_DEVICE": "cpu"},
    )
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["n_gpu_layers"], r["backend"], r["test"]) for r in rows] == [
        (0, "cpu", "pp8"),
        (0, "cpu", "tg2"),
        (15, "cpu-test", "pp8"),
        (15, "cpu-test", "tg2"),
        (31, "cpu-test", "pp8"),
        (31, "cpu-test", "tg2"),
    ]


@needs_no_gpu
def test_bench_without_a_gpu_is_an_error(smollm2_path) -> None:
    args = ["-m", str(smollm2_path), "-p", "8", "-n", "0", "-r", "1", "-ngl", "99"]
    done = subprocess.run(
        [sys.executable, "-m", "qrt.cli.bench", *args], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 1 and done.stderr.startswith("qrt-bench: error: ") and "GPU" in done.stderr
