"""``qrt-convert --imatrix FILE`` against ``llama-quantize --imatrix FILE``: the same bytes.

Reference: llama.cpp's convert_hf_to_gguf.py (f16) of the SmolLM2 bf16 fixture, then
``llama-quantize --imatrix FILE F16 OUT FTYPE``. The importance matrix is synthetic (heavy-tailed positive
Σx² per column for every block matrix, in both file formats), so the test does not depend on running a model;
tests/test_imatrix.py checks qrt-imatrix's own files. Also: what an imatrix changes in the type selection
(Q4_0/Q5_0 ffn_down, Q2_K_S), and BAD_INPUTS 45 (an imatrix made for another model).
"""

from __future__ import annotations

import pathlib
import subprocess
import sys

import numpy as np
import pytest

import qrt
import qrt_convert
from qrt.imatrix_file import Imatrix, ImatrixEntry, write_gguf
from qrt_convert import cli
from tests.support import hf_fixture
from tests.test_imatrix_file import write_legacy

# Every preset qrt-convert shares with llama-quantize, plus Q2_K_S (which needs the imatrix).
PRESETS = "Q4_0 Q4_1 Q5_0 Q5_1 Q8_0 Q2_K Q2_K_S Q3_K_S Q3_K_M Q3_K_L Q4_K_S Q4_K_M Q5_K_S Q5_K_M Q6_K".split()


def synthetic_imatrix(model: pathlib.Path, seed: int = 0) -> Imatrix:
    """An importance matrix for every blk.* matrix of the GGUF ``model``, shaped like llama-imatrix's."""
    rng = np.random.default_rng(seed)
    entries = {}
    with qrt.gguf.open(model) as f:
        for name, t in f.tensors.items():
            if name.startswith("blk.") and len(t.shape) == 2:
                x = rng.standard_normal(t.shape[-1]) * np.exp(rng.normal(0, 1.5, t.shape[-1]))
                entries[name] = ImatrixEntry(
                    (x**2 * 4096).astype(np.float32)[None], np.array([4096], np.int64)
                )
    return Imatrix(entries, ["calibration.txt"], 8, 512)


@pytest.fixture(scope="module")
def smollm2_hf(smollm2_path: pathlib.Path) -> pathlib.Path:
    pytest.importorskip("transformers")
    pytest.importorskip("torch")
    return hf_fixture.smollm2_hf()


@pytest.fixture(scope="module")
def imatrices(
    smollm2_path: pathlib.Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, pathlib.Path]:
    d = tmp_path_factory.mktemp("imatrix")
    m = synthetic_imatrix(smollm2_path)
    write_gguf(d / "smol.imatrix.gguf", m)
    write_legacy(d / "smol.imatrix.dat", m)
    return {"gguf": d / "smol.imatrix.gguf", "dat": d / "smol.imatrix.dat"}


def llama_quantize_imatrix(llamacpp, src: pathlib.Path, dst: pathlib.Path, ftype: str, imatrix: pathlib.Path):
    proc = subprocess.run(
        [str(llamacpp.quantize), "--imatrix", str(imatrix), str(src), str(dst), ftype, "2"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]


@pytest.mark.slow
@pytest.mark.parametrize("ftype", PRESETS)
@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_imatrix_presets_match_llama_quantize(
    smollm2_hf, llamacpp, imatrices, tmp_path: pathlib.Path, ftype: str, fmt: str
) -> None:
    if fmt == "dat" and ftype not in ("Q4_0", "Q2_K_S", "Q4_K_M"):
        pytest.skip("the legacy format is checked on three presets")
    imatrix = imatrices[fmt]
    f16 = hf_fixture.llamacpp_f16(smollm2_hf, llamacpp.root)
    ref = tmp_path / "ref.gguf"
    llama_quantize_imatrix(llamacpp, f16, ref, ftype, imatrix)
    ours = tmp_path / "ours.gguf"
    qrt_convert.convert(smollm2_hf, ours, ftype, progress=False, n_threads=2, imatrix=str(imatrix))
    if ours.read_bytes() != ref.read_bytes():
        with qrt.gguf.open(ours) as a, qrt.gguf.open(ref) as b:
            assert a.metadata == b.metadata
            for name, t in b.tensors.items():
                assert a.tensors[name].type == t.type, name
                assert np.array_equal(a.raw(name), b.raw(name)), f"{ftype}: {name} ({t.type}) differs"
        pytest.fail("files differ outside metadata values and tensor data")


def test_imatrix_changes_the_types(tmp_path: pathlib.Path) -> None:
    """Q4_0 with an imatrix: the first n_layer/8 ffn_down become Q4_1 (llama-quantize's guard); the metadata."""
    d = tmp_path / "ckpt"
    hf_fixture.random_llama(d, vocab_size=64, n_embd=64, n_layer=16, n_head=4, n_head_kv=2, n_ff=96)
    from tests.test_convert import tiny_spm_model

    tiny_spm_model(d / "tokenizer.model", 64)
    plain = qrt_convert.convert(d, tmp_path / "plain.gguf", "Q4_0", progress=False)
    ref = tmp_path / "plain.gguf"
    path = tmp_path / "m.imatrix.gguf"
    write_gguf(path, synthetic_imatrix(ref))
    out = tmp_path / "imat.gguf"
    plan = qrt_convert.convert(d, out, "Q4_0", progress=False, imatrix=str(path))
    before = {t.name: t.type for t in plain.tensors}
    after = {t.name: t.type for t in plan.tensors}
    assert [n for n in after if after[n] != before[n]] == ["blk.0.ffn_down.weight", "blk.1.ffn_down.weight"]
    assert after["blk.0.ffn_down.weight"] == "Q4_1"
    with qrt.gguf.open(out) as f:
        keys = list(f.metadata)
        assert keys[-5:] == [
            "general.file_type",
            "quantize.imatrix.file",
            "quantize.imatrix.dataset",
            "quantize.imatrix.entries_count",
            "quantize.imatrix.chunks_count",
        ]
        assert f.metadata["quantize.imatrix.file"] == str(path)[:127]
        assert f.metadata["quantize.imatrix.entries_count"] == 16 * 7
        assert f.fields["quantize.imatrix.chunks_count"].type == "UINT32"


@pytest.fixture()
def tiny(tmp_path: pathlib.Path) -> pathlib.Path:
    from tests.test_convert import tiny_spm_model

    d = tmp_path / "tiny"
    hf_fixture.random_llama(d, vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96)
    tiny_spm_model(d / "tokenizer.model", 64)
    return d


@pytest.fixture()
def tiny_imatrix(tiny: pathlib.Path, tmp_path: pathlib.Path) -> Imatrix:
    f16 = tmp_path / "tiny.f16.gguf"
    qrt_convert.convert(tiny, f16, "F16", progress=False)
    return synthetic_imatrix(f16)


def test_q2_k_s_refused_without_imatrix(smollm2_path, tmp_path: pathlib.Path, capsys) -> None:
    pytest.importorskip("transformers")
    hf = hf_fixture.smollm2_hf()
    out = tmp_path / "x.gguf"
    assert cli.main([str(hf), "-o", str(out), "--type", "Q2_K_S", "--no-progress"]) == 1
    assert "Q2_K_S requires an importance matrix" in capsys.readouterr().err
    assert not out.exists()


def test_imatrix_refused_for_float_and_nf4(tiny, tiny_imatrix, tmp_path: pathlib.Path) -> None:
    path = tmp_path / "m.imatrix.gguf"
    write_gguf(path, tiny_imatrix)
    for ftype in ("F16", "NF4"):
        with pytest.raises(ValueError, match=f"no effect on {ftype}"):
            qrt_convert.convert(tiny, tmp_path / "o.gguf", ftype, progress=False, imatrix=path)


def _convert_error(tiny: pathlib.Path, tmp_path: pathlib.Path, m: Imatrix) -> str:
    path = tmp_path / "other.imatrix.gguf"
    write_gguf(path, m)
    out = tmp_path / "out.gguf"
    with pytest.raises(qrt.FormatError) as e:
        qrt_convert.convert(tiny, out, "Q4_K_M", progress=False, imatrix=path)
    assert not out.exists()
    return str(e.value)


def test_imatrix_for_another_model_width(tiny, tiny_imatrix, tmp_path: pathlib.Path) -> None:  # BAD_INPUTS 45
    e = tiny_imatrix.entries["blk.1.ffn_down.weight"]
    e.sums = np.ones((1, 128), np.float32)
    msg = _convert_error(tiny, tmp_path, tiny_imatrix)
    assert "blk.1.ffn_down.weight" in msg and "128 columns" in msg and "has 96" in msg


def test_imatrix_for_another_model_names(tiny, tiny_imatrix, tmp_path: pathlib.Path) -> None:  # BAD_INPUTS 45
    tiny_imatrix.entries["blk.7.attn_q.weight"] = tiny_imatrix.entries["blk.1.attn_q.weight"]
    assert "'blk.7.attn_q.weight' names no tensor" in _convert_error(tiny, tmp_path, tiny_imatrix)
    del tiny_imatrix.entries["blk.7.attn_q.weight"]
    del tiny_imatrix.entries["blk.0.attn_v.weight"]
    assert "no entry for blk.0.attn_v.weight" in _convert_error(tiny, tmp_path, tiny_imatrix)


def test_imatrix_nan_refused_by_the_cli(tiny, tiny_imatrix, tmp_path: pathlib.Path) -> None:  # BAD_INPUTS 45
    tiny_imatrix.entries["blk.0.attn_k.weight"].sums[0, 3] = np.nan
    path = tmp_path / "nan.imatrix.gguf"
    write_gguf(path, tiny_imatrix)
    out = tmp_path / "out.gguf"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "qrt_convert",
            str(tiny),
            "-o",
            str(out),
            "--imatrix",
            str(path),
            "--no-progress",
        ],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 1
    assert "blk.0.attn_k.weight" in proc.stderr and "NaN" in proc.stderr
    assert not out.exists()


def test_calibrate_in_one_step(tiny, tmp_path: pathlib.Path) -> None:
    out = tmp_path / "out" / "tiny.Q4_K_M.gguf"
    out.parent.mkdir()
    calib = pathlib.Path(__file__).parent / "data" / "calibration.txt"
    args = [str(tiny), "-o", str(out), "--type", "Q4_K_M", "--calibrate", str(calib), "--calib-chunks", "2"]
    assert cli.main([*args, "--no-progress"]) == 0
    imatrix = out.parent / "tiny.Q4_K_M.imatrix.gguf"
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([imatrix.name, out.name])  # no F16 left
    m = qrt.imatrix_file.read(imatrix)
    assert m.chunk_count == 2 and len(m.entries) == 2 * 7
    with qrt.gguf.open(out) as f:
        assert f.metadata["quantize.imatrix.file"] == str(imatrix)
        assert f.metadata["quantize.imatrix.chunks_count"] == 2


def test_calibrate_short_text_leaves_nothing(tiny, tmp_path: pathlib.Path, capsys) -> None:  # BAD_INPUTS 47
    short = tmp_path / "short.txt"
    short.write_text("just a few words")
    out = tmp_path / "out" / "x.gguf"
    out.parent.mkdir()
    assert cli.main([str(tiny), "-o", str(out), "--calibrate", str(short), "--no-progress"]) == 1
    assert "tokens; at least 1024" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []
