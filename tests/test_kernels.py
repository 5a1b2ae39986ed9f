"""CPU kernel dispatch: the kernels picked by CPUID give the same bits as the scalar reference.

The reference run is a subprocess with ``QRT_KERNELS=scalar`` (the ISA is chosen once per process).
tests/cpp/test_kernels.cpp compares each ISA's kernels with the reference directly, on random bytes too.
"""

from __future__ import annotations

import json
import os
import pathlib
import platform
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import qrt

ROW_TYPES = [name for name, t in qrt.types().items() if t.row_wise]
INFO = qrt.build_info()
CPU_HAS_AVX2 = all(INFO["cpu_features"][f] for f in ("avx2", "fma", "f16c"))
X86 = platform.machine().lower() in ("x86_64", "amd64")


def run_with_scalar_kernels(code: str) -> str:
    """Run ``code`` in a fresh interpreter that imports this same qrt with QRT_KERNELS=scalar."""
    env = dict(os.environ, QRT_KERNELS="scalar")
    qrt_parent = str(pathlib.Path(qrt.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([qrt_parent, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


@pytest.mark.skipif(not (X86 and CPU_HAS_AVX2), reason="needs an x86-64 CPU with AVX2, FMA and F16C")
def test_avx2_is_compiled_and_chosen() -> None:
    assert "avx2" in INFO["isas_compiled"]
    if os.environ.get("QRT_KERNELS") != "scalar":
        assert INFO["isa"] == "avx2"


def test_qrt_kernels_scalar_forces_the_reference() -> None:
    out = run_with_scalar_kernels("import qrt; print(qrt.build_info()['isa'])")
    assert out.strip() == "scalar"


def test_dequantize_matches_scalar_reference(tmp_path: pathlib.Path) -> None:
    rng = np.random.default_rng(7)
    # Row lengths: one K super-block, an odd number of them (and of 32-blocks), a long row; rows of mixed
    # magnitude so scales span a wide range.
    shapes = [(1, 256), (5, 256 * 9), (3, 4096 * 4)]
    raws = {}
    for name in ROW_TYPES:
        for k, shape in enumerate(shapes):
            x = rng.standard_normal(shape).astype(np.float32)
            x *= np.float32(10.0) ** rng.integers(-4, 4, size=(shape[0], 1)).astype(np.float32)
            raws[f"{name}:{k}"] = qrt.quantize(x, name)
    np.savez(tmp_path / "raw.npz", **raws)

    run_with_scalar_kernels(f"""
        import numpy as np, qrt
        raw = np.load({str(tmp_path / "raw.npz")!r})
        shapes = {shapes!r}
        out = {{key: qrt.dequantize(raw[key], key.split(":")[0], shapes[int(key.split(":")[1])])
               for key in raw.files}}
        np.savez({str(tmp_path / "ref.npz")!r}, **out)
        """)
    ref = np.load(tmp_path / "ref.npz")
    for key, raw in raws.items():
        name, k = key.split(":")
        ours = qrt.dequantize(raw, name, shapes[int(k)])
        # bit for bit: compare the float32 patterns
        np.testing.assert_array_equal(ours.view(np.uint32), ref[key].view(np.uint32), err_msg=key)


# ----------------------------------------------------------------------------------------------------
# The model through the fast kernels (vec_dot/gemm, AVX2 attention) against the scalar reference route

ROUTE_FILES = [None, "Q4_K_M", "Q2_K:pure", "Q3_K_M", "Q5_K_S:pure", "Q6_K", "Q8_0", "Q4_0", "Q5_1"]
ROUTE_TEXT = (
    "The GNU General Public License is a free, copyleft license for software and other kinds of works."
)


def _route_logits_code(path: pathlib.Path, out: pathlib.Path) -> str:
    return f"""
        import numpy as np, qrt
        m = qrt.load({str(path)!r}, n_ctx=64, n_threads=2)
        ids = np.asarray(m.tokenize({ROUTE_TEXT!r}), np.int32)
        np.save({str(out)!r}, m._native.logits(ids))
        """


@pytest.mark.skipif(not (X86 and CPU_HAS_AVX2), reason="needs an x86-64 CPU with AVX2, FMA and F16C")
@pytest.mark.parametrize("ftype", ROUTE_FILES, ids=lambda f: f or "Q4_1")
def test_model_logits_match_the_scalar_route(
    ftype, smollm2_path, kquant_file, tmp_path: pathlib.Path
) -> None:
    """Every weight type of the SmolLM2 files (Q4_1 and llama-quantize'd mixes: Q4_0, Q5_0, Q5_1, Q8_0 and
    all five k-quants) through both routes. Both round the activations to int8 identically up to float order,
    and a few roundings that land differently grow through 30 layers, so the two differ like two int8 runs
    do (mean KL ~0.01 on this text, where a broken kernel gives KL >> 1)."""
    path = smollm2_path if ftype is None else kquant_file(ftype.split(":")[0], pure=ftype.endswith(":pure"))
    code = _route_logits_code(path, tmp_path / "ref.npy")
    run_with_scalar_kernels(code)
    env = dict(os.environ)
    env.pop("QRT_KERNELS", None)
    qrt_parent = str(pathlib.Path(qrt.__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join([qrt_parent, env.get("PYTHONPATH", "")])
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(_route_logits_code(path, tmp_path / "fast.npy"))],
        env=env,
        capture_output=True,
        text=True,
    )
    assert done.returncode == 0, done.stderr
    ref, fast = np.load(tmp_path / "ref.npy"), np.load(tmp_path / "fast.npy")
    assert ref.shape == fast.shape and np.isfinite(fast).all()

    def log_softmax(x: np.ndarray) -> np.ndarray:
        x = x.astype(np.float64) - x.max(-1, keepdims=True)
        return x - np.log(np.exp(x).sum(-1, keepdims=True))

    p_ref, p_fast = log_softmax(ref), log_softmax(fast)
    kl = (np.exp(p_ref) * (p_ref - p_fast)).sum(-1)
    agree = float((ref.argmax(-1) == fast.argmax(-1)).mean())
    assert kl.mean() < 0.05 and kl.max() < 0.25 and agree >= 0.75, (kl.mean(), kl.max(), agree)


def _qrt_bench(*args: str) -> subprocess.CompletedProcess[str]:
    qrt_parent = str(pathlib.Path(qrt.__file__).resolve().parent.parent)
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([qrt_parent, os.environ.get("PYTHONPATH", "")]))
    return subprocess.run(
        [sys.executable, "-m", "qrt.cli.bench", *args], capture_output=True, text=True, env=env
    )


def test_qrt_bench_json(smollm2_path: pathlib.Path) -> None:
    done = _qrt_bench("-m", str(smollm2_path), "-p", "8", "-n", "3", "-r", "1", "-t", "1", "--json")
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [r["test"] for r in rows] == ["pp8", "tg3"]
    assert all(r["tokens_per_s"] > 0 and r["n_threads"] == 1 for r in rows)
    bad = _qrt_bench("-m", str(smollm2_path), "-n", "-1")
    assert bad.returncode == 2 and "--n-gen must be >= 0" in bad.stderr
