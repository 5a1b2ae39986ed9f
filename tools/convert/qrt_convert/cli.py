"""``qrt-convert HF_DIR -o OUT.gguf --type Q4_K_M``: command-line front end of :mod:`qrt_convert`."""

from __future__ import annotations

import argparse
import sys

from qrt import FormatError, UnsupportedError

from .calibrate import METHODS
from .checkpoint import Checkpoint
from .converter import convert, make_plan
from .presets import FTYPES


def _parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(
        prog="qrt-convert",
        description="Convert a Hugging Face checkpoint (config.json, *.safetensors, tokenizer) to a quantized "
        "GGUF file, with llama-quantize's per-tensor type rules. NF4 output is readable by qrt only.",
    )
    ap.add_argument("hf_dir", help="checkpoint directory (config.json, model*.safetensors, tokenizer files)")
    ap.add_argument("-o", "--outfile", help="output .gguf path (required unless --dry-run)")
    ap.add_argument(
        "--type",
        "-t",
        default="Q4_K_M",
        type=str.upper,
        choices=list(FTYPES),
        metavar="TYPE",
        help=f"one of {', '.join(FTYPES)} (default: Q4_K_M)",
    )
    ap.add_argument(
        "--imatrix",
        metavar="FILE",
        help="importance matrix (llama-imatrix/qrt-imatrix output, GGUF or legacy .dat): weighted rounding, "
        "as llama-quantize --imatrix; required by Q2_K_S",
    )
    ap.add_argument(
        "--calibrate",
        metavar="TEXT",
        help="calibrate on this UTF-8 text in one step: an importance matrix from the F16 model (kept beside the "
        "output as X.imatrix.gguf), then --imatrix with it",
    )
    ap.add_argument(
        "--method",
        default="imatrix",
        choices=list(METHODS),
        help="calibration method: imatrix (llama.cpp's importance matrix), gptq (Hessian error feedback onto "
        "the GGUF block grid), awq (activation-aware channel scales folded into the norms), awq+gptq",
    )
    ap.add_argument("--calib-chunks", type=int, default=None, metavar="N", help="use at most N chunks of 512")
    ap.add_argument(
        "--dry-run",
        action="store_true",
        help="print the plan (tensor, shape, type, bytes) and the expected file size; write nothing",
    )
    ap.add_argument("--threads", type=int, default=0, help="quantization threads (default: all cores)")
    ap.add_argument("--no-progress", action="store_true", help="no progress bar or summary")
    ap.add_argument(
        "--tokenizer-pre",
        metavar="NAME",
        help="tokenizer.ggml.pre to write when llama.cpp's table does not recognise the tokenizer",
    )
    return ap


def _calibration_estimate(args: argparse.Namespace, plan) -> str:
    from .calibrate import calibration_chunks
    from .sequential import estimate

    with open(args.calibrate, encoding="utf-8") as fh:
        ids = calibration_chunks(plan, fh.read(), 512, args.calib_chunks)
    return estimate(plan, ids.size, args.method)


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if not args.dry_run and not args.outfile:
        _parser().error("-o/--outfile is required (or use --dry-run)")
    try:
        if args.dry_run:
            with Checkpoint(args.hf_dir) as ckpt:
                plan = make_plan(
                    ckpt,
                    args.type,
                    tokenizer_pre=args.tokenizer_pre,
                    imatrix=args.imatrix,
                    calibrated=bool(args.calibrate),
                )
            print(plan.describe())
            if args.calibrate and args.method != "imatrix":
                print(_calibration_estimate(args, plan))
            return 0
        if args.calibrate:
            if args.imatrix:
                _parser().error("--calibrate and --imatrix exclude each other")
            from .calibrate import convert_calibrated

            convert_calibrated(
                args.hf_dir,
                args.outfile,
                args.type,
                args.calibrate,
                method=args.method,
                chunks=args.calib_chunks,
                progress=not args.no_progress,
                n_threads=args.threads,
                tokenizer_pre=args.tokenizer_pre,
            )
            return 0
        convert(
            args.hf_dir,
            args.outfile,
            args.type,
            progress=not args.no_progress,
            n_threads=args.threads,
            tokenizer_pre=args.tokenizer_pre,
            imatrix=args.imatrix,
        )
        return 0
    except (FormatError, UnsupportedError, OSError, ValueError) as e:
        kind = "unsupported" if isinstance(e, UnsupportedError) else "error"
        print(f"qrt-convert: {kind}: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("qrt-convert: interrupted; no output written", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
