"""CPU kernel dispatch: the kernels picked by CPUID give the same bits as the scalar reference.

The reference run is a subprocess with ``QRT_KERNELS=scalar`` (the ISA is chosen once per process).
tests/cpp/test_kernels.cpp compares each ISA's kernels with the reference directly, on random bytes too.
"""

from __future__ import annotations

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
