"""qrt.load and Model: generate text, chat, tokenize and score with a GGUF model on the CPU."""

from __future__ import annotations

import codecs
import os
import threading
import time
import warnings
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _C
from . import gguf as _gguf
from .tokenizer import Tokenizer

_UINT32_MAX = (1 << 32) - 1


def load(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    gpu_layers: int | str = 0,
    n_seq_max: int = 1,
    check_tensors: bool = False,
    require_gpu: bool = False,
) -> Model:
    """Load a GGUF model.

    ``n_ctx`` tokens of paged KV cache are allocated up front for each of ``n_seq_max`` sequences
    (MemoryError, stating the bytes, when that cannot be met). ``n_threads`` defaults to the number of
    cores. ``check_tensors=True`` scans every weight for NaN/Inf and names the first bad tensor.

    ``gpu_layers`` puts the last N transformer layers on the GPU (N above the layer count: the output head
    too, as llama.cpp counts); ``-1`` or ``"all"``: everything; ``"auto"``: the largest N whose weights,
    KV cache and work buffers fit in the GPU's free memory with a margin. Activations cross between CPU
    and GPU once per boundary; ``Model.offload`` reports what went where and the device memory per part.
    Without a usable GPU, a non-zero ``gpu_layers`` warns (RuntimeWarning) and runs every layer on the
    CPU with identical results; ``require_gpu=True`` makes that a RuntimeError instead.
    """
    return Model(
        path,
        n_ctx=n_ctx,
        n_threads=n_threads,
        gpu_layers=gpu_layers,
        n_seq_max=n_seq_max,
        check_tensors=check_tensors,
        require_gpu=require_gpu,
    )


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


class Model:
    """A loaded model. Thread-safe: concurrent ``generate``/``chat``/``logits`` calls take turns.

    Use :func:`qrt.load` to create one; close it (or use ``with``) to release the file and the cache.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        gpu_layers: int | str = 0,
        n_seq_max: int = 1,
        check_tensors: bool = False,
        require_gpu: bool = False,
    ) -> None:
        n_ctx = _check_int("n_ctx", n_ctx, 1)
        n_seq_max = _check_int("n_seq_max", n_seq_max, 1, 256)
        threads = 0 if n_threads is None else _check_int("n_threads", n_threads, 1, 1024)
        n_gpu, device, device_free = _offload_plan(gpu_layers, require_gpu)
        self.path = os.fspath(path)
        with _gguf.open(self.path) as f:
            self.metadata: dict[str, Any] = dict(f.metadata)
            if check_tensors:
                _check_tensors(f)
            # the file rather than the metadata dict: its GGUF value types spare checking every vocabulary entry
            self.tokenizer = Tokenizer.from_gguf(f)
        self._native = _C.Model(
            self.path,
            n_ctx,
            threads,
            n_seq_max,
            gpu_layers=n_gpu,
            device=device,
            device_free_bytes=device_free,
        )
        #: None when every layer runs on the CPU; else what went to the device and its memory by part
        #: (backend, gpu_layers, first_layer, n_layer_device, head, weights_bytes, kv_bytes, work_bytes,
        #: total_bytes, free_bytes).
        self.offload: dict[str, Any] | None = self._native.offload
        if n_gpu == -2 and self.offload is None:
            warnings.warn(
                "gpu_layers='auto': not even one layer fits in the device's free memory "
                f"(keeping {_C.DEVICE_MARGIN_BYTES >> 20} MiB free): running every layer on the CPU",
                RuntimeWarning,
                stacklevel=3,
            )
        self._n_ctx, self._n_vocab = self._native.n_ctx, self._native.n_vocab
        self._n_layer = self._native.n_layer
        self._lock = threading.Lock()
        #: Counts and timings of the last generate/chat call (prompt and generated tokens, seconds).
        self.last_stats: dict[str, float] = {}

    # -- properties -------------------------------------------------------------------------------------

    @property
    def n_ctx(self) -> int:
        """Tokens of context per sequence."""
        return self._n_ctx

    @property
    def n_vocab(self) -> int:
        return self._n_vocab

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV cache in host memory, allocated at load for n_seq_max sequences of n_ctx tokens
        (a model's sliding-window layers keep only their window: gemma3)."""
        return int(self._native.kv_bytes)

    @property
    def n_layer(self) -> int:
        """Transformer layers (blocks)."""
        return self._n_layer

    # -- tokens -----------------------------------------------------------------------------------------

    def tokenize(self, text: str, add_bos: bool = True, special: bool = False) -> list[int]:
        """Token ids of ``text``; ``special=True`` parses special tokens such as ``<|im_start|>``."""
        return self.tokenizer.encode(text, add_bos=add_bos, special=special)

    def detokenize(self, ids: Sequence[int]) -> str:
        """Text of ``ids`` (invalid UTF-8 becomes U+FFFD). ValueError for ids outside the vocabulary."""
        return self.tokenizer.decode(ids)

    def logits(self, ids: Sequence[int]) -> np.ndarray:
        """Logits at every position of ``ids`` in a fresh context: float32 ``[len(ids), n_vocab]``."""
        arr = self._ids(ids)
        with self._lock:
            self._check_open()
            return self._native.logits(arr)

    # -- generation -------------------------------------------------------------------------------------

    def generate(
        self,
        prompt: str | Sequence[int],
        max_tokens: int = 256,
        temperature: float = 0.8,
        top_p: float = 0.95,
        top_k: int = 40,
        min_p: float = 0.05,
        repeat_penalty: float = 1.0,
        frequency_penalty: float = 0.0,
        presence_penalty: float = 0.0,
        penalty_last_n: int = 64,
        seed: int | None = None,
        stop: str | Sequence[str] | None = None,
        stream: bool = False,
        ignore_eos: bool = False,
    ) -> str | Iterator[str]:
        """Continue ``prompt`` (text, tokenized with BOS as the file asks, or token ids).

        Sampling follows llama.cpp's chain and defaults: penalties -> top-k -> top-p -> min-p ->
        temperature -> draw; temperature is applied last, so top-p and min-p see the raw logits, and
        ``temperature=0`` is greedy. The same ``seed`` with the same inputs and settings gives the same
        text. Generation ends at ``max_tokens``, an end-of-generation token (unless ``ignore_eos``), a
        ``stop`` string (excluded from the output, found across token boundaries), or the end of the
        context. ``stream=True`` returns an iterator of text pieces, each whole UTF-8 characters.
        """
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        if seed is not None:
            seed = _check_int("seed", seed, 0, _UINT32_MAX)
        if isinstance(stop, str):
            stop = [stop]
        stops = list(stop or [])
        sampler = _C.Sampler(
            self.n_vocab,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            penalty_last_n=penalty_last_n,
            seed=seed,
        )
        if isinstance(prompt, str):
            ids = self.tokenize(prompt, add_bos=None, special=True)
        else:
            ids = list(self._ids(prompt))
        if not ids:
            raise ValueError("the prompt is empty and the model adds no BOS token: nothing to condition on")
        if len(ids) >= self.n_ctx:
            raise ValueError(f"prompt has {len(ids)} tokens, context is {self.n_ctx}")
        pieces = self._generate(ids, max_tokens, sampler, stops, ignore_eos)
        return pieces if stream else "".join(pieces)

    def chat(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> str | Iterator[str]:
        """Reply to a conversation (``[{"role": "user", "content": "..."}]``), rendered with the file's
        chat template in a sandboxed Jinja environment. Takes the same keyword arguments as generate."""
        from . import chat  # jinja2: only conversations pay for importing it

        tok = self.tokenizer
        bos = tok.token_to_piece(tok.bos_id).decode("utf-8", "replace") if tok.bos_id is not None else ""
        text = chat.render(
            self.metadata.get("tokenizer.chat_template")
            or chat.default_template(self.metadata.get("general.architecture")),
            messages,
            bos_token=bos,
            eos_token=tok.token_to_piece(tok.eos_id).decode("utf-8", "replace")
            if tok.eos_id is not None
            else "",
        )
        if (
            bos and tok.add_bos and text.startswith(bos)
        ):  # tokenizing adds it: one BOS, as llama.cpp strips it
            text = text[len(bos) :]
        return self.generate(text, **kwargs)

    def _generate(
        self, ids: list[int], max_tokens: int, sampler: _C.Sampler, stops: list[str], ignore_eos: bool
    ) -> Iterator[str]:
        tok = self.tokenizer
        if ignore_eos:
            sampler.set_suppressed(np.array([i for i in range(self.n_vocab) if tok.is_eog(i)], np.int32))
        matcher = _C.StopMatcher(stops) if stops else None
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        with self._lock:
            self._check_open()
            native = self._native
            native.clear(0)
            try:
                sampler.accept_many(np.asarray(ids, np.int32))
                t0 = time.perf_counter()
                logits = native.eval(np.asarray(ids, np.int32), 0, False)
                t1 = time.perf_counter()
                stats = self.last_stats = {"prompt_tokens": len(ids), "prompt_seconds": t1 - t0}
                stats.update(generated_tokens=0, generate_seconds=0.0)
                n_past = len(ids)
                for _ in range(max_tokens):
                    token = sampler.sample(logits)
                    sampler.accept(token)
                    stats["generated_tokens"] += 1
                    stats["generate_seconds"] = time.perf_counter() - t1
                    if not ignore_eos and tok.is_eog(token):
                        break
                    piece = tok.token_to_piece(token)
                    if matcher is not None:
                        piece = matcher.push(piece)
                    text = utf8.decode(piece)
                    if text:
                        yield text
                    if matcher is not None and matcher.stopped:
                        break
                    n_past += 1
                    if n_past >= self.n_ctx:
                        break
                    logits = native.eval(np.array([token], np.int32), 0, False)
                if matcher is not None and not matcher.stopped:
                    tail = utf8.decode(matcher.flush(), final=True)
                else:
                    tail = utf8.decode(b"", final=True)
                if tail:
                    yield tail
            finally:
                native.clear(0)

    # -- lifetime ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the model's memory and file. Further calls raise ValueError."""
        with self._lock:
            self._native = None

    def __enter__(self) -> Model:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._native is None else f"n_ctx={self._n_ctx}, n_vocab={self._n_vocab}"
        return f"<qrt.Model {os.path.basename(self.path)} {state}>"

    def _check_open(self) -> None:
        if self._native is None:
            raise ValueError("the model is closed")

    def _ids(self, ids: Sequence[int]) -> np.ndarray:
        arr = np.asarray(ids)
        if arr.ndim != 1 or (arr.size and not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError("token ids must be a 1-D sequence of ints")
        if arr.size and (arr.min() < 0 or arr.max() >= self.n_vocab):
            bad = int(arr[(arr < 0) | (arr >= self.n_vocab)][0])
            raise ValueError(f"token id {bad} is outside the vocabulary [0, {self.n_vocab})")
        return arr.astype(np.int32)


#: Test-only: ``QRT_TEST_DEVICE=cpu`` (or ``cpu:FREE_BYTES``) makes gpu_layers use a second CPU "device"
#: backend ("cpu-test") that copies its layers' weights and runs them with the CPU kernels, so the layer
#: split, weight upload and hand-off are exercised without a GPU; FREE_BYTES fakes its free memory (for
#: "auto"). Not for users: it is slower than plain CPU execution.
TEST_DEVICE_ENV = "QRT_TEST_DEVICE"


def _parse_gpu_layers(gpu_layers: int | str) -> int:
    """-1 for "all", -2 for "auto", else N >= 0 (ValueError / TypeError otherwise)."""
    if isinstance(gpu_layers, str):
        if gpu_layers in ("all", "auto"):
            return -1 if gpu_layers == "all" else -2
        raise ValueError(f"gpu_layers must be an int >= -1, 'all' or 'auto', got {gpu_layers!r}")
    return _check_int("gpu_layers", gpu_layers, -1)


def _test_device() -> tuple[str, int] | None:
    spec = os.environ.get(TEST_DEVICE_ENV)
    if not spec:
        return None
    name, _, free = spec.partition(":")
    if name != "cpu" or (free and not free.isdigit()):
        raise ValueError(f"{TEST_DEVICE_ENV} must be 'cpu' or 'cpu:FREE_BYTES', got {spec!r}")
    return "cpu-test", int(free or 0)


def _no_gpu_reason() -> str | None:
    """Why CUDA cannot run layers here, or None when it can."""
    info = _C.build_info()
    if not info["cuda"]:
        return "this qrt build has no CUDA backend (built without nvcc or with QRT_CUDA=OFF)"
    if not info["cuda_devices"]:
        return "no CUDA GPU is visible"
    if "cuda" not in _C.offload_backends():
        return "qrt's CUDA backend cannot run layers yet (its kernels are still to come)"
    return None


def _offload_plan(gpu_layers: int | str, require_gpu: bool) -> tuple[int, str, int]:
    """(gpu_layers for _C.Model, device backend, fake free bytes) after checking the arguments."""
    n = _parse_gpu_layers(gpu_layers)
    if not isinstance(require_gpu, (bool, np.bool_)):
        raise TypeError(f"require_gpu must be a bool, got {type(require_gpu).__name__}")
    test = _test_device()
    if n == 0:
        return 0, "", 0
    if test is not None:
        return n, test[0], test[1]
    reason = _no_gpu_reason()
    if reason is None:
        return n, "cuda", 0
    if require_gpu:
        raise RuntimeError(
            f"gpu_layers={gpu_layers!r} with require_gpu=True, but no GPU can be used: {reason}"
        )
    warnings.warn(
        f"{reason}: gpu_layers={gpu_layers!r} runs every layer on the CPU", RuntimeWarning, stacklevel=4
    )
    return 0, "", 0


def _check_tensors(f: _gguf.GGUFFile) -> None:
    for name in f.tensors:
        values = f.dequantize(name)
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise _C.FormatError(f"{f.path}: tensor '{name}' has a non-finite value at flat index {bad}")


__all__ = ["Model", "load"]
