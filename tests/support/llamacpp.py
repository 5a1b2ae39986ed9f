"""llama.cpp oracle: build the llama.cpp vendored in the llama-cpp-python 0.3.36 sdist.

Everything lives in ``<cache>/llama.cpp-0.3.36/`` (``src/`` = the llama.cpp tree,
``build/`` = the CMake build, ``build.log``).  A marker file in ``build/`` records a
successful build; :func:`ensure_built` returns at once when it exists.

``python -m tests.support.llamacpp`` builds ahead of time (``--requant`` also makes the
SmolLM2 K-quant reference files).
"""

from __future__ import annotations

import dataclasses
import json
import os
import pathlib
import shutil
import subprocess
import sys
import tarfile
import tempfile
import time

from .cache import DownloadError, cache_dir, file_lock, pip_download

VERSION = "0.3.36"
SDIST = f"llama_cpp_python-{VERSION}.tar.gz"
SDIST_SHA256 = "832db0699007f1be95a7e41ef12e88926b02ba836461e36a36372db2760c1a2e"
TARGETS = ("ggml-base", "llama-quantize", "llama-perplexity", "llama-bench")

# ggml-base gets no -march from upstream CMake (GGML_NATIVE only affects ggml-cpu), so
# ggml-quants.c reference code is compiled without FMA contraction; keep it that way.
CMAKE_FLAGS = (
    "-DCMAKE_BUILD_TYPE=Release",
    "-DGGML_NATIVE=ON",
    "-DBUILD_SHARED_LIBS=ON",
    "-DLLAMA_CURL=OFF",  # deprecated/ignored in this version; kept for older trees
    "-DLLAMA_OPENSSL=OFF",
    "-DLLAMA_BUILD_COMMON=ON",
    "-DLLAMA_BUILD_TOOLS=ON",
    "-DLLAMA_BUILD_TESTS=OFF",
    "-DLLAMA_BUILD_EXAMPLES=OFF",
    "-DLLAMA_BUILD_SERVER=OFF",
    "-DLLAMA_BUILD_APP=OFF",
    "-DGGML_CUDA=OFF",
    "-DGGML_CCACHE=OFF",
    # With GGML_NATIVE, -march=native turns on ggml's AMX matmul where CPUID lists AMX; on KVM guests that
    # list it without enabling the tile state, llama-perplexity dies in ldtilecfg (SIGSEGV/SIGILL). The
    # explicit -mno-amx-* win over -march=native whatever their order on the command line.
    "-DCMAKE_C_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
    "-DCMAKE_CXX_FLAGS=-mno-amx-tile -mno-amx-int8 -mno-amx-bf16",
)

# llama-quantize ftypes that need no imatrix (subset we use).  NB: SmolLM2-135M has
# n_embd=576, not a multiple of 256, so only tensors with 1536-wide rows (ffn_down) get
# K-quants; the rest fall back to Q4_0/Q5_0/Q5_1/Q8_0.  ``pure=True`` (--pure) keeps the
# requested type wherever the row length allows it (e.g. Q2_K -> 30 Q2_K ffn_down tensors).
FTYPES = (
    "Q4_0",
    "Q4_1",
    "Q5_0",
    "Q5_1",
    "Q8_0",
    "Q2_K",
    "Q3_K_S",
    "Q3_K_M",
    "Q3_K_L",
    "Q4_K_S",
    "Q4_K_M",
    "Q5_K_S",
    "Q5_K_M",
    "Q6_K",
)


DEFAULT_REQUANT = (
    "Q4_K_M",
    "Q6_K",
    "Q3_K_M",
    "Q2_K",
    "Q8_0",
    "Q4_0",
    "Q5_K_M",
    "Q3_K_S",
    "Q2_K:pure",
    "Q4_K_S:pure",
    "Q5_K_S:pure",
)


class BuildError(RuntimeError):
    """llama.cpp could not be fetched or built; the message says why (and where the log is)."""


@dataclasses.dataclass(frozen=True)
class LlamaCpp:
    root: pathlib.Path  # llama.cpp source tree (has ggml/include/ggml.h)
    build_dir: pathlib.Path
    bin_dir: pathlib.Path
    libggml_base: pathlib.Path
    quantize: pathlib.Path
    perplexity: pathlib.Path
    bench: pathlib.Path


def base_dir() -> pathlib.Path:
    return cache_dir() / f"llama.cpp-{VERSION}"


def _paths() -> LlamaCpp:
    base = base_dir()
    build = base / "build"
    bin_dir = build / "bin"
    return LlamaCpp(
        root=base / "src",
        build_dir=build,
        bin_dir=bin_dir,
        libggml_base=bin_dir / "libggml-base.so",
        quantize=bin_dir / "llama-quantize",
        perplexity=bin_dir / "llama-perplexity",
        bench=bin_dir / "llama-bench",
    )


def _marker(p: LlamaCpp) -> pathlib.Path:
    return p.build_dir / ".qrt-build-ok"


def _marker_content() -> str:
    return json.dumps({"version": VERSION, "flags": list(CMAKE_FLAGS), "targets": list(TARGETS)})


def _is_built(p: LlamaCpp) -> bool:
    m = _marker(p)
    if not m.is_file() or m.read_text() != _marker_content():
        return False
    return all(x.is_file() for x in (p.libggml_base, p.quantize, p.perplexity, p.bench))


def _log(msg: str, verbose: bool) -> None:
    if verbose:
        print(f"[llamacpp] {msg}", flush=True)


def _extract(sdist: pathlib.Path, dst: pathlib.Path, verbose: bool) -> None:
    """Extract ``<sdist>/vendor/llama.cpp`` to ``dst`` (atomically via a temp dir)."""
    if (dst / "ggml" / "include" / "ggml.h").is_file():
        return
    _log(f"extracting vendor/llama.cpp from {sdist} -> {dst}", verbose)
    prefix = f"llama_cpp_python-{VERSION}/vendor/llama.cpp/"
    tmp = pathlib.Path(tempfile.mkdtemp(dir=dst.parent, prefix=".src-"))
    try:
        with tarfile.open(sdist, "r:gz") as tf:
            members = []
            for m in tf.getmembers():
                if not m.name.startswith(prefix) or m.name == prefix:
                    continue
                m.name = m.name[len(prefix) :]
                members.append(m)
            if hasattr(tarfile, "data_filter"):
                tf.extractall(tmp, members=members, filter="data")
            else:  # pragma: no cover - very old Python
                tf.extractall(tmp, members=members)
        if dst.exists():
            shutil.rmtree(dst)
        os.replace(tmp, dst)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _run_logged(cmd: list[str], log, verbose: bool, cwd: pathlib.Path | None = None) -> int:
    log.write(f"\n$ {' '.join(cmd)}\n")
    log.flush()
    _log(" ".join(cmd), verbose)
    with subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=cwd) as proc:
        assert proc.stdout is not None
        for line in proc.stdout:
            log.write(line)
            if verbose and (line.startswith("[") or "error" in line.lower()):
                print("   " + line.rstrip()[:160], flush=True)
        return proc.wait()


def source_tree(verbose: bool = False) -> pathlib.Path:
    """The llama.cpp tree of the sdist (``models/`` holds the vocabulary test files and chat templates,
    ``convert_hf_to_gguf.py`` and ``gguf-py`` the converter), fetched and extracted without building.
    Raises :class:`BuildError` when the sdist cannot be fetched."""
    p = _paths()
    if (p.root / "ggml" / "include" / "ggml.h").is_file():
        return p.root
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base / ".src.lock"):  # not ".lock": ensure_built holds that one while it calls this
        try:
            sdist = pip_download(
                f"llama-cpp-python=={VERSION}", SDIST, SDIST_SHA256, "--no-binary", "llama-cpp-python"
            )
        except DownloadError as e:
            raise BuildError(f"cannot fetch the llama-cpp-python {VERSION} sdist: {e}") from e
        _extract(sdist, p.root, verbose)
    return p.root


def vocab_dir() -> pathlib.Path:
    """llama.cpp's vocabulary test files: ``ggml-vocab-<name>.gguf`` with ``.inp`` / ``.out`` vectors.
    Never raises (tests call it at collection): without the sdist the directory is missing, and the tests
    that need it skip, or fail under QRT_TEST_REQUIRE_ORACLE=1."""
    try:
        return source_tree() / "models"
    except BuildError:
        return _paths().root / "models"


def ensure_built(verbose: bool = False, jobs: int = 2) -> LlamaCpp:
    """Return the built llama.cpp, building it first (under a file lock) if needed.

    Raises :class:`BuildError` (with the log path) if the download or build fails.
    """
    p = _paths()
    if _is_built(p):
        return p
    base = base_dir()
    base.mkdir(parents=True, exist_ok=True)
    with file_lock(base / ".lock"):
        if _is_built(p):
            return p
        source_tree(verbose)
        if shutil.which("cmake") is None:
            raise BuildError("cmake not found on PATH")
        log_path = base / "build.log"
        t0 = time.monotonic()
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        with open(log_path, "w") as log:
            rc = _run_logged(["cmake", "-S", str(p.root), "-B", str(p.build_dir), *CMAKE_FLAGS], log, verbose)
            if rc != 0:
                raise BuildError(f"llama.cpp cmake configure failed (rc={rc}); see {log_path}")
            rc = _run_logged(
                [
                    *nice,
                    "cmake",
                    "--build",
                    str(p.build_dir),
                    "--config",
                    "Release",
                    "-j",
                    str(jobs),
                    "--target",
                    *TARGETS,
                ],
                log,
                verbose,
            )
            if rc != 0:
                raise BuildError(f"llama.cpp build failed (rc={rc}); see {log_path}")
            dt = time.monotonic() - t0
            log.write(f"\nbuild finished in {dt:.0f} s\n")
        missing = [x for x in (p.libggml_base, p.quantize, p.perplexity, p.bench) if not x.is_file()]
        if missing:
            raise BuildError(f"llama.cpp build produced no {missing}; see {log_path}")
        _marker(p).write_text(_marker_content())
        _log(f"built in {dt:.0f} s", verbose)
    return p


def ensure_tool(name: str, llama: LlamaCpp | None = None, jobs: int = 2) -> pathlib.Path:
    """Path of the llama.cpp program ``name`` (e.g. ``"llama-tokenize"``), building that one CMake target
    in the oracle's build tree first if it is missing. Raises :class:`BuildError`."""
    llama = llama or ensure_built()
    exe = llama.bin_dir / name
    if exe.is_file():
        return exe
    with file_lock(base_dir() / ".lock"):
        if exe.is_file():
            return exe
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        log_path = base_dir() / f"build-{name}.log"
        with open(log_path, "w") as log:
            rc = _run_logged(
                [*nice, "cmake", "--build", str(llama.build_dir), "--target", name, "-j", str(jobs)],
                log,
                False,
            )
        if rc != 0 or not exe.is_file():
            raise BuildError(f"building {name} failed (rc={rc}); see {log_path}")
    return exe


def ensure_server(jobs: int = 2) -> pathlib.Path:
    """Path of llama-server (bench/serve.py only, never the tests), built in the oracle's tree: the oracle is
    configured without the server, so this turns LLAMA_BUILD_SERVER on there (every other flag unchanged,
    so nothing else is rebuilt) and builds that one target. Raises :class:`BuildError`."""
    llama = ensure_built()
    exe = llama.bin_dir / "llama-server"
    if exe.is_file():
        return exe
    with file_lock(base_dir() / ".lock"):
        if exe.is_file():
            return exe
        nice = ["nice", "-n", "10"] if shutil.which("nice") else []
        log_path = base_dir() / "build-llama-server.log"
        with open(log_path, "w") as log:
            configure = [
                "cmake",
                "-S",
                str(llama.root),
                "-B",
                str(llama.build_dir),
                "-DLLAMA_BUILD_SERVER=ON",
            ]
            rc = _run_logged(configure, log, False)
            if rc == 0:
                cmd = [
                    *nice,
                    "cmake",
                    "--build",
                    str(llama.build_dir),
                    "--target",
                    "llama-server",
                    "-j",
                    str(jobs),
                ]
                rc = _run_logged(cmd, log, False)
        if rc != 0 or not exe.is_file():
            raise BuildError(f"building llama-server failed (rc={rc}); see {log_path}")
    return exe


# --------------------------------------------------------------------------- requantize


def requant_path(src_gguf: os.PathLike | str, ftype: str, pure: bool = False) -> pathlib.Path:
    """Cache location of ``src_gguf`` requantized to ``ftype``:
    ``<cache>/requant/<stem>.<FTYPE>[.pure].gguf``."""
    src = pathlib.Path(src_gguf)
    return cache_dir() / "requant" / f"{src.stem}.{ftype.upper()}{'.pure' if pure else ''}.gguf"


def requantize(
    src_gguf: os.PathLike | str,
    dst_gguf: os.PathLike | str | None,
    ftype: str,
    *,
    pure: bool = False,
    llama: LlamaCpp | None = None,
    nthreads: int = 2,
) -> pathlib.Path:
    """``llama-quantize --allow-requantize [--pure] SRC DST FTYPE NTHREADS``; skipped when DST
    already exists.

    ``dst_gguf=None`` uses :func:`requant_path`.  Output is written to a temp name and
    moved into place, so concurrent callers are safe.  Returns DST.
    """
    ftype = ftype.upper()
    if ftype not in FTYPES:
        raise ValueError(f"unsupported ftype {ftype!r}; expected one of {FTYPES}")
    src = pathlib.Path(src_gguf)
    dst = pathlib.Path(dst_gguf) if dst_gguf is not None else requant_path(src, ftype, pure)
    if dst.is_file():
        return dst
    llama = llama or ensure_built()
    dst.parent.mkdir(parents=True, exist_ok=True)
    with file_lock(dst.parent / f".{dst.name}.lock"):
        if dst.is_file():
            return dst
        tmp = dst.with_name(f".{dst.name}.{os.getpid()}.tmp")
        log_path = dst.with_name(dst.name + ".log")
        cmd = [
            str(llama.quantize),
            "--allow-requantize",
            *(["--pure"] if pure else []),
            str(src),
            str(tmp),
            ftype,
            str(nthreads),
        ]
        with open(log_path, "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, check=False).returncode
        if rc != 0 or not tmp.is_file():
            tmp.unlink(missing_ok=True)
            raise BuildError(f"llama-quantize {ftype} failed (rc={rc}); see {log_path}")
        os.replace(tmp, dst)
    return dst


def main(argv: list[str] | None = None) -> int:
    import argparse

    ap = argparse.ArgumentParser(description="build the llama.cpp oracle used by qrt's tests")
    ap.add_argument("-j", "--jobs", type=int, default=2)
    ap.add_argument(
        "--requant",
        nargs="*",
        metavar="FTYPE[:pure]",
        help=f"also requantize SmolLM2 to these ftypes (default: {' '.join(DEFAULT_REQUANT)})",
    )
    args = ap.parse_args(argv)
    t0 = time.monotonic()
    try:
        p = ensure_built(verbose=True, jobs=args.jobs)
    except BuildError as e:
        print(f"[llamacpp] FAILED: {e}", file=sys.stderr)
        return 1
    print(f"[llamacpp] ready in {time.monotonic() - t0:.0f} s: {p}")
    if args.requant is not None:
        from .smollm2 import smollm2_q4_1

        src = smollm2_q4_1()
        for spec in args.requant or DEFAULT_REQUANT:
            ft, _, mod = spec.partition(":")
            t1 = time.monotonic()
            out = requantize(src, None, ft, pure=(mod == "pure"), llama=p)
            print(f"[llamacpp] {ft}: {out} ({time.monotonic() - t1:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
