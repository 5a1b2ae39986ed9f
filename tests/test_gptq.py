"""GPTQ and AWQ onto GGUF block types (qrt-convert --calibrate --method gptq|awq|awq+gptq, issue 14).

The fixed-grid primitives against the dequantizers; GPTQ's output error on a real SmolLM2 layer against the
plain and importance-weighted quantizers; AWQ's folding leaving the float layer unchanged; the numpy layer
forward against qrt's engine; files that llama.cpp and qrt both load; bad inputs.
"""

from __future__ import annotations

import pathlib

import numpy as np
import pytest

import qrt
import qrt_convert
from qrt.formats import block_grid, set_quants
from qrt_convert import awq, cli, gptq
from qrt_convert.calibrate import calibration_chunks, convert_calibrated
from qrt_convert.checkpoint import Checkpoint
from qrt_convert.converter import make_plan
from qrt_convert.layer_forward import GROUPS, LayerShape, layer, rms_norm
from qrt_convert.sequential import embed, read_tensor
from tests.support import hf_fixture

GRID_TYPES = ["Q4_0", "Q4_1", "Q5_0", "Q5_1", "Q8_0", "Q2_K", "Q3_K", "Q4_K", "Q5_K", "Q6_K"]
CALIBRATION = pathlib.Path(__file__).parent / "data" / "calibration.txt"


@pytest.mark.parametrize("type", GRID_TYPES)
def test_grid_matches_the_dequantizer(type: str) -> None:
    rng = np.random.default_rng(1)
    x = rng.standard_normal((3, 512)).astype(np.float32) * np.exp(rng.standard_normal(512)).astype(np.float32)
    raw = qrt.quantize(x, type)
    scale, offset, qmin, qmax = block_grid(raw, type, 512)
    deq = qrt.dequantize(raw, type, x.shape)
    # every stored value lies on the grid, and storing the q it sits at gives back the same bytes
    q = np.clip(np.rint((deq - offset) / np.where(scale != 0, scale, 1)), qmin, qmax).astype(np.int8)
    np.testing.assert_array_equal(scale * q + offset, deq)
    np.testing.assert_array_equal(set_quants(raw, type, q), raw)
    # any q in range decodes to scale * q + offset (the packing is the dequantizer's layout)
    q2 = rng.integers(qmin, qmax + 1, size=x.shape).astype(np.int8)
    np.testing.assert_array_equal(
        qrt.dequantize(set_quants(raw, type, q2), type, x.shape), scale * q2 + offset
    )


def test_grid_bad_inputs() -> None:
    raw = qrt.quantize(np.ones((2, 64), np.float32), "Q4_0")
    with pytest.raises(ValueError, match="outside"):
        set_quants(raw, "Q4_0", np.full((2, 64), 9, np.int8))
    with pytest.raises(ValueError, match="no fixed grid"):
        block_grid(qrt.quantize(np.ones((2, 64), np.float32), "F16"), "F16", 64)
    with pytest.raises(ValueError, match="expected raw bytes"):
        block_grid(raw, "Q4_0", 32)


def test_inverse_cholesky() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((300, 100))
    h = x.T @ x
    u = gptq.inverse_cholesky(h.copy(), 0.0)
    np.testing.assert_allclose(u.T @ u, np.linalg.inv(h), atol=1e-12)
    assert np.all(np.tril(u, -1) == 0) and np.all(np.diag(u) > 0)


@pytest.fixture(scope="module")
def smollm2_layer0(smollm2_path):
    """SmolLM2's layer-0 float weights and the inputs of each of its groups of linears over two chunks of
    256 tokens of the calibration text."""
    hf = hf_fixture.smollm2_hf()
    with Checkpoint(hf) as ckpt:
        plan = make_plan(ckpt, "Q4_K_M", calibrated=True)
        shape = LayerShape.from_metadata({kv.key: kv.value for kv in plan.kvs})
        by_name = {t.name: t for t in plan.tensors}
        ids = calibration_chunks(plan, CALIBRATION.read_text()[:20000], 256, 2)
        x = embed(ckpt, by_name["token_embd.weight"], ids)
        w = {
            n[len("blk.0.") :].removesuffix(".weight"): read_tensor(ckpt, t)
            for n, t in by_name.items()
            if n.startswith("blk.0.")
        }
    inputs: dict[tuple[str, ...], np.ndarray] = {}

    def capture(names, inp):
        inputs[tuple(names)] = inp
        return {}

    out = layer(x, dict(w), shape, capture)
    return shape, x, w, inputs, out


@pytest.mark.parametrize(("name", "type"), [("ffn_down", "Q4_K"), ("ffn_down", "Q2_K"), ("attn_q", "Q4_0")])
def test_gptq_beats_rtn_and_imatrix_on_a_real_layer(smollm2_layer0, name: str, type: str) -> None:
    _, _, w, inputs, _ = smollm2_layer0
    inp = next(v for k, v in inputs.items() if name in k)
    h = (inp.T @ inp).astype(np.float64)
    wt = w[name]
    importance = np.diag(h).astype(np.float32)

    def err(raw: np.ndarray) -> float:
        return gptq.output_error(wt, qrt.dequantize(raw, type, wt.shape), h)

    rtn = err(qrt.quantize(wt, type))
    weighted = err(qrt.quantize(wt, type, imatrix=importance))
    ours = gptq.quantize(wt, h, type)
    assert ours.shape == qrt.quantize(wt, type).shape  # same type, same bytes per row
    assert weighted < rtn
    assert err(ours) < 0.9 * weighted, (rtn, weighted, err(ours))


def test_awq_folding_keeps_the_float_layer(smollm2_layer0) -> None:
    shape, x, w, inputs, out = smollm2_layer0
    w = dict(w)
    scales = {}
    for names in GROUPS:
        if names[0] not in awq.FOLD_INTO:
            continue
        inp = inputs[names]

        def roundtrip(n, ws, imp):
            t = "Q2_K" if n == "ffn_down" else "Q4_0"
            return qrt.dequantize(qrt.quantize(ws, t, imatrix=imp), t, ws.shape)

        s = awq.search_scales(names, w, inp, (inp.T @ inp).astype(np.float64), roundtrip)
        awq.fold(names, w, s)
        scales[names[0]] = s
    assert any(np.ptp(s) > 0.1 for s in scales.values())  # the search found non-trivial scales
    folded = layer(x, w, shape)
    np.testing.assert_allclose(folded, out, rtol=1e-4, atol=1e-4 * float(np.abs(out).max()))


@pytest.mark.slow
def test_layer_forward_matches_the_engine(smollm2_path, llamacpp) -> None:
    hf = hf_fixture.smollm2_hf()
    f16 = hf_fixture.llamacpp_f16(hf, llamacpp.root)
    with qrt.load(f16, n_ctx=128, n_threads=2) as m:
        ids = m.tokenizer.encode((pathlib.Path(__file__).parent / "data" / "gpl-3.0.txt").read_text())[:48]
        ref = m.logits(ids)
    with Checkpoint(hf) as ckpt:
        plan = make_plan(ckpt, "F16")
        shape = LayerShape.from_metadata({kv.key: kv.value for kv in plan.kvs})
        by_name = {t.name: t for t in plan.tensors}
        x = embed(ckpt, by_name["token_embd.weight"], np.array([ids]))
        for il in range(shape.n_layer):
            p = f"blk.{il}."
            w = {
                n[len(p) :].removesuffix(".weight"): read_tensor(ckpt, t)
                for n, t in by_name.items()
                if n.startswith(p)
            }
            x = layer(x, w, shape)
        x = rms_norm(x, read_tensor(ckpt, by_name["output_norm.weight"]), shape.rms_eps)
        logits = x[0] @ read_tensor(ckpt, by_name["token_embd.weight"]).T
    assert np.abs(logits - ref).max() < 0.01 * np.abs(ref).max()  # F16 weights vs the bf16 values
    assert (logits.argmax(-1) == ref.argmax(-1)).mean() > 0.95


@pytest.fixture()
def tiny(tmp_path: pathlib.Path) -> pathlib.Path:
    from tests.test_convert import tiny_spm_model

    d = tmp_path / "tiny"
    hf_fixture.random_llama(d, vocab_size=64, n_embd=64, n_layer=2, n_head=4, n_head_kv=2, n_ff=96)
    tiny_spm_model(d / "tokenizer.model", 64)
    return d


@pytest.mark.parametrize("method", ["gptq", "awq", "awq+gptq"])
def test_calibrated_file_loads_in_llama_cpp_and_qrt(tiny, tmp_path: pathlib.Path, method: str) -> None:
    from tests.support import llama_logits

    out = tmp_path / "out" / "tiny.Q4_K_M.gguf"
    out.parent.mkdir()
    args = [str(tiny), "-o", str(out), "-t", "Q4_K_M", "--calibrate", str(CALIBRATION), "--method", method]
    assert cli.main([*args, "--calib-chunks", "2", "--no-progress"]) == 0
    assert sorted(p.name for p in out.parent.iterdir()) == sorted([out.name, "tiny.Q4_K_M.imatrix.gguf"])
    with Checkpoint(tiny) as ckpt:  # what --imatrix with the same file writes: the same types and size
        plan = make_plan(ckpt, "Q4_K_M", imatrix=out.parent / "tiny.Q4_K_M.imatrix.gguf")
    assert out.stat().st_size == plan.file_size
    rtn = tmp_path / "rtn.gguf"
    qrt_convert.convert(tiny, rtn, "Q4_K_M", progress=False)
    with qrt.gguf.open(out) as f, qrt.gguf.open(rtn) as g:
        assert [(t.name, t.type) for t in f.tensors.values()] == [
            (t.name, t.type) for t in g.tensors.values()
        ]
        norms_changed = any(
            not np.array_equal(f.raw(n), g.raw(n))
            for n in f.tensors
            if n.startswith("blk.") and n.endswith("norm.weight")
        )
        assert norms_changed == ("awq" in method)  # AWQ's scales live in the norms
    ids = [1, 5, 9, 17, 33, 40, 2, 7]
    with qrt.load(out, n_ctx=64) as m:
        ours = m.logits(ids)
    ref, _ = llama_logits.run(out, ids, 64)
    np.testing.assert_allclose(ours, ref, atol=0.02 * float(np.abs(ref).max()))


def test_dry_run_says_what_calibration_costs(tiny, capsys) -> None:
    args = [
        str(tiny),
        "-t",
        "Q4_0",
        "--calibrate",
        str(CALIBRATION),
        "--method",
        "gptq",
        "--calib-chunks",
        "2",
    ]
    assert cli.main([*args, "--dry-run"]) == 0
    last = capsys.readouterr().out.strip().splitlines()[-1]
    assert last.startswith("calibration (gptq): 1,024 tokens x 2 layers, about ")
    assert "GFLOP" in last and "MiB of memory" in last


def test_calibrate_bad_inputs(tiny, tmp_path: pathlib.Path, capsys) -> None:  # BAD_INPUTS 47
    out = tmp_path / "out" / "x.gguf"
    out.parent.mkdir()
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    assert (
        cli.main([str(tiny), "-o", str(out), "--calibrate", str(empty), "--method", "gptq", "--no-progress"])
        == 1
    )
    assert "empty.txt: the calibration text is empty" in capsys.readouterr().err
    assert list(out.parent.iterdir()) == []
    with pytest.raises(SystemExit):  # argparse: exit status 2 and the choices
        cli.main([str(tiny), "-o", str(out), "--calibrate", str(CALIBRATION), "--method", "smoothquant"])
    assert "invalid choice: 'smoothquant'" in capsys.readouterr().err
    with pytest.raises(ValueError, match="not implemented; available: imatrix, gptq, awq, awq\\+gptq"):
        convert_calibrated(tiny, out, "Q4_0", CALIBRATION, method="smoothquant")
    with pytest.raises(ValueError, match="no effect on F16"):
        convert_calibrated(tiny, out, "F16", CALIBRATION, method="gptq", chunks=2)
    assert list(out.parent.iterdir()) == []


def test_calibrate_refuses_other_architectures() -> None:
    with pytest.raises(qrt.UnsupportedError, match="not 'gemma3'"):
        LayerShape.from_metadata({"general.architecture": "gemma3"})
