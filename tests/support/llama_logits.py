"""llama.cpp's logits and greedy continuation of a token sequence: ``llama_logits.cpp`` compiled against the
cached llama.cpp build (libllama), once per source version, into the test cache."""

from __future__ import annotations

import hashlib
import os
import pathlib
import shutil
import subprocess
import tempfile

import numpy as np

from . import llamacpp
from .cache import cache_dir, file_lock

SOURCE = pathlib.Path(__file__).with_name("llama_logits.cpp")


def tool() -> pathlib.Path:
    """The compiled oracle (built on first use). Raises :class:`llamacpp.BuildError`."""
    llama = llamacpp.ensure_built()
    digest = hashlib.sha256(SOURCE.read_bytes()).hexdigest()[:12]
    exe = cache_dir() / f"llama_logits-{digest}"
    if exe.is_file():
        return exe
    with file_lock(cache_dir() / ".llama_logits.lock"):
        if exe.is_file():
            return exe
        cxx = shutil.which("c++") or shutil.which("g++")
        if cxx is None:
            raise llamacpp.BuildError("no C++ compiler to build the llama.cpp logits oracle")
        tmp = exe.with_name(f".{exe.name}.{os.getpid()}")
        cmd = [
            cxx, "-O2", "-std=c++17", str(SOURCE),
            "-I", str(llama.root / "include"), "-I", str(llama.root / "ggml" / "include"),
            "-L", str(llama.bin_dir), "-lllama", "-lggml", "-lggml-base", f"-Wl,-rpath,{llama.bin_dir}",
            "-o", str(tmp),
        ]  # fmt: skip
        r = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if r.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise llamacpp.BuildError(f"building the llama.cpp logits oracle failed: {r.stderr[-2000:]}")
        os.replace(tmp, exe)
    return exe


def run(model: os.PathLike | str, ids: list[int], n_vocab: int, n_gen: int = 0, n_ctx: int = 0):
    """(logits float32 [len(ids)][n_vocab] of every prompt position, n_gen greedy token ids) by llama.cpp."""
    with tempfile.TemporaryDirectory() as d:
        out = pathlib.Path(d) / "logits.f32"
        r = subprocess.run(
            [str(tool()), str(model), str(n_ctx or len(ids) + n_gen + 16), str(n_gen), str(out)],
            input=" ".join(map(str, ids)),
            capture_output=True,
            text=True,
            check=False,
        )
        if r.returncode != 0:
            raise RuntimeError(f"llama_logits failed (rc={r.returncode}): {r.stderr[-2000:]}")
        logits = np.fromfile(out, dtype=np.float32).reshape(len(ids), n_vocab)
    gen = [int(x) for x in r.stdout.split()]
    return logits, gen
