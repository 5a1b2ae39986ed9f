"""``qrt-convert --calibrate TEXT``: checkpoint to calibrated GGUF in one step (method ``imatrix``).

The checkpoint is converted to F16 in a temporary folder beside the output, qrt-imatrix's statistics are
collected on that file over the calibration text, saved as ``<output stem>.imatrix.gguf`` beside the output
(llama.cpp's format: reusable with ``--imatrix`` or ``llama-quantize --imatrix``), and the checkpoint is
converted again with them. The other methods of issue 14 (GPTQ, AWQ) are not implemented.
"""

from __future__ import annotations

import os
import pathlib
import sys
import tempfile

import qrt
from qrt.imatrix_file import write_gguf

METHODS = ("imatrix",)


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
    out = pathlib.Path(out_path)
    imatrix_path = imatrix_path_for(out)
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
