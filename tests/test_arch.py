"""The architectures beyond llama (qwen3, gemma3, phi3, smollm3, granite, Llama 3's rope_freqs) against Hugging
Face transformers and llama.cpp, on real data.

* Tiny random checkpoints of each (tests/support/hf_arch.py: transformers' own config classes, real
  vocabularies), converted by llama.cpp's convert_hf_to_gguf.py: qrt's logits against transformers fp32 on
  the same weights (f32 file: near-exact, and no further from it than llama.cpp's own logits; quantized by
  llama-quantize: KL no larger than llama.cpp's), greedy continuation equal to llama.cpp's.
* gemma3's sliding-window layers beyond the window: equal to a full recompute, token by token and in chunks,
  and the window cache's bytes.
* The real gemma-3-270m Q4_K_M file: perplexity within 1% of llama-perplexity's, greedy text equal to
  llama.cpp's, a chat answer with Gemma's own template.
"""

from __future__ import annotations

import json
import os
import pathlib
import subprocess

import numpy as np
import pytest

import qrt
from tests.support import hf_arch, llama_logits
from tests.support import llamacpp as _llamacpp
from tests.support.cache import cache_dir

GPL = pathlib.Path(__file__).parent / "data" / "gpl-3.0.txt"
N_PROMPT = 60  # tokens: beyond the tiny gemma3's sliding window of 16
N_GEN = 12


def _unavailable(msg: str) -> None:
    if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


@pytest.fixture(scope="module", params=hf_arch.ARCHS)
def arch(request: pytest.FixtureRequest) -> str:
    pytest.importorskip("torch")
    pytest.importorskip("transformers")
    try:
        hf_arch.llamacpp_gguf(request.param, "f32")
        llama_logits.tool()
    except Exception as e:  # a missing oracle: skip, or fail in CI
        _unavailable(f"{request.param}: reference unavailable: {e}")
    return request.param


def _log_softmax(x: np.ndarray) -> np.ndarray:
    x = x.astype(np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def mean_kl(ref_logits: np.ndarray, logits: np.ndarray) -> float:
    """Mean over positions of KL(softmax(ref) || softmax(logits))."""
    p, q = _log_softmax(ref_logits), _log_softmax(logits)
    return float((np.exp(p) * (p - q)).sum(-1).mean())


_HF_CACHE: dict[str, np.ndarray] = {}


def hf_logits(arch: str, ids: list[int]) -> np.ndarray:
    """transformers fp32 logits of every position (the vocabulary as the file has it)."""
    key = f"{arch}:{len(ids)}"
    if key not in _HF_CACHE:
        import torch
        from transformers import AutoModelForCausalLM

        model = AutoModelForCausalLM.from_pretrained(hf_arch.tiny_checkpoint(arch), dtype=torch.float32)
        with torch.no_grad():
            _HF_CACHE[key] = model(torch.tensor([ids])).logits[0].numpy()
    return _HF_CACHE[key]


def prompt_ids(model: qrt.Model) -> list[int]:
    return [int(t) for t in model.tokenize(GPL.read_text(encoding="utf-8")[:1000])[:N_PROMPT]]


def greedy(model: qrt.Model, ids: list[int], n: int) -> list[int]:
    """n tokens by argmax (the lowest id on ties, as np.argmax and the oracle), one decode step each."""
    native = model._native
    native.clear(0)
    logits = native.eval(np.array(ids, np.int32), 0)
    out: list[int] = []
    for _ in range(n):
        out.append(int(np.argmax(logits)))
        logits = native.eval(np.array(out[-1:], np.int32), 0)
    native.clear(0)
    return out


def test_f32_matches_hf_and_llamacpp(arch: str) -> None:
    path = hf_arch.llamacpp_gguf(arch, "f32")
    with qrt.load(path, n_ctx=256, n_threads=2) as model:
        ids = prompt_ids(model)
        assert len(ids) == N_PROMPT
        ours = model.logits(ids)
        ref_llama, gen_llama = llama_logits.run(path, ids, model.n_vocab, n_gen=N_GEN)
        gen = greedy(model, ids, N_GEN)
    hf = hf_logits(arch, ids)
    n = min(hf.shape[1], ours.shape[1])  # qwen3: the config's vocabulary pads the tokenizer's
    kl, kl_llama = mean_kl(hf[:, :n], ours[:, :n]), mean_kl(hf[:, :n], ref_llama[:, :n])
    scale = float(np.abs(hf).max())
    assert np.abs(ours[:, :n] - hf[:, :n]).max() <= 0.005 * scale, arch
    # measured: 1e-11 (granite) to 1.2e-6 (phi3); llama.cpp 1.5e-10 to 4.2e-6 on the same files
    assert kl <= 1e-5 and kl <= 1.5 * kl_llama + 1e-9, (arch, kl, kl_llama)
    assert gen == gen_llama, arch


@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_0"])
def test_quantized_kl_no_larger_than_llamacpps(arch: str, ftype: str) -> None:
    src = hf_arch.llamacpp_gguf(arch, "f32")
    path = _llamacpp.requantize(src, cache_dir() / "requant" / f"{src.stem}.{ftype}.gguf", ftype)
    with qrt.load(path, n_ctx=256, n_threads=2) as model:
        ids = prompt_ids(model)
        ours = model.logits(ids)
        ref_llama, _ = llama_logits.run(path, ids, model.n_vocab)
    hf = hf_logits(arch, ids)
    n = min(hf.shape[1], ours.shape[1])
    kl, kl_llama = mean_kl(hf[:, :n], ours[:, :n]), mean_kl(hf[:, :n], ref_llama[:, :n])
    assert kl <= 1.05 * kl_llama, (arch, ftype, kl, kl_llama)


def test_sliding_window_equals_full_recompute() -> None:
    """gemma3's window layers give back blocks behind the window as a sequence grows: decoding token by token
    (and in chunks of 7) beyond the window gives exactly the logits of one pass over the whole prompt."""
    pytest.importorskip("transformers")
    try:
        path = hf_arch.llamacpp_gguf("gemma3", "f32")
    except Exception as e:
        _unavailable(f"gemma3 fixture unavailable: {e}")
    with qrt.load(path, n_ctx=256, n_threads=2) as model:
        native = model._native
        assert native.sliding_window == 16
        ids = np.array(prompt_ids(model), np.int32)
        native.clear(0)
        full = native.eval(ids, 0, all_logits=True)
        for step in (1, 7):
            native.clear(0)
            rows = [native.eval(ids[i : i + step], 0, all_logits=True) for i in range(0, len(ids), step)]
            np.testing.assert_array_equal(np.concatenate(rows), full, err_msg=f"chunks of {step}")
        # truncating behind the window forgets the sequence (its keys were given back); within it, keeps it
        native.truncate(0, len(ids) - 1)
        assert native.seq_len(0) == len(ids) - 1
        np.testing.assert_array_equal(native.eval(ids[-1:], 0), full[-1])
        native.truncate(0, 3)
        assert native.seq_len(0) == 0


# ------------------------------------------------------------------------------- the real gemma-3-270m


@pytest.fixture(scope="module")
def gemma3_270m() -> pathlib.Path:
    from tests.support.gemma3 import gemma3_270m as fetch

    try:
        return fetch()
    except Exception as e:
        _unavailable(f"gemma-3-270m unavailable: {e}")


def _llama_perplexity(path: pathlib.Path, chunks: int) -> float:
    """llama-perplexity's final estimate (cached per file, text and llama.cpp version)."""
    llama = _llamacpp.ensure_built()
    cache = cache_dir() / "ppl" / f"{path.name}.c512.{chunks}.{_llamacpp.VERSION}.json"
    if cache.is_file():
        return json.loads(cache.read_text())["ppl"]
    args = ["-m", str(path), "-f", str(GPL), "-c", "512", "--chunks", str(chunks), "-t", "2", "-b", "512"]
    r = subprocess.run(
        [str(llama.perplexity), *args],
        capture_output=True,
        text=True,
        check=True,
    )
    line = next(ln for ln in r.stdout.splitlines() + r.stderr.splitlines() if "Final estimate" in ln)
    ppl = float(line.split("PPL = ")[1].split()[0])
    cache.parent.mkdir(parents=True, exist_ok=True)
    cache.write_text(json.dumps({"ppl": ppl}))
    return ppl


def test_gemma3_270m_perplexity_matches_llamacpp(gemma3_270m: pathlib.Path) -> None:
    from qrt.perplexity import perplexity

    chunks = 4
    ref = _llama_perplexity(gemma3_270m, chunks)
    with qrt.load(gemma3_270m, n_ctx=512, n_threads=2) as model:
        ours = perplexity(model, GPL.read_text(encoding="utf-8"), 512, max_chunks=chunks).ppl
    assert abs(ours - ref) <= 0.01 * ref, (ours, ref)


def test_gemma3_270m_greedy_and_chat(gemma3_270m: pathlib.Path) -> None:
    """Greedy text equals llama.cpp's; the file carries no chat template, so chat() renders Gemma's own (one
    BOS, <start_of_turn> control tokens, the model's turn opened) and answers as llama.cpp does on the same
    prompt. (270m is the pretrained model, not the instruction-tuned one: its answer is not asserted.)"""
    from qrt import chat

    with qrt.load(gemma3_270m, n_ctx=1024, n_threads=2) as model:
        assert "tokenizer.chat_template" not in model.metadata
        ids = [int(t) for t in model.tokenize("The capital of France is")]
        _, gen_llama = llama_logits.run(gemma3_270m, ids, model.n_vocab, n_gen=16)
        assert greedy(model, ids, 16) == gen_llama
        assert model.tokenizer.decode(gen_llama).startswith(" the capital of")

        messages = [{"role": "user", "content": "What is the capital of France?"}]
        text = chat.render(chat.default_template("gemma3"), messages, bos_token="<bos>")
        assert (
            text
            == "<bos><start_of_turn>user\nWhat is the capital of France?<end_of_turn>\n<start_of_turn>model\n"
        )
        prompt = [int(t) for t in model.tokenize(text[len("<bos>") :], special=True)]
        bos, start, end = (model.tokenizer.token_id(t) for t in ("<bos>", "<start_of_turn>", "<end_of_turn>"))
        assert prompt.count(bos) == 1 and prompt[0] == bos and prompt.count(start) == 2 and end in prompt
        _, answer_llama = llama_logits.run(gemma3_270m, prompt, model.n_vocab, n_gen=12)
        reply = model.chat(messages, max_tokens=12, temperature=0, ignore_eos=True)
        assert reply == model.tokenizer.decode(answer_llama)


def test_gemma3_270m_window_cache_bytes(gemma3_270m: pathlib.Path) -> None:
    """15 of its 18 layers slide over 512 tokens: at n_ctx 8192 they hold a window and a batch of blocks, the
    3 global layers the whole context (per sequence: the engine's n_seq_max and one for logits())."""
    n_ctx, n_batch, window, block = 8192, 512, 512, 16
    per_block = 2 * 2 * 1 * block * 256  # K and V, f16, 1 KV head, 16 tokens, head_dim 256
    full = 3 * (n_ctx // block) * per_block
    windowed = 15 * (-(-(window - 1 + n_batch) // block) + 1) * per_block
    with qrt.load(gemma3_270m, n_ctx=n_ctx, n_threads=2, n_seq_max=1) as model:
        n_seq = model.n_seq_max + 1
        assert model.kv_bytes == n_seq * (full + windowed)
        assert model.kv_bytes < 0.3 * n_seq * 18 * (n_ctx // block) * per_block


def test_phi3_long_rope_factors_past_the_original_context() -> None:
    """LongRoPE: a context beyond the original 4k takes rope_factors_long (and the attention factor), as
    llama.cpp chooses them by n_ctx."""
    pytest.importorskip("transformers")
    try:
        path = hf_arch.llamacpp_gguf("phi3", "f32")
    except Exception as e:
        _unavailable(f"phi3 fixture unavailable: {e}")
    with qrt.load(path, n_ctx=256, n_threads=2) as short, qrt.load(path, n_ctx=8192, n_threads=2) as long:
        assert long.metadata["phi3.rope.scaling.original_context_length"] == 4096
        ids = prompt_ids(short)
        ours_short, ours_long = short.logits(ids), long.logits(ids)
    ref_long, _ = llama_logits.run(path, ids, len(ours_long[0]), n_ctx=8192)
    assert mean_kl(ref_long, ours_long) < 1e-5
    assert mean_kl(ours_short, ours_long) > 100 * mean_kl(ref_long, ours_long)


def test_offload_of_sliding_window_models_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    """The device parts keep one cache geometry: gemma3 with gpu_layers says so instead of running wrong."""
    pytest.importorskip("transformers")
    try:
        path = hf_arch.llamacpp_gguf("gemma3", "f32")
    except Exception as e:
        _unavailable(f"gemma3 fixture unavailable: {e}")
    monkeypatch.setenv("QRT_TEST_DEVICE", "cpu")
    with pytest.raises(qrt.UnsupportedError, match=r"sliding-window layers \(gemma3\)"):
        qrt.load(path, n_ctx=64, gpu_layers=2)
