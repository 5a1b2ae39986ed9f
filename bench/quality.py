"""Quality of quantized files at equal size: RTN, importance matrices (llama.cpp's, qrt's), GPTQ and AWQ.

    python bench/quality.py [--types Q2_K,Q3_K_M,Q4_K_M,Q4_0] [--methods ...] [--calib-chunks 32] [--eval-chunks 16]

From the SmolLM2 bf16 checkpoint of the tests (tests/support/hf_fixture.py): qrt-convert F16 (the base),
qrt-imatrix and llama-imatrix over tests/data/calibration.txt with the same chunks, then per type three files
(qrt-convert without an imatrix, with llama-imatrix's file, with qrt-imatrix's file; the last two are
byte-identical to what llama-quantize --imatrix makes from the same files) scored against the F16 base on
tests/data/gpl-3.0.txt with qrt-perplexity's KL method (the evaluation text is never the calibration text).
``gptq``, ``awq`` and ``awq+gptq`` are ``qrt-convert --calibrate --method M`` over the same calibration chunks.
Prints one markdown table: bits per weight, PPL, mean KL, 99% KL, top-1 agreement, conversion seconds.
"""

from __future__ import annotations

import argparse
import pathlib
import subprocess
import sys
import tempfile
import time

import qrt
import qrt_convert
from qrt.imatrix_file import write_gguf
from qrt.kl_divergence import compare, save_base

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.support import hf_fixture, llamacpp  # noqa: E402

CALIBRATION = REPO / "tests" / "data" / "calibration.txt"
METHODS = ("RTN", "qrt imatrix", "llama.cpp imatrix", "gptq", "awq", "awq+gptq")
EVALUATION = REPO / "tests" / "data" / "gpl-3.0.txt"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--types", default="Q2_K,Q3_K_M,Q4_K_M,Q4_0")
    ap.add_argument("--calib-chunks", type=int, default=32, help="imatrix chunks of 512 tokens")
    ap.add_argument("--eval-chunks", type=int, default=16, help="KL chunks of 512 tokens")
    ap.add_argument(
        "--methods", default=",".join(METHODS), help=f"comma-separated, from {', '.join(METHODS)}"
    )
    ap.add_argument("-t", "--threads", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder for the files (default: a temporary one)")
    args = ap.parse_args()

    hf = hf_fixture.smollm2_hf()
    work = pathlib.Path(args.work or tempfile.mkdtemp(prefix="qrt-quality-"))
    work.mkdir(parents=True, exist_ok=True)
    base = work / "smol.F16.gguf"
    if not base.exists():
        qrt_convert.convert(hf, base, "F16", progress=False)
    base_kld = work / "base.kld"
    if not base_kld.exists():
        with qrt.load(base, n_ctx=512, n_threads=args.threads) as m:
            save_base(m, EVALUATION.read_text(), base_kld, 512, max_chunks=args.eval_chunks)

    imatrices = {"qrt imatrix": work / "qrt.imatrix.gguf", "llama.cpp imatrix": work / "llama.imatrix.gguf"}
    if not imatrices["qrt imatrix"].exists():
        m = qrt.imatrix(base, CALIBRATION.read_text(), chunks=args.calib_chunks, n_threads=args.threads)
        write_gguf(imatrices["qrt imatrix"], m)
    if not imatrices["llama.cpp imatrix"].exists():
        exe = llamacpp.ensure_tool("llama-imatrix")
        cmd = [str(exe), "-m", str(base), "-f", str(CALIBRATION), "-o", str(imatrices["llama.cpp imatrix"])]
        subprocess.run(
            [*cmd, "-c", "512", "--chunks", str(args.calib_chunks), "-t", str(args.threads), "--no-ppl"],
            check=True,
            capture_output=True,
        )

    print("| type | method | bpw | PPL | mean KL | 99% KL | top-1 | convert s |")
    print("|---|---|---|---|---|---|---|---|")
    for ftype in args.types.split(","):
        for method in args.methods.split(","):
            out = work / f"smol.{ftype}.{method.split()[0]}.gguf"
            t0 = time.monotonic()
            if method in ("gptq", "awq", "awq+gptq"):
                plan = qrt_convert.convert_calibrated(
                    hf, out, ftype, CALIBRATION, method=method, chunks=args.calib_chunks, progress=False,
                    n_threads=args.threads,
                )  # fmt: skip
            else:
                plan = qrt_convert.convert(
                    hf, out, ftype, progress=False, n_threads=args.threads, imatrix=imatrices.get(method)
                )
            seconds = time.monotonic() - t0
            with qrt.load(out, n_ctx=512, n_threads=args.threads) as m:
                r = compare(m, base_kld)
            print(
                f"| {ftype} | {method} | {plan.bits_per_weight():.2f} | {r.ppl:.3f} | {r.mean_kld:.5f} | "
                f"{r.kld_99:.4f} | {100 * r.same_top:.2f}% | {seconds:.0f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
