"""Bounded fuzz run of the GGUF reader through its Python API (``qrt.gguf.open``).

    python tests/fuzz_gguf.py --seconds 60          # CI
    python tests/fuzz_gguf.py --seconds 600 --keep-corpus /tmp/gguf-corpus

Every input is written to a file and opened; a file that opens is then read back completely (metadata,
every tensor's raw bytes, small tensors dequantized). ``qrt.FormatError`` and ``qrt.UnsupportedError``
are the expected outcomes of bad input; anything else (another exception, an abort, a sanitizer report,
a hang past ``--timeout``) is a crash: the input is saved to ``--artifacts`` and the exit status is 1.

Engine: atheris (libFuzzer) when it is installed (``pip install atheris``), otherwise a plain random
mutation loop with the same mutator, so the script runs anywhere. atheris only sees Python coverage, so two
things steer it into the C++ reader: ``rejection_kind`` (instrumented) turns each kind of FormatError into a
distinct branch, and the structure-aware mutator overwrites 4/8-byte fields with boundary values (0, -1,
2^31, 2^63, 2^64-1, the file size ...), which is what reaches the size and overflow checks.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import pathlib
import random
import shutil
import subprocess
import sys
import tempfile
import time

REPO = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

import numpy as np  # noqa: E402

import qrt  # noqa: E402
import qrt.gguf  # noqa: E402
from tests.gguf_bytes import (  # noqa: E402
    ARRAY,
    BOOL,
    F16_ID,
    F32_ID,
    FLOAT32,
    FLOAT64,
    INT8,
    INT64,
    Q4_0_ID,
    Q4_1_ID,
    Q8_0_ID,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    GGUFBytes,
)

EXPECTED = (qrt.FormatError, qrt.UnsupportedError)
MAX_LEN = 4096
INTERESTING = [
    0,
    1,
    2,
    3,
    4,
    5,
    13,
    31,
    32,
    33,
    63,
    64,
    255,
    256,
    1000,
    2**16 - 1,
    2**30,
    2**31 - 1,
    2**31,
    2**32 - 1,
    2**32,
    2**62,
    2**63 - 1,
    2**63,
    2**64 - 1,
]


def seeds() -> list[bytes]:
    """Small valid files covering every value type and several tensor types."""
    a = GGUFBytes()
    a.kv("general.architecture", STRING, "llama").kv("general.alignment", UINT32, 32)
    a.kv("u8", UINT8, 7).kv("u16", UINT16, 700).kv("i64", INT64, -5).kv("u64", UINT64, 2**40)
    a.kv("f32", FLOAT32, 0.5).kv("f64", FLOAT64, 1.25).kv("b", BOOL, True)
    a.kv("toks", ARRAY, ["<s>", "</s>", "é"], STRING).kv("tt", ARRAY, [1, 2, 3], INT8)
    a.kv("sc", ARRAY, [0.0, -1.5], FLOAT32)
    a.tensor("w", [8, 2], F32_ID, np.arange(16, dtype=np.float32).tobytes())
    a.tensor("q", [32, 2], Q8_0_ID, bytes(range(68)))
    a.tensor("h", [16], F16_ID, np.ones(16, np.float16).tobytes())
    b = GGUFBytes(alignment=64).kv("general.alignment", UINT32, 64)
    b.tensor("q4", [32], Q4_0_ID, bytes(18)).tensor("q41", [64], Q4_1_ID, bytes(40))
    c = GGUFBytes().kv("tokenizer.ggml.tokens", ARRAY, [f"t{i}" for i in range(40)], STRING)
    return [a.build(), b.build(), c.build(), GGUFBytes().build()]


def mutate_field(data: bytes, rng: random.Random) -> bytes:
    """Overwrite an aligned-or-not 4- or 8-byte field with a boundary value (little-endian)."""
    if len(data) < 8:
        return data + bytes(rng.randrange(1, 32))
    buf = bytearray(data)
    width = rng.choice((4, 8))
    pos = rng.randrange(0, len(buf) - width + 1)
    value = rng.choice([*INTERESTING, len(buf), len(buf) - pos, rng.getrandbits(width * 8)])
    if rng.random() < 0.3:
        value = -value
    buf[pos : pos + width] = (value % (1 << (8 * width))).to_bytes(width, "little")
    return bytes(buf)


def mutate_bytes(data: bytes, rng: random.Random) -> bytes:
    """Plain mutations for the fallback engine: flip, set, insert, delete, truncate, splice in a seed."""
    buf = bytearray(data)
    for _ in range(rng.randrange(1, 4)):
        op = rng.randrange(6)
        pos = rng.randrange(len(buf) + 1)
        if op == 0 and buf and pos < len(buf):
            buf[pos] ^= 1 << rng.randrange(8)
        elif op == 1 and buf and pos < len(buf):
            buf[pos] = rng.choice((0, 1, 0x7F, 0x80, 0xFF))
        elif op == 2:
            buf[pos:pos] = bytes(rng.randrange(256) for _ in range(rng.randrange(1, 9)))
        elif op == 3 and buf:
            del buf[pos : pos + rng.randrange(1, 9)]
        elif op == 4:
            del buf[pos:]
        else:
            buf = bytearray(mutate_field(bytes(buf), rng))
    return bytes(buf[:MAX_LEN])


def rejection_kind(msg: str) -> int:
    """One branch per kind of rejection the C++ reader reports (and per section for truncations).

    atheris instruments this function, so each distinct kind is new coverage to libFuzzer: without it
    every rejected input would look the same and the corpus would collapse to one byte.
    """
    if "truncated header" in msg:
        return 1
    if "truncated metadata" in msg:
        if "n_kv" in msg:
            return 2
        return 3
    if "truncated tensor info" in msg:
        if "n_tensors" in msg:
            return 4
        return 5
    if "truncated data" in msg:
        return 6
    if "not a GGUF file" in msg:
        return 7
    if "byte-swapped" in msg:
        return 8
    if "version" in msg:
        return 9
    if "negative count" in msg:
        return 10
    if "key length" in msg:
        return 11
    if "string length" in msg:
        return 12
    if "tensor name length" in msg:
        return 13
    if "exceeds the limit" in msg:
        return 14
    if "empty key" in msg:
        return 15
    if "printable ASCII" in msg:
        return 16
    if "duplicate key" in msg:
        return 17
    if "unknown value type" in msg:
        return 18
    if "unknown array element type" in msg:
        return 19
    if "arrays of arrays" in msg:
        return 20
    if "must be 0 or 1" in msg:
        return 21
    if "not valid UTF-8" in msg:
        return 22
    if "must be UINT32" in msg:
        return 23
    if "power of two" in msg:
        return 24
    if "empty tensor name" in msg:
        return 25
    if "without NUL" in msg:
        return 26
    if "duplicate tensor name" in msg:
        return 27
    if "n_dims" in msg:
        return 28
    if "must be positive" in msg:
        return 29
    if "element count overflows" in msg:
        return 30
    if "not supported by qrt" in msg:
        return 31
    if "compute-only" in msg:
        return 32
    if "not a multiple of" in msg:
        return 33
    if "tensor overflows" in msg:
        return 34
    if "expected" in msg:
        return 35
    if "data section size overflows" in msg:
        return 36
    return 0


class Target:
    """Writes each input to one scratch file and opens it; counts executions and outcomes."""

    def __init__(self, scratch: pathlib.Path, artifacts: pathlib.Path) -> None:
        self.path = scratch
        self.artifacts = artifacts
        self.runs = 0
        self.opened = 0
        self.kinds: set[int] = set()

    def __call__(self, data: bytes) -> None:
        self.runs += 1
        self.path.write_bytes(data)
        try:
            f = qrt.gguf.open(self.path)
        except EXPECTED as e:
            self.kinds.add(rejection_kind(str(e)))
            return
        except BaseException:
            self.save(data)
            raise
        self.opened += 1
        try:
            with f:
                repr(f)
                for name, t in f.tensors.items():
                    raw = f.raw(name)
                    assert raw.nbytes == t.nbytes and t.offset + t.nbytes <= len(data)
                    if t.nbytes <= 1 << 16:
                        out = f.dequantize(name, n_threads=1)
                        assert out.shape == t.shape
        except BaseException:
            self.save(data)
            raise

    def save(self, data: bytes) -> None:
        self.artifacts.mkdir(parents=True, exist_ok=True)
        out = self.artifacts / f"crash-{hashlib.sha1(data).hexdigest()}.gguf"
        out.write_bytes(data)
        print(f"fuzz_gguf: crashing input saved to {out}", file=sys.stderr)


def run_atheris(
    target: Target, seconds: int, timeout: int, corpus: pathlib.Path, artifacts: pathlib.Path
) -> None:
    import atheris

    def custom_mutator(data: bytes, max_size: int, seed: int) -> bytes:
        rng = random.Random(seed)
        if rng.random() < 0.4:
            return mutate_field(data, rng)[:max_size]
        return atheris.Mutate(data, max_size)

    argv = [
        sys.argv[0],
        f"-max_total_time={seconds}",
        f"-timeout={timeout}",
        f"-max_len={MAX_LEN}",
        "-rss_limit_mb=4096",
        f"-artifact_prefix={artifacts}/",
        "-print_final_stats=1",
        str(corpus),
    ]
    global rejection_kind
    rejection_kind = atheris.instrument_func(rejection_kind)
    Target.__call__ = atheris.instrument_func(Target.__call__)  # type: ignore[method-assign]
    atheris.Setup(argv, lambda data: target(data), custom_mutator=custom_mutator)
    atheris.Fuzz()  # exits the process: 0 when the time is up, non-zero on a crash


def run_fallback(target: Target, seconds: int, corpus: pathlib.Path) -> None:
    rng = random.Random(0)
    pool = [p.read_bytes() for p in sorted(corpus.iterdir())]
    start = time.monotonic()
    while time.monotonic() - start < seconds:
        data = mutate_bytes(rng.choice(pool), rng)
        kinds = len(target.kinds)
        target(data)
        # Keep as parents the inputs that reached a new kind of rejection, and a few others: deeper,
        # multi-step corruptions.
        if len(pool) < 500 and (len(target.kinds) > kinds or rng.random() < 0.01):
            pool.append(data)
    elapsed = time.monotonic() - start
    print(
        f"fuzz_gguf (fallback engine): {target.runs} runs in {elapsed:.0f} s "
        f"({target.runs / elapsed:.0f} exec/s), {target.opened} opened, "
        f"{len(target.kinds)} kinds of rejection, 0 crashes"
    )


def worker(args: argparse.Namespace, tmp: pathlib.Path) -> int:
    corpus = args.keep_corpus or tmp / "corpus"
    corpus.mkdir(parents=True, exist_ok=True)
    crashes = tmp / "artifacts"  # the parent moves anything found here to --artifacts
    crashes.mkdir(exist_ok=True)
    for i, seed in enumerate(seeds()):
        (corpus / f"seed-{i}.gguf").write_bytes(seed)
    target = Target(tmp / "input.gguf", crashes)
    for seed in seeds():  # the seeds must parse, or the run proves nothing
        target(seed)
    if target.opened != len(seeds()):
        print("fuzz_gguf: a seed file failed to open", file=sys.stderr)
        return 1
    print(f"fuzz_gguf: engine {args.engine}, {args.seconds} s", flush=True)
    if args.engine == "atheris":
        run_atheris(target, args.seconds, args.timeout, corpus, crashes)
    else:
        run_fallback(target, args.seconds, corpus)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=60, help="how long to fuzz (default 60)")
    parser.add_argument("--timeout", type=int, default=10, help="seconds one input may take (default 10)")
    parser.add_argument("--engine", choices=("auto", "atheris", "fallback"), default="auto")
    parser.add_argument(
        "--artifacts",
        type=pathlib.Path,
        default=pathlib.Path("fuzz-artifacts"),
        help="where crashing inputs are saved (default ./fuzz-artifacts)",
    )
    parser.add_argument(
        "--keep-corpus",
        type=pathlib.Path,
        default=None,
        help="corpus directory to reuse and grow (default: a temporary one)",
    )
    parser.add_argument("--worker-dir", type=pathlib.Path, default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.engine == "auto":
        try:
            import atheris  # noqa: F401

            args.engine = "atheris"
        except ImportError:
            args.engine = "fallback"
    if args.worker_dir:
        return worker(args, args.worker_dir)

    # libFuzzer ends the process with exit(), skipping Python's cleanup: fuzz in a child process so
    # the scratch directory is always removed, and pass its exit status on.
    shm = "/dev/shm" if os.path.isdir("/dev/shm") else None
    with tempfile.TemporaryDirectory(prefix="fuzz-gguf-", dir=shm) as tmp:
        cmd = [sys.executable, __file__, *sys.argv[1:], "--engine", args.engine, "--worker-dir", tmp]
        rc = subprocess.run(cmd, check=False).returncode
        found = sorted((pathlib.Path(tmp) / "artifacts").glob("*"))
        if found:
            args.artifacts.mkdir(parents=True, exist_ok=True)
            for f in found:
                shutil.copy(f, args.artifacts / f.name)
                print(f"fuzz_gguf: crashing input kept as {args.artifacts / f.name}", file=sys.stderr)
    print(f"fuzz_gguf: {'no crashes' if rc == 0 and not found else 'CRASHED'} (exit status {rc})")
    return rc if rc != 0 else int(bool(found))


if __name__ == "__main__":
    sys.exit(main())
