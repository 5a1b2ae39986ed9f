"""qrt-convert on the architectures of issue 12 (qwen3, gemma3, phi3, smollm3, granite, Llama 3.x) against
llama.cpp's own converter, on the tiny random checkpoints of tests/support/hf_arch.py (real vocabularies:
Qwen2 BPE, Llama 3 BPE, Phi-3 and Gemma 3 SentencePiece).

* F16 (and BF16 for two): byte-identical files to ``convert_hf_to_gguf.py --outtype f16`` (its tensor order
  and key order).
* Quantized: byte-identical files to ``convert_hf_to_gguf.py --outtype f32`` + ``llama-quantize`` (the
  checkpoints are float32, so llama.cpp's f16 intermediate would round them; its f32 one does not).
* The inputs the new paths read, made hostile: a malformed tokenizer.json, a pre-tokenizer llama.cpp does not
  know, bad LongRoPE factors, a phi3 checkpoint without its tokenizer.model: each a clean error naming the
  file or field, with no output file left.
* Variants (F16 against llama.cpp): gemma3 with only a tokenizer.json, transformers 4 config.json spellings,
  configs that leave all but the shapes to the config class's defaults, Gemma3ForConditionalGeneration (its
  text model; quantized too), gemma3 from bf16 and f16 weights (the norm offset added as llama.cpp adds it;
  quantized too), phi3 at hidden 256 (K-quant mixes), Granite's GPT2Tokenizer class.
"""

from __future__ import annotations

import json
import os
import pathlib
import shutil

import numpy as np
import pytest

import qrt
import qrt.gguf
import qrt_convert
from tests.support import hf_arch
from tests.support import llamacpp as _llamacpp

pytestmark = pytest.mark.slow

QUANT_TYPES = ("Q8_0", "Q4_K_M")


def _unavailable(what: str, err: BaseException) -> None:
    msg = f"{what} unavailable: {err}"
    if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


def _needs_builders() -> None:
    for mod in ("torch", "transformers", "sentencepiece", "google.protobuf", "gguf"):
        pytest.importorskip(mod)


def _checkpoint(arch: str) -> pathlib.Path:
    _needs_builders()
    try:
        return hf_arch.tiny_checkpoint(arch)
    except Exception as e:
        _unavailable(f"tiny {arch} checkpoint", e)
        raise


def _reference(arch: str, outtype: str) -> pathlib.Path:
    _checkpoint(arch)
    try:
        return hf_arch.llamacpp_gguf(arch, outtype)
    except Exception as e:
        _unavailable(f"llama.cpp's conversion of tiny {arch}", e)
        raise


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory):
    """Factory: qrt-convert of a tiny checkpoint to a type (once per session)."""
    out_dir = tmp_path_factory.mktemp("converted_arch")
    done: dict[tuple[str, str], pathlib.Path] = {}

    def make(arch: str, ftype: str) -> pathlib.Path:
        if (arch, ftype) not in done:
            out = out_dir / f"{arch}.{ftype}.gguf"
            qrt_convert.convert(_checkpoint(arch), out, ftype, progress=False)
            done[arch, ftype] = out
        return done[arch, ftype]

    return make


def assert_same_metadata(ours: qrt.gguf.GGUFFile, ref: qrt.gguf.GGUFFile) -> None:
    assert set(ours.fields) == set(ref.fields), set(ours.fields) ^ set(ref.fields)
    for key, f in ref.fields.items():
        g = ours.fields[key]
        assert (g.type, g.element_type) == (f.type, f.element_type), key
        assert g.value == f.value, key


def no_output(out: pathlib.Path) -> None:
    assert not out.exists()
    leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
    assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------- vs llama.cpp


@pytest.mark.parametrize("arch", hf_arch.ARCHS)
def test_f16_matches_llamacpp(arch: str, converted) -> None:
    ref_path, ours_path = _reference(arch, "f16"), converted(arch, "F16")
    if ours_path.read_bytes() == ref_path.read_bytes():
        return
    ref, ours = qrt.gguf.open(ref_path), qrt.gguf.open(ours_path)  # say where they differ
    assert_same_metadata(ours, ref)
    assert list(ours.fields) == list(ref.fields)
    assert [(t.name, t.type, t.shape) for t in ours.tensors.values()] == [
        (t.name, t.type, t.shape) for t in ref.tensors.values()
    ]
    for name in ref.tensors:
        assert np.array_equal(ours.raw(name), ref.raw(name)), name
    pytest.fail("files differ outside metadata and tensor data")


@pytest.mark.parametrize("arch", ["qwen3", "gemma3"])
def test_bf16_matches_llamacpp(arch: str, converted) -> None:
    assert converted(arch, "BF16").read_bytes() == _reference(arch, "bf16").read_bytes()


@pytest.mark.parametrize("variant", list(hf_arch.VARIANTS))
def test_variant_f16_matches_llamacpp(variant: str, converted) -> None:
    """Other paths through both converters: gemma3 with only a tokenizer.json (BPE, its pre-tokenizer
    recognised by hash), transformers 4's config.json spellings (rope_theta, rope_scaling, Gemma 3's
    rope_local_base_freq / sliding_window_pattern, Phi-3's top-level partial_rotary_factor), and configs that
    leave everything but the shapes to transformers' defaults."""
    test_f16_matches_llamacpp(variant, converted)


@pytest.mark.parametrize("ftype", QUANT_TYPES)
@pytest.mark.parametrize("arch", [*hf_arch.ARCHS, "gemma3-multimodal", "gemma3-bf16", "gemma3-f16"])
def test_quantized_matches_llamacpp(arch: str, ftype: str, converted, llamacpp) -> None:
    try:
        ref = _llamacpp.requantize(_reference(arch, "f32"), None, ftype, llama=llamacpp)
    except _llamacpp.BuildError as e:
        _unavailable(f"llama-quantize {ftype} of tiny {arch}", e)
        raise
    ours = converted(arch, ftype)
    if ours.read_bytes() != ref.read_bytes():  # say where they differ
        o, r = qrt.gguf.open(ours), qrt.gguf.open(ref)
        assert list(o.fields) == list(r.fields)
        assert_same_metadata(o, r)
        assert [(t.name, t.type, t.shape) for t in o.tensors.values()] == [
            (t.name, t.type, t.shape) for t in r.tensors.values()
        ]
        for name in r.tensors:
            assert np.array_equal(o.raw(name), r.raw(name)), name
        pytest.fail("files differ outside metadata and tensor data")


@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_M", "Q4_K_M", "Q5_K_S", "Q6_K", "Q4_0"])
def test_wide_quantized_matches_llamacpp(ftype: str, converted, llamacpp) -> None:
    """phi3 at hidden 256: K-quant rows everywhere, so the mixes' per-tensor rules (attn_qkv as attn_v, the
    first/last layers' extra bits, the output tensor's Q6_K) decide real types rather than fallbacks."""
    test_quantized_matches_llamacpp("phi3-wide", ftype, converted, llamacpp)
    types = {t.type for t in qrt.gguf.open(converted("phi3-wide", ftype)).tensors.values()}
    assert types - {"F32", "Q8_0", "Q4_0", "Q4_1", "Q5_0", "Q5_1"}, types  # K-quants were chosen


def test_cli_dry_run(tmp_path: pathlib.Path, capsys) -> None:
    from qrt_convert import cli

    out = tmp_path / "q.gguf"
    assert cli.main([str(_checkpoint("qwen3")), "-o", str(out), "--type", "Q8_0", "--dry-run"]) == 0
    text = capsys.readouterr().out
    assert "blk.1.attn_k_norm.weight" in text and "token_embd.weight" in text
    assert not out.exists()


def test_arch_specifics(converted) -> None:
    """What each architecture's file says, spelled out (the byte comparisons above say it matches)."""
    g = qrt.gguf.open(converted("gemma3", "F16"))
    ckpt_norm = _first_norm("gemma3")
    assert np.array_equal(g.dequantize("blk.0.attn_norm.weight"), ckpt_norm + np.float32(1.0))
    assert g.metadata["gemma3.attention.sliding_window"] == 16
    assert g.metadata["gemma3.final_logit_softcapping"] == 30.0
    assert g.metadata["gemma3.rope.freq_base_swa"] == 10000.0
    assert g.metadata["gemma3.attention.key_length"] == 64 and g.metadata["tokenizer.ggml.model"] == "llama"
    p = qrt.gguf.open(converted("phi3", "F16"))
    assert p.tensors["blk.0.attn_qkv.weight"].shape == (256, 128)  # q 128 + k 64 + v 64 rows
    assert p.tensors["blk.0.ffn_up.weight"].shape == (512, 128)  # gate and up, fused
    assert p.metadata["phi3.rope.dimension_count"] == 24  # partial rotary 0.75 of head_dim 32
    assert p.dequantize("rope_factors_long.weight")[1] == np.float32(1.5)
    assert "rope_factors_short.weight" in p.tensors
    q = qrt.gguf.open(converted("qwen3", "F16"))
    assert q.metadata["tokenizer.ggml.pre"] == "qwen2" and "blk.1.attn_q_norm.weight" in q.tensors
    assert len(q.metadata["tokenizer.ggml.tokens"]) == 151936
    for arch in ("llama3", "smollm3", "granite"):
        assert qrt.gguf.open(converted(arch, "F16")).metadata["tokenizer.ggml.pre"] == "llama-bpe"
    assert "rope_freqs.weight" in qrt.gguf.open(converted("llama3", "F16")).tensors
    gr = qrt.gguf.open(converted("granite", "F16")).metadata
    assert (gr["granite.embedding_scale"], gr["granite.residual_scale"], gr["granite.logit_scale"]) == (
        12.0,
        np.float32(0.22),
        4.0,
    )
    assert gr["granite.attention.scale"] == 0.03125 and "granite.attention.key_length" not in gr


def _first_norm(arch: str) -> np.ndarray:
    from qrt_convert.checkpoint import Checkpoint
    from qrt_convert.safetensors import to_float32

    name = "model.layers.0.input_layernorm.weight"
    with Checkpoint(_checkpoint(arch)) as ckpt:
        return to_float32(ckpt.file_of(name).read(name), ckpt.tensors[name].dtype)


# ---------------------------------------------------------------------------------------- hostile inputs


def _copy(arch: str, dst: pathlib.Path) -> pathlib.Path:
    shutil.copytree(_checkpoint(arch), dst, ignore=shutil.ignore_patterns(".*"))
    return dst


def _bad(hf: pathlib.Path, tmp_path: pathlib.Path, exc: type[Exception], match: str) -> str:
    out = tmp_path / "out.gguf"
    with pytest.raises(exc, match=match) as ei:
        qrt_convert.convert(hf, out, "Q8_0", progress=False)
    no_output(out)
    return str(ei.value)


def test_malformed_tokenizer_json(tmp_path: pathlib.Path) -> None:
    hf = _copy("qwen3", tmp_path / "qwen3")
    tj = hf / "tokenizer.json"
    good = tj.read_text(encoding="utf-8")
    tj.write_text(good[: len(good) // 2], encoding="utf-8")
    assert "tokenizer.json" in _bad(hf, tmp_path, qrt.FormatError, "not valid JSON")
    data = json.loads(good)
    data["model"]["type"] = "NoSuchModel"
    tj.write_text(json.dumps(data), encoding="utf-8")
    assert "tokenizer.json" in _bad(hf, tmp_path, qrt.FormatError, "not a valid tokenizer.json")
    data = json.loads(good)
    data["model"]["vocab"]["x" * 8] = 10**6  # an id past config.json's vocab_size
    tj.write_text(json.dumps(data), encoding="utf-8")
    _bad(hf, tmp_path, qrt.FormatError, "not below config.json vocab_size")


def test_unknown_pre_tokenizer(tmp_path: pathlib.Path) -> None:
    hf = _copy("llama3", tmp_path / "llama3")
    tj = hf / "tokenizer.json"
    data = json.loads(tj.read_text(encoding="utf-8"))
    data["pre_tokenizer"] = {
        "type": "ByteLevel",
        "add_prefix_space": True,
        "trim_offsets": True,
        "use_regex": True,
    }
    tj.write_text(json.dumps(data), encoding="utf-8")
    msg = _bad(hf, tmp_path, qrt.UnsupportedError, "does not know this BPE pre-tokenizer")
    assert "tokenizer.json" in msg and "--tokenizer-pre" in msg
    # a name given by the user is written as given
    out = tmp_path / "named.gguf"
    qrt_convert.convert(hf, out, "Q8_0", progress=False, tokenizer_pre="llama-bpe")
    assert qrt.gguf.open(out).metadata["tokenizer.ggml.pre"] == "llama-bpe"


def test_bad_longrope(tmp_path: pathlib.Path) -> None:
    hf = _copy("phi3", tmp_path / "phi3")
    cfg_path = hf / "config.json"
    good = json.loads(cfg_path.read_text())
    cfg = json.loads(json.dumps(good))
    cfg["rope_parameters"]["long_factor"] = cfg["rope_parameters"]["long_factor"][:-1]
    cfg_path.write_text(json.dumps(cfg))
    _bad(hf, tmp_path, qrt.FormatError, "rope long factors; 12 expected")
    cfg = json.loads(json.dumps(good))
    cfg["rope_parameters"]["short_factor"] = ["x"] * 12
    cfg_path.write_text(json.dumps(cfg))
    _bad(hf, tmp_path, qrt.FormatError, "short_factor is not a list of numbers")
    cfg = json.loads(json.dumps(good))
    cfg["rope_parameters"]["long_factor"][3] = float("nan")
    cfg_path.write_text(json.dumps(cfg))
    _bad(hf, tmp_path, qrt.FormatError, "long_factor is not a list of numbers")
    cfg = json.loads(json.dumps(good))
    cfg["rope_parameters"]["partial_rotary_factor"] = 0
    cfg_path.write_text(json.dumps(cfg))
    _bad(hf, tmp_path, qrt.FormatError, "partial_rotary_factor")
    cfg_path.write_text(json.dumps(good))
    (hf / "tokenizer.model").unlink()
    _bad(hf, tmp_path, qrt.FormatError, "phi3 checkpoint needs tokenizer.model")


def test_bad_phi3_added_tokens(tmp_path: pathlib.Path) -> None:
    """Phi3MiniModel.set_vocab indexes its token list with the added tokens' ids unchecked (an IndexError or
    a silently replaced token in llama.cpp); here each is checked and named."""
    hf = _copy("phi3", tmp_path / "phi3")
    tc_path = hf / "tokenizer_config.json"
    good = tc_path.read_text(encoding="utf-8")
    tc = json.loads(good)
    tc["added_tokens_decoder"]["40000"] = {"content": "<|x|>", "special": True}
    tc_path.write_text(json.dumps(tc), encoding="utf-8")
    _bad(hf, tmp_path, qrt.FormatError, r"token id 40000 is not in \[0, vocab_size 32064\)")
    tc = json.loads(good)
    tc["added_tokens_decoder"]["32001"] = {"special": True}
    tc_path.write_text(json.dumps(tc), encoding="utf-8")
    _bad(hf, tmp_path, qrt.FormatError, "token 32001 has no content string")
    tc_path.write_text(good, encoding="utf-8")
    tj = hf / "tokenizer.json"
    data = json.loads(tj.read_text(encoding="utf-8"))
    data["added_tokens"][0]["id"] = -1
    tj.write_text(json.dumps(data), encoding="utf-8")
    _bad(hf, tmp_path, qrt.FormatError, "tokenizer.json added_tokens: token id -1")
