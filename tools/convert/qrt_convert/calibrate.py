"""``qrt-convert --calibrate TEXT``: checkpoint to calibrated GGUF in one step (method ``imatrix``).

The checkpoint is converted to F16 in a temporary folder beside the output, qrt-imatrix's statistics are
collected on that file over the calibration text, saved as ``<output stem>.imatrix.gguf`` beside the output
(llama.cpp's format: reusable with ``--imatrix`` or ``llama-quantize --imatrix``), and the checkpoint is
converted again with them.

``gptq``, ``awq`` and ``awq+gptq`` work layer by layer on the checkpoint's float weights instead
(:mod:`qrt_convert.sequential`): the text is tokenized with the checkpoint's own tokenizer and cut into the
same chunks, every block matrix is quantized by the method, the importance matrix of the quantized inputs is
saved beside the output as above, and the file is written with the same per-tensor types as
``--imatrix`` gives (same size), the calibrated tensors' bytes in place of the plain quantizer's.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile
import time

import numpy as np

import qrt
from qrt.imatrix_file import write_gguf

METHODS = ("imatrix", "gptq", "awq", "awq+gptq")


def imatrix_path_for(out_path: str | os.PathLike[str]) -> pathlib.Path:
    """Where the importance matrix of ``out_path`` goes: ``x.gguf`` -> ``x.imatrix.gguf``."""
    out = pathlib.Path(out_path)
    return (
        out.with_suffix(".imatrix.gguf")
        if out.suffix == ".gguf"
        else out.with_name(out.name + ".imatrix.gguf")
    )


def convert_calibrated(
    hf_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    type: str,
    text_path: str | os.PathLike[str],
    *,
    method: str = "imatrix",
    n_ctx: int = 512,
    chunks: int | None = None,
    progress: bool = True,
    n_threads: int = 0,
    tokenizer_pre: str | None = None,
):
    """Convert ``hf_dir`` to ``type`` at ``out_path``, calibrated on the text file ``text_path``; returns the
    plan. ValueError for an unknown method or a calibration text shorter than two chunks; on any error neither
    the output nor the imatrix file is left behind."""
    from .converter import convert

    if method not in METHODS:
        raise ValueError(f"calibration method {method!r} is not implemented; available: {', '.join(METHODS)}")
    with open(text_path, encoding="utf-8") as fh:
        text = fh.read()
    if not text.strip():
        raise ValueError(f"{os.fspath(text_path)}: the calibration text is empty")
    out = pathlib.Path(out_path)
    imatrix_path = imatrix_path_for(out)
    if method != "imatrix":
        return _convert_layerwise(
            hf_dir,
            out,
            type,
            text,
            method,
            os.fspath(text_path),
            n_ctx,
            chunks,
            progress,
            n_threads,
            tokenizer_pre,
        )
    with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.calib-") as tmp:
        f16 = pathlib.Path(tmp) / "model.F16.gguf"
        convert(hf_dir, f16, "F16", progress=False, n_threads=n_threads, tokenizer_pre=tokenizer_pre)

        def report(done: int, total: int) -> None:
            print(
                f"\rimatrix: chunk {done}/{total}",
                end="\n" if done == total else "",
                file=sys.stderr,
                flush=True,
            )

        m = qrt.imatrix(
            f16,
            text,
            n_ctx=n_ctx,
            chunks=chunks,
            n_threads=n_threads or None,
            dataset=os.fspath(text_path),
            progress=report if progress else None,
        )
    write_gguf(imatrix_path, m)
    try:
        return convert(
            hf_dir,
            out,
            type,
            progress=progress,
            n_threads=n_threads,
            tokenizer_pre=tokenizer_pre,
            imatrix=os.fspath(imatrix_path),
        )
    except BaseException:
        imatrix_path.unlink(missing_ok=True)
        raise


def calibration_chunks(plan, text: str, n_ctx: int, chunks: int | None) -> np.ndarray:
    """The calibration text as qrt-imatrix cuts it: (chunks, n_ctx) token ids, BOS first where the
    tokenizer adds one. ValueError (saying how many tokens are needed) for fewer than two chunks."""
    from qrt.tokenizer import Tokenizer

    if not isinstance(n_ctx, int) or n_ctx < 16:
        raise ValueError(f"n_ctx must be an integer >= 16, got {n_ctx!r}")
    if chunks is not None and (not isinstance(chunks, int) or chunks < 1):
        raise ValueError(f"chunks must be a positive integer, got {chunks!r}")

    def as_read(v):  # what qrt.gguf returns for the value: GGUF strings are UTF-8 text
        if isinstance(v, bytes):
            return v.decode("utf-8")
        if isinstance(v, list) and v and isinstance(v[0], bytes):
            return [as_read(x) for x in v]
        return v

    tok = Tokenizer.from_gguf({kv.key: as_read(kv.value) for kv in plan.kvs})
    ids = tok.encode(text)
    if len(ids) < 2 * n_ctx:
        raise ValueError(
            f"the calibration text has {len(ids)} tokens; at least {2 * n_ctx} (2 chunks of {n_ctx}) are needed"
        )
    n = len(ids) // n_ctx if chunks is None else min(chunks, len(ids) // n_ctx)
    out = np.array(ids[: n * n_ctx], np.int64).reshape(n, n_ctx)
    if tok.add_bos and tok.bos_id is not None:
        out[:, 0] = tok.bos_id
    return out


def _convert_layerwise(
    hf_dir, out, type, text, method, dataset, n_ctx, chunks, progress, n_threads, tokenizer_pre
):
    from .checkpoint import Checkpoint
    from .converter import make_plan, run_plan
    from .sequential import calibrate

    imatrix_path = imatrix_path_for(out)
    t0 = time.monotonic()
    with Checkpoint(hf_dir) as ckpt:
        plan = make_plan(ckpt, type, tokenizer_pre=tokenizer_pre, calibrated=True)
        if plan.ftype in ("F16", "BF16", "NF4"):
            raise ValueError(
                f"--method {method} has no effect on {plan.ftype}: only GGUF block types are calibrated"
            )
        ids = calibration_chunks(plan, text, n_ctx, chunks)
        with tempfile.TemporaryDirectory(dir=out.parent, prefix=f".{out.name}.calib-") as tmp:
            saved, imat = calibrate(
                ckpt,
                plan,
                ids,
                method,
                pathlib.Path(tmp),
                dataset=dataset,
                progress=progress,
                n_threads=n_threads,
            )
            write_gguf(imatrix_path, imat)
            try:
                plan = make_plan(ckpt, type, tokenizer_pre=tokenizer_pre, imatrix=imatrix_path)
                run_plan(ckpt, plan, out, progress=progress, n_threads=n_threads, precomputed=saved)
            except BaseException:
                imatrix_path.unlink(missing_ok=True)
                raise
    if progress:
        print(
            f"wrote {out}: {plan.file_size / 2**20:.1f} MiB, {plan.ftype} ({plan.bits_per_weight():.2f} bpw), "
            f"{method} over {ids.size:,} tokens, in {time.monotonic() - t0:.1f} s",
            file=sys.stderr,
        )
    return plan
