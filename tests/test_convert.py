"""qrt-convert (``qrt_convert``, ``qrt.convert``): HF checkpoint -> GGUF, against llama.cpp's own converter.

* The SmolLM2 fixture (tests/support/hf_fixture.py: bf16 safetensors made from the Q4_1 GGUF with transformers)
  converted with ``--type Q4_K_M`` / ``Q8_0`` / other presets gives llama.cpp's convert_hf_to_gguf.py (f16) +
  llama-quantize file: same tensors, types, shapes, metadata (pre = "smollm"), byte-identical tensor data
  wherever the bf16 source survives llama.cpp's f16 intermediate exactly (for this fixture: every tensor,
  so the whole files are identical).
* qrt.gguf and gguf-py read the output, llama.cpp's llama-perplexity loads it.
* A SentencePiece checkpoint (tokenizer.model assembled from ggml-vocab-llama-spm.gguf) gives that vocabulary
  file's tokenizer metadata, and tokenizes like its .inp/.out test cases.
* Every BAD_INPUTS.md "HF checkpoint" case (24-27) is a clean error with no output file left.
"""

from __future__ import annotations

import json
import math
import os
import pathlib
import re
import shutil
import struct
import subprocess
import sys

import numpy as np
import pytest

import qrt
import qrt.gguf
import qrt_convert
from qrt_convert import cli
from qrt_convert.arch import permute_rows
from qrt_convert.checkpoint import Checkpoint
from tests.support import hf_fixture
from tests.support import llamacpp as _llamacpp
from tests.support.cache import cache_dir

VOCAB_DIR = _llamacpp.vocab_dir()
GPL = pathlib.Path(__file__).parent / "data" / "gpl-3.0.txt"


def _unavailable(what: str, err: BaseException) -> None:
    msg = f"{what} unavailable: {err}"
    if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
        pytest.fail(msg, pytrace=False)
    pytest.skip(msg)


# ---------------------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="session")
def smollm2_hf(smollm2_path: pathlib.Path) -> pathlib.Path:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    try:
        return hf_fixture.smollm2_hf()
    except Exception as e:
        _unavailable("SmolLM2 HF checkpoint fixture", e)
        raise


@pytest.fixture(scope="session")
def llamacpp_file(llamacpp: _llamacpp.LlamaCpp):
    """Factory: llama.cpp's own conversion of an HF dir: convert_hf_to_gguf.py f16, then llama-quantize."""
    pytest.importorskip("sentencepiece")  # convert_hf_to_gguf.py imports it unconditionally
    pytest.importorskip("transformers")

    def make(hf_dir: pathlib.Path, ftype: str) -> pathlib.Path:
        try:
            f16 = hf_fixture.llamacpp_f16(hf_dir, llamacpp.root)
            return f16 if ftype == "F16" else _llamacpp.requantize(f16, None, ftype, llama=llamacpp)
        except Exception as e:
            _unavailable(f"llama.cpp conversion of {hf_dir.name} to {ftype}", e)
            raise

    return make


@pytest.fixture(scope="session")
def converted(tmp_path_factory: pytest.TempPathFactory):
    """Factory: qrt-convert of an HF dir to a type (once per session)."""
    out_dir = tmp_path_factory.mktemp("converted")
    done: dict[tuple[str, str], pathlib.Path] = {}

    def make(hf_dir: pathlib.Path, ftype: str) -> pathlib.Path:
        key = (str(hf_dir), ftype)
        if key not in done:
            out = out_dir / f"{hf_dir.name}.{ftype}.gguf"
            qrt_convert.convert(hf_dir, out, ftype, progress=False)
            done[key] = out
        return done[key]

    return make


@pytest.fixture(scope="session")
def spm_hf() -> pathlib.Path:
    pytest.importorskip("sentencepiece")
    pytest.importorskip("google.protobuf")
    try:
        return hf_fixture.spm_llama_hf(VOCAB_DIR)
    except Exception as e:
        _unavailable("sentencepiece llama fixture", e)
        raise


# ---------------------------------------------------------------------------------------- helpers


def assert_same_metadata(ours: qrt.gguf.GGUFFile, ref: qrt.gguf.GGUFFile, *, order: bool = True) -> None:
    assert set(ours.fields) == set(ref.fields), set(ours.fields) ^ set(ref.fields)
    if order:
        assert list(ours.fields) == list(ref.fields)
    for key, f in ref.fields.items():
        g = ours.fields[key]
        assert (g.type, g.element_type) == (f.type, f.element_type), key
        assert g.value == f.value, key


def f16_exact(ckpt: Checkpoint, hf_name: str) -> bool:
    """Does the source tensor survive llama.cpp's f16 intermediate (bf16 -> f32 -> f16 -> f32) unchanged?"""
    from qrt_convert.safetensors import to_float32

    e = ckpt.tensors[hf_name]
    x = to_float32(ckpt.file_of(hf_name).read(hf_name), e.dtype)
    with np.errstate(over="ignore"):
        return bool(np.array_equal(x.astype(np.float16).astype(np.float32), x))


def tiny_spm_model(path: pathlib.Path, n: int) -> None:
    """A hand-encoded SentencePiece ModelProto with n pieces (<unk>, <s>, </s>, then letters)."""

    def varint(v: int) -> bytes:
        out = bytearray()
        while True:
            b, v = v & 0x7F, v >> 7
            out.append(b | (0x80 if v else 0))
            if not v:
                return bytes(out)

    def piece(text: str, score: float, ptype: int) -> bytes:
        t = text.encode()
        body = b"\x0a" + varint(len(t)) + t + b"\x15" + struct.pack("<f", score) + b"\x18" + varint(ptype)
        return b"\x0a" + varint(len(body)) + body

    pieces = [piece("<unk>", 0.0, 2), piece("<s>", 0.0, 3), piece("</s>", 0.0, 3)]
    pieces += [piece(f"\u2581{chr(97 + i % 26)}{i}", -float(i), 1) for i in range(n - 3)]
    path.write_bytes(b"".join(pieces))


@pytest.fixture()
def tiny(tmp_path: pathlib.Path) -> pathlib.Path:
    """A valid 2-layer llama checkpoint with a 64-piece SentencePiece tokenizer (converts in milliseconds)."""
    d = tmp_path / "tiny"
    hf_fixture.random_llama(d, vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96)
    tiny_spm_model(d / "tokenizer.model", 64)
    return d


def no_output(out: pathlib.Path) -> None:
    """Nothing under the output name and no temporary file left beside it."""
    assert not out.exists()
    if out.parent.is_dir():
        leftovers = [p.name for p in out.parent.iterdir() if p.name.startswith(f".{out.name}.")]
        assert not leftovers, leftovers


# ---------------------------------------------------------------------------------------- 1. vs llama.cpp


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q4_K_M", "Q8_0"])
def test_smollm2_matches_llamacpp(smollm2_hf, llamacpp_file, converted, ftype: str) -> None:
    ref_path = llamacpp_file(smollm2_hf, ftype)
    ours_path = converted(smollm2_hf, ftype)
    ours, ref = qrt.gguf.open(ours_path), qrt.gguf.open(ref_path)
    # same tensors, in the same order, with the same types and shapes
    assert [(t.name, t.type, t.shape) for t in ours.tensors.values()] == [
        (t.name, t.type, t.shape) for t in ref.tensors.values()
    ]
    assert len(ours.tensors) == 272
    # the same metadata: every key, its GGUF type and value, in the same order (tokens, merges, token types,
    # pre = "smollm", special ids, add_bos, chat template, hyperparameters, general.*)
    assert_same_metadata(ours, ref)
    assert ours.metadata["tokenizer.ggml.pre"] == "smollm"
    # tensor bytes: identical wherever the bf16 source values survive llama.cpp's f16 intermediate
    plan = qrt_convert.plan(smollm2_hf, ftype)
    with Checkpoint(smollm2_hf) as ckpt:
        identical = inexact = 0
        for t in plan.tensors:
            same = np.array_equal(ours.raw(t.name), ref.raw(t.name))
            if f16_exact(ckpt, t.hf_name):
                assert same, t.name
                identical += 1
            else:
                inexact += 1
    assert identical + inexact == 272
    if inexact == 0:  # then the files are byte-for-byte the same
        assert ours_path.read_bytes() == ref_path.read_bytes()


@pytest.mark.slow
def test_smollm2_f16_matches_llamacpp(smollm2_hf, llamacpp_file, converted) -> None:
    """Our F16 against convert_hf_to_gguf.py --outtype f16: the same tensors and bytes (Q/K permuted the same
    way), in llama.cpp's tensor and key order: the same file."""
    ours_path, ref_path = converted(smollm2_hf, "F16"), llamacpp_file(smollm2_hf, "F16")
    ours, ref = qrt.gguf.open(ours_path), qrt.gguf.open(ref_path)
    assert [(t.name, t.type, t.shape) for t in ours.tensors.values()] == [
        (t.name, t.type, t.shape) for t in ref.tensors.values()
    ]
    for name in ref.tensors:
        assert np.array_equal(ours.raw(name), ref.raw(name)), name
    assert_same_metadata(ours, ref)
    assert ours_path.read_bytes() == ref_path.read_bytes()


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q2_K", "Q3_K_M", "Q4_K_S", "Q5_K_M", "Q6_K", "Q4_0"])
def test_smollm2_presets_match_llamacpp(smollm2_hf, llamacpp_file, converted, ftype: str) -> None:
    """llama-quantize's mixes, with SmolLM2's n_embd=576 fallbacks (Q4_K -> Q5_0, Q6_K -> Q8_0, ...)."""
    assert converted(smollm2_hf, ftype).read_bytes() == llamacpp_file(smollm2_hf, ftype).read_bytes()


@pytest.mark.slow
def test_smollm2_readers_and_plan(smollm2_hf, converted) -> None:
    path = converted(smollm2_hf, "Q4_K_M")
    plan = qrt_convert.plan(smollm2_hf, "Q4_K_M")
    assert path.stat().st_size == plan.file_size
    gguf = pytest.importorskip("gguf")
    r = gguf.GGUFReader(path)
    assert len(r.tensors) == 272
    assert {t.name: t.tensor_type.name for t in r.tensors} == {t.name: t.type for t in plan.tensors}
    f = qrt.gguf.open(path)
    w = f.dequantize("blk.0.ffn_down.weight")
    assert w.shape == (576, 1536) and np.isfinite(w).all()
    counts: dict[str, int] = {}
    for t in f.tensors.values():
        counts[t.type] = counts.get(t.type, 0) + 1
    assert counts == {"Q5_0": 166, "F32": 61, "Q4_K": 16, "Q8_0": 15, "Q6_K": 14}


def _llama_perplexity(llamacpp, path: pathlib.Path) -> float:
    proc = subprocess.run(
        [
            str(llamacpp.perplexity),
            "-m",
            str(path),
            "-f",
            str(GPL),
            "-c",
            "512",
            "-b",
            "512",
            "--chunks",
            "1",
            "-t",
            "2",
        ],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    m = re.search(r"Final estimate: PPL = ([0-9.]+)", proc.stdout + proc.stderr)
    assert proc.returncode == 0 and m, (proc.stdout + proc.stderr)[-2000:]
    return float(m.group(1))


@pytest.mark.slow
@pytest.mark.parametrize("ftype", ["Q8_0", "Q4_K_M"])
def test_llama_perplexity_loads_ours(smollm2_hf, converted, llamacpp, ftype: str) -> None:
    ppl = _llama_perplexity(llamacpp, converted(smollm2_hf, ftype))
    assert 5 < ppl < 60, ppl


# ---------------------------------------------------------------------------------------- CLI, progress, plan


@pytest.mark.slow
def test_cli_progress_and_dry_run(smollm2_hf, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "cli.gguf"
    proc = subprocess.run(
        [sys.executable, "-m", "qrt_convert", str(smollm2_hf), "-o", str(out), "--type", "q5_k_s"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "token_embd.weight" in proc.stderr or "blk." in proc.stderr  # the bar names the tensor
    assert "B/s" in proc.stderr and "wrote" in proc.stderr
    dry = subprocess.run(
        [sys.executable, "-m", "qrt_convert", str(smollm2_hf), "--type", "Q5_K_S", "--dry-run"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert dry.returncode == 0, dry.stderr
    lines = dry.stdout.splitlines()
    assert re.match(
        r"blk\.0\.ffn_down\.weight\s+\{1536, 576\}\s+Q5_K\s+[\d,]+$",
        next(ln for ln in lines if ln.startswith("blk.0.ffn_down")),
    )
    size = int(re.search(r"expected file size ([\d,]+) bytes", dry.stdout).group(1).replace(",", ""))
    assert size == out.stat().st_size


def test_cli_dry_run_and_errors(tiny: pathlib.Path, tmp_path: pathlib.Path, capsys) -> None:
    assert cli.main([str(tiny), "--dry-run", "--type", "Q8_0"]) == 0
    text = capsys.readouterr().out
    assert "blk.1.attn_q.weight" in text and "expected file size" in text
    with pytest.raises(SystemExit):  # -o is required without --dry-run
        cli.main([str(tiny)])
    assert cli.main([str(tmp_path / "nope"), "-o", str(tmp_path / "x.gguf")]) == 1
    assert "qrt-convert: error" in capsys.readouterr().err


def test_api_and_types(tiny: pathlib.Path, tmp_path: pathlib.Path) -> None:
    assert set(qrt_convert.TYPES) >= {
        "F16",
        "BF16",
        "Q8_0",
        "Q4_0",
        "Q4_1",
        "Q5_0",
        "Q5_1",
        "Q2_K",
        "Q3_K_M",
        "Q4_K_S",
        "Q4_K_M",
        "Q5_K_S",
        "Q5_K_M",
        "Q6_K",
        "NF4",
    }
    for ftype in qrt_convert.TYPES:
        out = tmp_path / f"{ftype}.gguf"
        plan = qrt.convert(tiny, out, type=ftype, progress=False)
        assert out.stat().st_size == plan.file_size, ftype
        f = qrt.gguf.open(out)
        assert f.metadata["general.file_type"] == qrt_convert.presets.FTYPES[ftype][0]
        assert len(f.tensors) == 2 + 1 + 2 * 9, ftype
    with pytest.raises(ValueError, match="unknown type"):
        qrt.convert(tiny, tmp_path / "x.gguf", type="Q4_K_X", progress=False)
    no_output(tmp_path / "x.gguf")


def test_permutation_and_values(tiny: pathlib.Path, tmp_path: pathlib.Path) -> None:
    """F32-exact check of the tensor map: Q/K rows permuted as llama.cpp does (FORMATS.md §1.4), the rest as is."""
    out = tmp_path / "f16.gguf"
    qrt_convert.convert(tiny, out, "BF16", progress=False)
    f = qrt.gguf.open(out)
    with Checkpoint(tiny) as ckpt:
        from qrt_convert.safetensors import to_float32

        def src(name: str) -> np.ndarray:
            return to_float32(ckpt.file_of(name).read(name), "BF16")

        q = src("model.layers.1.self_attn.q_proj.weight")
        k = src("model.layers.1.self_attn.k_proj.weight")
        got_q = f.dequantize("blk.1.attn_q.weight")
        assert np.array_equal(got_q, permute_rows(q, 4))
        assert np.array_equal(f.dequantize("blk.1.attn_k.weight"), permute_rows(k, 2))
        # adjacent pairs: row 1 of head 0 is the original row hd/2
        assert np.array_equal(got_q[1], q[8])
        assert np.array_equal(
            f.dequantize("blk.0.ffn_down.weight"), src("model.layers.0.mlp.down_proj.weight")
        )
        assert f.tensors["blk.0.attn_norm.weight"].type == "F32"
    assert f.metadata["llama.rope.dimension_count"] == 16
    assert f.metadata["tokenizer.ggml.model"] == "llama"


# ---------------------------------------------------------------------------------------- NF4


def test_nf4_file(tiny: pathlib.Path, tmp_path: pathlib.Path, capsys) -> None:
    out = tmp_path / "nf4.gguf"
    assert cli.main([str(tiny), "-o", str(out), "--type", "NF4"]) == 0
    assert "llama.cpp" in capsys.readouterr().err  # says that llama.cpp cannot read it
    f = qrt.gguf.open(out)
    assert f.metadata["qrt.format_version"] == 1
    assert f.tensors["blk.0.ffn_up.weight"].type == "NF4"
    assert f.tensors["token_embd.weight"].type == "Q8_0"
    ref = qrt.gguf.open(_f16(tiny, tmp_path))
    a, b = f.dequantize("blk.0.ffn_up.weight"), ref.dequantize("blk.0.ffn_up.weight")
    assert math.sqrt(((a - b) ** 2).mean() / (b**2).mean()) < 0.12
    assert "llama.cpp" in qrt_convert.plan(tiny, "NF4").describe()


def _f16(tiny: pathlib.Path, tmp_path: pathlib.Path) -> pathlib.Path:
    out = tmp_path / "ref.f16.gguf"
    if not out.exists():
        qrt_convert.convert(tiny, out, "F16", progress=False)
    return out


# ---------------------------------------------------------------------------------------- SentencePiece


def test_spm_vocab_equals_vocab_file(spm_hf: pathlib.Path, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "spm.gguf"
    qrt_convert.convert(spm_hf, out, "Q8_0", progress=False)
    ours = qrt.gguf.open(out)
    ref = qrt.gguf.open(VOCAB_DIR / hf_fixture.SPM_VOCAB)
    tok_keys = [k for k in ref.fields if k.startswith("tokenizer.")]
    assert [k for k in ours.fields if k.startswith("tokenizer.")] == tok_keys
    for k in tok_keys:
        assert ours.fields[k] == ref.fields[k], k
    try:  # qrt's tokenizer on the converted file, on llama.cpp's test cases for that vocabulary
        from qrt.tokenizer import Tokenizer
        from tests.test_tokenizer import read_vocab_tests
    except ImportError:
        return
    tok = Tokenizer.from_gguf(out)
    cases = read_vocab_tests(VOCAB_DIR / hf_fixture.SPM_VOCAB)
    for text, ids in cases:
        assert tok.encode(text, add_bos=False) == ids, text


@pytest.mark.slow
def test_spm_matches_llamacpp(spm_hf, llamacpp_file, converted) -> None:
    assert converted(spm_hf, "Q8_0").read_bytes() == llamacpp_file(spm_hf, "Q8_0").read_bytes()


# ---------------------------------------------------------------------------------------- Qwen2


@pytest.mark.slow
def test_qwen2(smollm2_hf, tmp_path: pathlib.Path) -> None:
    d = tmp_path / "qwen2"
    hf_fixture.random_llama(
        d,
        vocab_size=49152,
        n_embd=256,
        n_layer=2,
        n_head=4,
        n_head_kv=2,
        n_ff=512,
        arch="Qwen2ForCausalLM",
        tie=True,
    )
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja"):
        shutil.copy(smollm2_hf / name, d / name)
    out = tmp_path / "q.gguf"
    qrt_convert.convert(d, out, "Q4_K_M", progress=False)
    f = qrt.gguf.open(out)
    assert f.metadata["general.architecture"] == "qwen2"
    assert f.metadata["qwen2.block_count"] == 2 and "qwen2.rope.dimension_count" not in f.metadata
    assert f.tensors["blk.1.attn_q.bias"].type == "F32" and "output.weight" not in f.tensors
    assert f.tensors["token_embd.weight"].type == "Q6_K"  # tied: the output rule, n_embd 256
    assert f.metadata["tokenizer.ggml.pre"] == "smollm"
    f16 = tmp_path / "q16.gguf"
    qrt_convert.convert(d, f16, "BF16", progress=False)
    with Checkpoint(d) as ckpt:
        from qrt_convert.safetensors import to_float32

        q = to_float32(
            ckpt.file_of("model.layers.0.self_attn.q_proj.weight").read(
                "model.layers.0.self_attn.q_proj.weight"
            ),
            "BF16",
        )
    assert np.array_equal(
        qrt.gguf.open(f16).dequantize("blk.0.attn_q.weight"), q
    )  # NeoX RoPE: no permutation


# ---------------------------------------------------------------------------------------- BAD_INPUTS 24-25


def _one_tensor_file(
    path: pathlib.Path,
    header: object,
    data: bytes = b"",
    raw_header: bytes | None = None,
    n: int | None = None,
) -> None:
    h = raw_header if raw_header is not None else json.dumps(header).encode()
    path.write_bytes((len(h) if n is None else n).to_bytes(8, "little") + h + data)


def _bad(
    tiny: pathlib.Path, tmp_path: pathlib.Path, match: str, exc: type[Exception] = qrt.FormatError
) -> str:
    out = tmp_path / "out" / "bad.gguf"
    out.parent.mkdir(exist_ok=True)
    with pytest.raises(exc, match=match) as ei:
        qrt_convert.convert(tiny, out, "Q8_0", progress=False)
    no_output(out)
    return str(ei.value)


E = "model.embed_tokens.weight"


@pytest.mark.parametrize(
    ("header", "data", "match"),
    [
        (
            {
                E: {"dtype": "F32", "shape": [1], "data_offsets": [0, 4]},
                "x": {"dtype": "F32", "shape": [1], "data_offsets": [8, 12]},
            },
            bytes(12),
            "gap of 4 bytes",
        ),
        (
            {
                E: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "x": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            bytes(12),
            "overlap",
        ),
        ({E: {"dtype": "F32", "shape": [0], "data_offsets": [8, 4]}}, bytes(8), "end 4 < start 8"),
        (
            {E: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}},
            bytes(12),
            "cover 8 bytes of a 12-byte",
        ),
        (
            {E: {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}},
            bytes(8),
            r"shape \[3\] x F32 is 12 bytes",
        ),
        ({E: {"dtype": "F32", "shape": [2**40, 2**40], "data_offsets": [0, 8]}}, bytes(8), "overflows"),
        ({E: {"dtype": "F12", "shape": [2], "data_offsets": [0, 8]}}, bytes(8), "unknown dtype 'F12'"),
        ({E: {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, bytes(8), "non-negative integers"),
        ({E: {"dtype": "F32", "shape": [2.0], "data_offsets": [0, 8]}}, bytes(8), "non-negative integers"),
        ({E: {"dtype": "F32", "shape": [2], "data_offsets": [0]}}, bytes(8), "data_offsets"),
        (
            {E: {"dtype": "F32", "shape": [20], "data_offsets": [0, 80]}},
            bytes(8),
            "past the end of the data buffer",
        ),
        ({E: [1, 2]}, b"", "not an object"),
        ({E: {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}, bytes(8), "exactly dtype"),
        ({"__metadata__": {"a": 1}}, b"", "__metadata__"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_safetensors_offsets(tiny, tmp_path, header, data, match) -> None:  # BAD_INPUTS 25
    _one_tensor_file(tiny / "model.safetensors", header, data)
    msg = _bad(tiny, tmp_path, match)
    assert "model.safetensors" in msg
    name = next((k for k in header if k != "__metadata__" and (k in msg)), None)
    if match not in ("cover 8 bytes of a 12-byte", "__metadata__"):
        assert name is not None, msg  # names the tensor


@pytest.mark.parametrize(
    ("raw", "n", "match"),
    [
        (b"{}", 0, "header length is 0"),
        (b"{}", 100_000_001, "exceeds the 100000000-byte limit"),
        (b"{}", 4096, "runs past the end of the file"),
        (b'{"\xff": 1}', None, "not UTF-8"),
        (b"[1, 2]", None, "JSON list, not an object"),
        (b"7", None, "JSON int, not an object"),
        (b"{not json", None, "not valid JSON"),
        (b'{"a": {}, "a": {}}', None, "duplicate key"),
        (b"[" * 100000 + b"]" * 100000, None, "not valid JSON"),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_bad_safetensors_header(tiny, tmp_path, raw, n, match) -> None:  # BAD_INPUTS 24
    _one_tensor_file(tiny / "model.safetensors", None, b"", raw_header=raw, n=n)
    assert "model.safetensors" in _bad(tiny, tmp_path, match)


def test_bad_safetensors_huge_header(tiny, tmp_path) -> None:
    p = tiny / "model.safetensors"
    with open(p, "wb") as f:  # sparse: a header length just over the limit in a file that is that big
        f.write((100_000_001).to_bytes(8, "little") + b"{")
        f.truncate(100_000_100)
    _bad(tiny, tmp_path, "exceeds the 100000000-byte limit")
    p.write_bytes(b"\x01\x00")
    _bad(tiny, tmp_path, "too short")


def test_bad_checkpoint_content(tiny, tmp_path) -> None:
    import qrt_convert.safetensors as st

    with st.SafetensorsFile(tiny / "model.safetensors") as f:
        tensors = {n: (e.dtype, list(e.shape), bytes(f.read(n).view(np.uint8))) for n, e in f.tensors.items()}
    # a layer tensor missing
    t = dict(tensors)
    del t["model.layers.1.mlp.up_proj.weight"]
    hf_fixture.write_safetensors(tiny / "model.safetensors", t)
    _bad(tiny, tmp_path, "lacks tensors blk.1.ffn_up.weight")
    # a weight in an integer dtype
    t = dict(tensors)
    t["model.layers.0.mlp.up_proj.weight"] = (
        "I16",
        t["model.layers.0.mlp.up_proj.weight"][1],
        t["model.layers.0.mlp.up_proj.weight"][2],
    )
    hf_fixture.write_safetensors(tiny / "model.safetensors", t)
    _bad(tiny, tmp_path, "is I16", qrt.UnsupportedError)
    # an unknown tensor
    t = dict(tensors)
    t["model.layers.0.self_attn.rotary_emb.weight"] = ("F32", [1], bytes(4))
    hf_fixture.write_safetensors(tiny / "model.safetensors", t)
    _bad(tiny, tmp_path, "no GGUF name", qrt.UnsupportedError)
    # shape that does not match the config
    t = dict(tensors)
    t["model.layers.0.mlp.down_proj.weight"] = ("BF16", [64, 48], bytes(64 * 48 * 2))
    hf_fixture.write_safetensors(tiny / "model.safetensors", t)
    _bad(tiny, tmp_path, "blk.0.ffn_down.weight: shape")
    # non-finite weights
    t = dict(tensors)
    t["model.layers.0.mlp.down_proj.weight"] = (
        "F32",
        [64, 96],
        np.full((64, 96), np.inf, np.float32).tobytes(),
    )
    hf_fixture.write_safetensors(tiny / "model.safetensors", t)
    _bad(tiny, tmp_path, "down_proj.weight.*cannot quantize")


@pytest.mark.parametrize(
    ("edit", "match", "exc"),
    [
        ({"architectures": ["GPT2LMHeadModel"]}, "not supported", qrt.UnsupportedError),
        ({"architectures": None}, "architectures", qrt.FormatError),
        ({"num_hidden_layers": "2"}, "num_hidden_layers", qrt.FormatError),
        ({"num_attention_heads": 0}, "num_attention_heads", qrt.FormatError),
        ({"num_key_value_heads": 3}, "not a multiple", qrt.FormatError),
        ({"vocab_size": 65}, "vocab_size", qrt.FormatError),
        ({"rms_norm_eps": "x"}, "rms_norm_eps", qrt.FormatError),
        ({"quantization_config": {"quant_method": "gptq"}}, "already quantized", qrt.UnsupportedError),
    ],
)
def test_bad_config(tiny, tmp_path, edit, match, exc) -> None:
    cfg = json.loads((tiny / "config.json").read_text())
    cfg.update(edit)
    (tiny / "config.json").write_text(json.dumps(cfg))
    _bad(tiny, tmp_path, match, exc)


def test_bad_json_and_tokenizer_files(tiny, tmp_path) -> None:
    (tiny / "config.json").write_bytes(b"\xff\xfe")
    _bad(tiny, tmp_path, "config.json: not UTF-8")
    (tiny / "config.json").write_text("[1]")
    _bad(tiny, tmp_path, "expected a JSON object")
    (tiny / "config.json").unlink()
    _bad(tiny, tmp_path, "no config.json")


def test_bad_sentencepiece_model(tiny, tmp_path) -> None:
    good = (tiny / "tokenizer.model").read_bytes()
    (tiny / "tokenizer.model").write_bytes(good[:-3])
    msg = _bad(tiny, tmp_path, "sentencepiece model")
    assert "tokenizer.model" in msg
    (tiny / "tokenizer.model").write_bytes(b"\x0a\xff\xff\xff\xff\x0f")
    _bad(tiny, tmp_path, "runs past the end")
    (tiny / "tokenizer.model").write_bytes(b"\x0a\x02\x18\x09")
    _bad(tiny, tmp_path, "not a known type")
    (tiny / "tokenizer.model").unlink()
    _bad(tiny, tmp_path, "no tokenizer.json or tokenizer.model")
    (tiny / "tokenizer.json").write_text('{"model": ')
    _bad(tiny, tmp_path, "tokenizer.json: not valid JSON")


# ---------------------------------------------------------------------------------------- BAD_INPUTS 26


def test_pickle_checkpoints_refused(tiny, tmp_path) -> None:
    (tiny / "model.safetensors").unlink()
    marker = tmp_path / "unpickled"
    import pickle

    class Boom:
        def __reduce__(self):
            return (pathlib.Path.touch, (marker,))

    (tiny / "pytorch_model.bin").write_bytes(pickle.dumps(Boom()))
    msg = _bad(tiny, tmp_path, "never unpickles", qrt.UnsupportedError)
    assert "safetensors" in msg and "save_pretrained" in msg
    (tiny / "pytorch_model.bin").rename(tiny / "consolidated.pt")
    _bad(tiny, tmp_path, "consolidated.pt", qrt.UnsupportedError)
    assert not marker.exists()


def test_remote_code_ignored(tiny, tmp_path, capsys) -> None:
    marker = tmp_path / "remote_code_ran"
    (tiny / "modeling_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    (tiny / "configuration_evil.py").write_text(f"open({str(marker)!r}, 'w').close()\n")
    cfg = json.loads((tiny / "config.json").read_text())
    cfg["auto_map"] = {
        "AutoConfig": "configuration_evil.EvilConfig",
        "AutoModelForCausalLM": "modeling_evil.EvilModel",
    }
    (tiny / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "ok.gguf"
    qrt_convert.convert(tiny, out, "Q8_0", progress=True)
    assert "auto_map" in capsys.readouterr().err
    assert out.is_file() and not marker.exists()
    assert "modeling_evil" not in sys.modules


def _shard(tiny: pathlib.Path) -> dict:
    """Split tiny's model.safetensors into two shards + index; returns the index."""
    import qrt_convert.safetensors as st

    with st.SafetensorsFile(tiny / "model.safetensors") as f:
        tensors = {n: (e.dtype, list(e.shape), bytes(f.read(n).view(np.uint8))) for n, e in f.tensors.items()}
    (tiny / "model.safetensors").unlink()
    names = sorted(tensors)
    parts = {"model-00001-of-00002.safetensors": names[::2], "model-00002-of-00002.safetensors": names[1::2]}
    for shard, ns in parts.items():
        hf_fixture.write_safetensors(tiny / shard, {n: tensors[n] for n in ns})
    index = {"metadata": {}, "weight_map": {n: s for s, ns in parts.items() for n in ns}}
    (tiny / "model.safetensors.index.json").write_text(json.dumps(index))
    return index


def test_sharded_checkpoint(tiny, tmp_path) -> None:
    single = tmp_path / "single.gguf"
    qrt_convert.convert(tiny, single, "Q4_K_M", progress=False)
    _shard(tiny)
    sharded = tmp_path / "sharded.gguf"
    qrt_convert.convert(tiny, sharded, "Q4_K_M", progress=False)
    assert single.read_bytes() == sharded.read_bytes()


@pytest.mark.parametrize(
    ("target", "match"),
    [
        ("../outside.safetensors", "points outside the checkpoint directory"),
        ("/etc/passwd", "points outside the checkpoint directory"),
        ("sub/../../x.safetensors", "points outside"),
        ("model-00009-of-00002.safetensors", "is missing"),
        ("link.safetensors", "resolves outside"),
        ("config.json", "not a .safetensors file"),
        (7, "not a file name"),
    ],
)
def test_bad_shard_index(tiny, tmp_path, target, match) -> None:
    index = _shard(tiny)
    outside = tmp_path / "outside.safetensors"
    shutil.copy(tiny / "model-00001-of-00002.safetensors", outside)
    (tiny / "link.safetensors").symlink_to(outside)
    first = next(iter(index["weight_map"]))
    index["weight_map"][first] = target
    (tiny / "model.safetensors.index.json").write_text(json.dumps(index))
    _bad(tiny, tmp_path, match)


def test_shard_index_tensor_not_in_shard(tiny, tmp_path) -> None:
    index = _shard(tiny)
    index["weight_map"]["model.layers.9.mlp.up_proj.weight"] = "model-00001-of-00002.safetensors"
    (tiny / "model.safetensors.index.json").write_text(json.dumps(index))
    _bad(tiny, tmp_path, "is not in its shard")
    index["weight_map"] = {}
    (tiny / "model.safetensors.index.json").write_text(json.dumps(index))
    _bad(tiny, tmp_path, "no weight_map")


def test_duplicate_tensor_across_shards(tiny, tmp_path) -> None:
    index = _shard(tiny)
    shutil.copy(tiny / "model-00001-of-00002.safetensors", tiny / "model-00002-of-00002.safetensors")
    _bad(tiny, tmp_path, "is also in")
    del index


# ---------------------------------------------------------------------------------------- BAD_INPUTS 27


def test_unwritable_output(tiny, tmp_path) -> None:
    with pytest.raises(FileNotFoundError):
        qrt_convert.convert(tiny, tmp_path / "no" / "such" / "dir" / "x.gguf", "Q8_0", progress=False)
    assert not (tmp_path / "no").exists()
    (tmp_path / "afile").write_text("x")
    with pytest.raises(NotADirectoryError):
        qrt_convert.convert(tiny, tmp_path / "afile" / "x.gguf", "Q8_0", progress=False)
    with pytest.raises(IsADirectoryError):
        qrt_convert.convert(tiny, tmp_path, "Q8_0", progress=False)
    assert cli.main([str(tiny), "-o", str(tmp_path / "no" / "x.gguf"), "--no-progress"]) == 1


_DISK_FULL = """
import resource, signal, sys
import qrt_convert
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # write() then fails with EFBIG instead of killing us
resource.setrlimit(resource.RLIMIT_FSIZE, (int(sys.argv[3]), int(sys.argv[3])))
try:
    qrt_convert.convert(sys.argv[1], sys.argv[2], "Q8_0", progress=False)
except OSError as e:
    print("OSError", e.errno)
    sys.exit(3)
"""


@pytest.mark.parametrize("limit", [100, 60_000])
def test_disk_full_mid_write(tiny, tmp_path, limit: int) -> None:
    """The file system refuses more bytes part-way (RLIMIT_FSIZE stands in for a full disk): an OSError, and
    neither the output nor a temporary file is left; an existing file under the output name is untouched."""
    out = tmp_path / "full.gguf"
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tiny), str(out), str(limit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3, proc.stdout + proc.stderr
    assert "OSError 27" in proc.stdout  # EFBIG
    no_output(out)
    out.write_bytes(b"previous")
    proc = subprocess.run(
        [sys.executable, "-c", _DISK_FULL, str(tiny), str(out), str(limit)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 3
    assert out.read_bytes() == b"previous"
    assert not [p.name for p in tmp_path.iterdir() if p.name.startswith(".full.gguf.")]


def test_interrupted_conversion_leaves_nothing(tiny, tmp_path, monkeypatch) -> None:
    import qrt_convert.converter as conv

    calls = 0
    real = conv._encode

    def flaky(t, x, n):
        nonlocal calls
        calls += 1
        if calls == 5:
            raise KeyboardInterrupt
        return real(t, x, n)

    monkeypatch.setattr(conv, "_encode", flaky)
    out = tmp_path / "int.gguf"
    with pytest.raises(KeyboardInterrupt):
        qrt_convert.convert(tiny, out, "Q8_0", progress=False)
    no_output(out)


# ---------------------------------------------------------------------------------------- memory


@pytest.mark.slow
def test_peak_rss_well_under_source(smollm2_hf) -> None:
    # VmHWM (this process's peak RSS, reset by exec; ru_maxrss would carry over pytest's own from the fork)
    code = (
        "import sys, qrt_convert\n"
        "qrt_convert.convert(sys.argv[1], sys.argv[2], 'Q4_K_M', progress=False)\n"
        "print(next(ln.split()[1] for ln in open('/proc/self/status') if ln.startswith('VmHWM:')))\n"
    )
    out = cache_dir() / "rss-test.gguf"
    try:
        proc = subprocess.run(
            [sys.executable, "-c", code, str(smollm2_hf), str(out)],
            capture_output=True,
            text=True,
            check=True,
        )
    finally:
        out.unlink(missing_ok=True)
    rss = int(proc.stdout.split()[-1]) * 1024
    source = (smollm2_hf / "model.safetensors").stat().st_size
    assert rss < 0.6 * source, (rss, source)


@pytest.mark.parametrize(
    ("tokenizer_json", "tokenizer_config"),
    [
        (
            {
                "added_tokens": [5, {"content": 3}],
                "normalizer": {"type": "Sequence", "normalizers": 5},
                "post_processor": {
                    "type": "TemplateProcessing",
                    "single": [{"SpecialToken": []}, {"Sequence": {}}],
                    "pair": [1, {"Sequence": 3}, 3],
                },
            },
            {
                "bos_token": {"content": 5},
                "chat_template": 7,
                "added_tokens_decoder": {"1": {"content": "<s>", "special": True}},
            },
        ),
        ({"added_tokens": "x"}, {}),
        ({"post_processor": {"type": "RobertaProcessing", "cls": 5}}, {"added_tokens_decoder": {"x": {}}}),
        ({"model": {"merges": [[1, 2]]}}, {"add_prefix_space": "yes"}),
        ([], {"chat_template": [{"name": 5}, 7]}),
    ],
)
def test_odd_tokenizer_json_is_a_clean_error_or_ignored(
    tiny, tmp_path, tokenizer_json, tokenizer_config
) -> None:
    """Untrusted tokenizer files of unexpected shapes: converted (odd parts ignored, as gguf-py does) or a
    FormatError, never another exception."""
    (tiny / "tokenizer.json").write_text(json.dumps(tokenizer_json))
    (tiny / "tokenizer_config.json").write_text(json.dumps(tokenizer_config))
    out = tmp_path / "odd.gguf"
    try:
        qrt_convert.convert(tiny, out, "Q8_0", progress=False)
    except qrt.FormatError:
        no_output(out)
    else:
        assert qrt.gguf.open(out).metadata["tokenizer.ggml.model"] == "llama"


def test_mistral_is_llama(tiny, tmp_path) -> None:
    cfg = json.loads((tiny / "config.json").read_text())
    cfg.update(architectures=["MistralForCausalLM"], model_type="mistral", sliding_window=4096)
    del cfg["max_position_embeddings"]
    (tiny / "config.json").write_text(json.dumps(cfg))
    out = tmp_path / "m.gguf"
    qrt_convert.convert(tiny, out, "Q4_K_M", progress=False)
    f = qrt.gguf.open(out)
    assert f.metadata["general.architecture"] == "llama"
    assert (
        f.metadata["llama.context_length"] == 131072
    )  # MistralConfig's default, as llama.cpp's converter sees it
    assert f.metadata["llama.attention.head_count_kv"] == 2
