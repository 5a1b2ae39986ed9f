"""qrt.load and Model: generate text, chat, tokenize and score with a GGUF model on the CPU."""

from __future__ import annotations

import codecs
import os
import threading
import time
import warnings
from collections.abc import AsyncIterator, Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from . import _C
from . import gguf as _gguf
from .engine import Engine, Event, asyncio_sink, queue_sink
from .tokenizer import Tokenizer

_UINT32_MAX = (1 << 32) - 1


def load(
    path: str | os.PathLike[str],
    *,
    n_ctx: int = 4096,
    n_threads: int | None = None,
    gpu_layers: int | str = 0,
    n_seq_max: int = 8,
    kv_tokens: int | None = None,
    prefill_budget: int = 256,
    max_waiting: int = 1 << 20,
    check_tensors: bool = False,
    require_gpu: bool = False,
    kv_type: str = "f16",
    kv_type_k: str | None = None,
    kv_type_v: str | None = None,
) -> Model:
    """Load a GGUF model.

    Up to ``n_seq_max`` generations run at once, batched step by step (continuous batching); more wait in
    a queue. Each may use up to ``n_ctx`` tokens of context. The paged KV cache holds ``kv_tokens`` tokens
    (default: ``n_ctx`` for each sequence, and one more ``n_ctx`` for :meth:`Model.logits`; ``2 * n_ctx``
    when that is more than the machine's memory), reserved up front as address space and touched as it
    fills (MemoryError, stating the bytes, when it cannot be reserved); a smaller pool is shared on demand, admitting requests as blocks free up and preempting
    the youngest (recomputed later, same output) when it runs dry. ``prefill_budget`` caps the prompt
    tokens evaluated per step while other sequences decode (chunked prefill); more than ``max_waiting``
    queued requests make a new one raise ``qrt.QueueFullError`` (a RuntimeError). ``n_threads`` defaults to
    the number of cores. ``check_tensors=True`` scans every weight for NaN/Inf and names the first bad
    tensor.

    ``gpu_layers`` puts the last N transformer layers on the GPU (N above the layer count: the output head
    too, as llama.cpp counts); ``-1`` or ``"all"``: everything; ``"auto"``: the largest N whose weights,
    KV cache and work buffers fit in the GPU's free memory with a margin. Activations cross between CPU
    and GPU once per boundary; ``Model.offload`` reports what went where and the device memory per part.
    Without a usable GPU, a non-zero ``gpu_layers`` warns (RuntimeWarning) and runs every layer on the
    CPU with identical results; ``require_gpu=True`` makes that a RuntimeError instead.

    ``kv_type`` stores the KV cache's keys and values as ``"f16"``, ``"q8_0"`` (0.53x the bytes) or
    ``"q4_0"`` (0.28x), ggml's 32-value blocks along each head as llama.cpp's ``--cache-type-k/-v`` store
    them; ``kv_type_k`` / ``kv_type_v`` set keys and values apart. Attention reads the quantized blocks
    directly. GPU layers keep an f16 cache: a quantized one with ``gpu_layers`` is a ValueError.
    """
    return Model(
        path,
        n_ctx=n_ctx,
        n_threads=n_threads,
        gpu_layers=gpu_layers,
        n_seq_max=n_seq_max,
        kv_tokens=kv_tokens,
        prefill_budget=prefill_budget,
        max_waiting=max_waiting,
        check_tensors=check_tensors,
        require_gpu=require_gpu,
        kv_type=kv_type,
        kv_type_k=kv_type_k,
        kv_type_v=kv_type_v,
    )


#: The KV cache types (``kv_type``), as llama.cpp's ``--cache-type-k/-v`` spell them.
KV_TYPES = ("f16", "q8_0", "q4_0")


def _check_kv_type(name: str, value: Any) -> str:
    if not isinstance(value, str) or value not in KV_TYPES:
        raise ValueError(f"{name} must be one of {', '.join(map(repr, KV_TYPES))}, got {value!r}")
    return value


def _check_int(name: str, value: Any, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {type(value).__name__}")
    if value < lo or (hi is not None and value > hi):
        bound = f">= {lo}" if hi is None else f"in [{lo}, {hi}]"
        raise ValueError(f"{name} must be {bound}, got {value}")
    return int(value)


class Model:
    """A loaded model. Thread-safe: concurrent ``generate``/``chat``/``agenerate`` calls (threads or
    coroutines) share the engine's steps; ``logits`` calls take turns with them.

    Use :func:`qrt.load` to create one; close it (or use ``with``) to release the file and the cache.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        n_ctx: int = 4096,
        n_threads: int | None = None,
        gpu_layers: int | str = 0,
        n_seq_max: int = 8,
        kv_tokens: int | None = None,
        prefill_budget: int = 256,
        max_waiting: int = 1 << 20,
        check_tensors: bool = False,
        require_gpu: bool = False,
        kv_type: str = "f16",
        kv_type_k: str | None = None,
        kv_type_v: str | None = None,
    ) -> None:
        n_ctx = _check_int("n_ctx", n_ctx, 1)
        kv_type = _check_kv_type("kv_type", kv_type)
        type_k = kv_type if kv_type_k is None else _check_kv_type("kv_type_k", kv_type_k)
        type_v = kv_type if kv_type_v is None else _check_kv_type("kv_type_v", kv_type_v)
        if (
            (type_k, type_v) != ("f16", "f16")
            and _parse_gpu_layers(gpu_layers) != 0
            and _test_device() is None
        ):
            raise ValueError(
                f"a {type_k}/{type_v} KV cache (kv_type) cannot be combined with gpu_layers={gpu_layers!r} "
                "yet: GPU layers keep an f16 cache; use kv_type='f16' or gpu_layers=0"
            )
        n_seq_max = _check_int("n_seq_max", n_seq_max, 1, 256)
        self._prefill_budget = _check_int("prefill_budget", prefill_budget, 1)
        self._max_waiting = _check_int("max_waiting", max_waiting, 1)
        n_kv_blocks = 0
        if kv_tokens is not None:
            kv_tokens = _check_int("kv_tokens", kv_tokens, n_ctx, (1 << 31) - 1)
            n_kv_blocks = -(-kv_tokens // 16)
        threads = 0 if n_threads is None else _check_int("n_threads", n_threads, 1, 1024)
        n_gpu, device, device_free = _offload_plan(gpu_layers, require_gpu)
        self.path = os.fspath(path)
        with _gguf.open(self.path) as f:
            self.metadata: dict[str, Any] = dict(f.metadata)
            if check_tensors:
                _check_tensors(f)
            # the file rather than the metadata dict: its GGUF value types spare checking every vocabulary entry
            self.tokenizer = Tokenizer.from_gguf(f)

        # sequence 0 serves logits(); the engine's scheduler runs generations on sequences 1..n_seq_max
        def native(n_kv_blocks: int) -> Any:
            return _C.Model(
                self.path,
                n_ctx,
                threads,
                n_seq_max + 1,
                gpu_layers=n_gpu,
                device=device,
                device_free_bytes=device_free,
                n_kv_blocks=n_kv_blocks,
                kv_type_k=type_k,
                kv_type_v=type_v,
            )

        try:
            self._native = native(n_kv_blocks)
        except MemoryError:
            if kv_tokens is not None or n_seq_max == 1:
                raise
            # the default pool (n_ctx per sequence) is more than this machine holds: share two contexts'
            # worth between the sequences (admission and preemption by free blocks do the rest)
            self._native = native(-(-2 * n_ctx // 16))
        self._n_seq_max = n_seq_max
        self._engine: Engine | None = None
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
    def n_seq_max(self) -> int:
        """Generations batched together at most (more wait their turn)."""
        return self._n_seq_max

    @property
    def engine(self) -> Engine:
        """The continuous-batching engine (started on first use): its ``scheduler.stats`` count steps,
        tokens, KV blocks and preemptions."""
        with self._lock:
            self._check_open()
            if self._engine is None:
                tok = self.tokenizer
                pieces = [tok.token_to_piece(i) for i in range(self.n_vocab)]
                self._engine = Engine(
                    self._native,
                    pieces,
                    self._n_seq_max,
                    prefill_budget=self._prefill_budget,
                    max_waiting=self._max_waiting,
                )
            return self._engine

    @property
    def kv_bytes(self) -> int:
        """Bytes of the KV cache in host memory, allocated at load (address space, touched as it fills): by
        default n_ctx tokens for each of the n_seq_max + 1 sequences (the engine's, and logits()'), or
        kv_tokens shared; a model's sliding-window layers keep only their window per sequence (gemma3)."""
        return int(self._native.kv_bytes)

    @property
    def kv_type(self) -> tuple[str, str]:
        """The KV cache's types for keys and values: ``"f16"``, ``"q8_0"`` or ``"q4_0"`` each."""
        return str(self._native.kv_type_k), str(self._native.kv_type_v)

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
        prompt: str | Sequence[int] | Sequence[str] | Sequence[Sequence[int]],
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
        progress: bool | None = None,
    ) -> str | Iterator[str] | list[str]:
        """Continue ``prompt`` (text, tokenized with BOS as the file asks, or token ids).

        Sampling follows llama.cpp's chain and defaults: penalties -> top-k -> top-p -> min-p ->
        temperature -> draw; temperature is applied last, so top-p and min-p see the raw logits, and
        ``temperature=0`` is greedy. The same ``seed`` with the same inputs and settings gives the same
        text, whatever else the model is generating at the time (batch invariance). Generation ends at
        ``max_tokens``, an end-of-generation token (unless ``ignore_eos``), a ``stop`` string (excluded
        from the output, found across token boundaries), or the end of the context. ``stream=True`` returns
        an iterator of text pieces, each whole UTF-8 characters.

        A list of prompts (texts, or lists of token ids) runs them all through the engine together and
        returns their texts in input order, with a progress bar (tqdm, on stderr) when there are 8 or more;
        ``progress=False`` turns it off, ``True`` forces it on.
        """
        kwargs = dict(
            max_tokens=max_tokens,
            temperature=temperature,
            top_p=top_p,
            top_k=top_k,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            penalty_last_n=penalty_last_n,
            seed=seed,
            stop=stop,
            ignore_eos=ignore_eos,
        )
        if _is_batch(prompt):
            if stream:
                raise ValueError("stream=True takes one prompt, not a list")
            return self._generate_batch(list(prompt), kwargs, progress)  # type: ignore[arg-type]
        ids, request = self._request(prompt, **kwargs)  # type: ignore[arg-type]
        pieces = self._generate(ids, request)
        return pieces if stream else "".join(pieces)

    async def agenerate(self, prompt: str | Sequence[int], **kwargs: Any) -> AsyncIterator[str]:
        """``async for piece in model.agenerate(prompt, ...)``: generate's text pieces for a coroutine,
        without blocking the event loop. Many coroutines (and threads) share the engine's steps. Takes
        generate's keyword arguments (not ``stream``); leaving the loop early cancels the request."""
        kwargs.pop("stream", None)
        ids, request = self._request(prompt, **kwargs)
        async for text, _ev in self._submit_async(ids, request):
            if text:
                yield text

    def chat(self, messages: Sequence[Mapping[str, Any]], **kwargs: Any) -> str | Iterator[str]:
        """Reply to a conversation (``[{"role": "user", "content": "..."}]``), rendered with the file's
        chat template in a sandboxed Jinja environment. Takes the same keyword arguments as generate."""
        return self.generate(self.render_chat(messages), **kwargs)  # type: ignore[return-value]

    def render_chat(self, messages: Sequence[Mapping[str, Any]]) -> str:
        """The prompt text of a conversation: the file's chat template, rendered in a sandbox."""
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
        return text

    # -- the engine's requests ---------------------------------------------------------------------------

    def _request(
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
        ignore_eos: bool = False,
        logprobs: int | None = None,
        prompt_logprobs: int | None = None,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        """(prompt ids, scheduler.submit keyword arguments), every argument checked. ``logprobs``: None,
        or N in [0, 20]: each event carries its token's log-probability and the N most likely tokens'.
        ``prompt_logprobs``: the same for every prompt token after the first, as events with ``prompt``
        set before the generated ones (``max_tokens`` may then be 0)."""
        max_tokens = _check_int("max_tokens", max_tokens, 0)
        if seed is not None:
            seed = _check_int("seed", seed, 0, _UINT32_MAX)
        if isinstance(stop, str):
            stop = [stop]
        stops = list(stop or [])
        for s in stops:
            if not isinstance(s, str):
                raise TypeError(f"stop strings must be str, got {type(s).__name__}")
            if not s:
                raise ValueError("stop strings must not be empty")
        if isinstance(prompt, str):
            ids = self.tokenize(prompt, add_bos=None, special=True)
        else:
            ids = list(self._ids(prompt))
        if not ids:
            raise ValueError("the prompt is empty and the model adds no BOS token: nothing to condition on")
        if len(ids) >= self.n_ctx:
            raise ValueError(f"prompt has {len(ids)} tokens, context is {self.n_ctx}")
        eog = np.array(sorted(self.tokenizer.eog_ids), np.int32)
        empty = np.zeros(0, np.int32)
        request = dict(
            max_tokens=max_tokens,
            temperature=temperature,
            top_k=top_k,
            top_p=top_p,
            min_p=min_p,
            repeat_penalty=repeat_penalty,
            frequency_penalty=frequency_penalty,
            presence_penalty=presence_penalty,
            penalty_last_n=penalty_last_n,
            seed=seed,
            eog=empty if ignore_eos else eog,
            suppress=eog if ignore_eos else empty,
            stop=stops,
            logprobs=-1 if logprobs is None else _check_int("logprobs", logprobs, 0, 20),
            prompt_logprobs=-1
            if prompt_logprobs is None
            else _check_int("prompt_logprobs", prompt_logprobs, 0, 20),
        )
        return np.asarray(ids, np.int32), request

    def _generate(self, ids: np.ndarray, request: dict[str, Any]) -> Iterator[str]:
        engine = self.engine
        q, sink = queue_sink()
        t0 = time.perf_counter()
        rid = engine.submit(ids, sink, **request)
        stats = self.last_stats = {"prompt_tokens": len(ids), "prompt_seconds": 0.0}
        stats.update(generated_tokens=0, generate_seconds=0.0)
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        t1 = None
        finished = False
        try:
            while True:
                try:
                    ev: Event = q.get(timeout=0.25)  # a timeout keeps Ctrl-C prompt on every platform
                except Exception:  # queue.Empty
                    continue
                now = time.perf_counter()
                if t1 is None:
                    t1 = now
                    stats["prompt_seconds"] = now - t0
                stats["generated_tokens"] = ev.n_generated
                stats["generate_seconds"] = now - t1
                if ev.finish is not None:
                    finished = True
                    if ev.finish == "error":
                        raise RuntimeError(ev.error)
                text = utf8.decode(ev.text, final=ev.finish is not None)
                if text:
                    yield text
                if finished:
                    return
        finally:
            if not finished:
                engine.cancel(rid)

    def _submit_async(self, ids: np.ndarray, request: dict[str, Any]) -> AsyncIterator[tuple[str, Event]]:
        """Queues a request now (raising ValueError / QueueFullError at once) and returns an async iterator
        of (text, event) over its events; leaving it early cancels the request. Needs a running loop."""
        engine = self.engine
        q, sink = asyncio_sink()
        rid = engine.submit(ids, sink, **request)
        return self._aevents(engine, rid, q)

    @staticmethod
    async def _aevents(engine: Engine, rid: int, q: Any) -> AsyncIterator[tuple[str, Event]]:
        utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")
        finished = False
        try:
            while True:
                ev = await q.get()
                if ev.finish is not None:
                    finished = True
                    if ev.finish == "error":
                        raise RuntimeError(ev.error)
                yield utf8.decode(ev.text, final=ev.finish is not None), ev
                if finished:
                    return
        finally:
            if not finished:
                engine.cancel(rid)

    def _generate_batch(self, prompts: list[Any], kwargs: dict[str, Any], progress: bool | None) -> list[str]:
        requests = [self._request(p, **kwargs) for p in prompts]  # every prompt checked before any runs
        engine = self.engine
        q, sink = queue_sink()
        index: dict[int, int] = {}
        texts: list[list[str]] = [[] for _ in prompts]
        decoders = [codecs.getincrementaldecoder("utf-8")(errors="replace") for _ in prompts]
        show = len(prompts) >= 8 if progress is None else bool(progress)
        bar = None
        if show:
            from tqdm.auto import tqdm

            bar = tqdm(total=len(prompts), unit="prompt", desc="generate")
        remaining = set()
        try:
            for i, (ids, request) in enumerate(requests):
                rid = engine.submit(ids, sink, **request)
                index[rid] = i
                remaining.add(rid)
            while remaining:
                try:
                    ev: Event = q.get(timeout=0.25)
                except Exception:  # queue.Empty
                    continue
                i = index[ev.request]
                final = ev.finish is not None
                texts[i].append(decoders[i].decode(ev.text, final=final))
                if final:
                    remaining.discard(ev.request)
                    if ev.finish == "error":
                        raise RuntimeError(ev.error)
                    if bar is not None:
                        bar.update(1)
        finally:
            for rid in remaining:
                engine.cancel(rid)
            if bar is not None:
                bar.close()
        return ["".join(t) for t in texts]

    # -- lifetime ---------------------------------------------------------------------------------------

    def close(self) -> None:
        """Release the model's memory and file; generations in flight end. Further calls raise ValueError."""
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()
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


def _is_batch(prompt: Any) -> bool:
    """A list of prompts (texts or id lists) rather than one prompt (a text or one list of ids)."""
    if isinstance(prompt, (str, bytes, np.ndarray)) or not isinstance(prompt, Sequence) or not prompt:
        return False
    return all(isinstance(p, str) or (isinstance(p, Sequence) and not isinstance(p, bytes)) for p in prompt)


def _check_tensors(f: _gguf.GGUFFile) -> None:
    for name in f.tensors:
        values = f.dequantize(name)
        if not np.isfinite(values).all():
            bad = int(np.flatnonzero(~np.isfinite(values))[0])
            raise _C.FormatError(f"{f.path}: tensor '{name}' has a non-finite value at flat index {bad}")


__all__ = ["Model", "load"]
