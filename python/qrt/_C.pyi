"""
qrt native engine
"""

from __future__ import annotations

import collections.abc
import typing

import numpy
import numpy.typing

__all__: list[str] = [
    "DEVICE_MARGIN_BYTES",
    "FormatError",
    "GGUFFile",
    "ImatrixCollector",
    "Model",
    "QueueFullError",
    "Sampler",
    "Scheduler",
    "StopMatcher",
    "UnsupportedError",
    "build_info",
    "cuda_test_matvec",
    "cuda_test_rmsnorm",
    "cuda_test_rope",
    "cuda_test_silu_mul",
    "dequantize",
    "gguf_open",
    "imatrix_eval",
    "offload_backends",
    "quantize",
    "types",
    "vec_dot",
]

class FormatError(ValueError):
    """
    A file's bytes are corrupt or inconsistent (the message says where).
    """

class UnsupportedError(ValueError):
    """
    Valid content that qrt does not support.
    """

class GGUFFile:
    """
    A parsed, memory-mapped GGUF file (see qrt.gguf).
    """
    def metadata(self) -> list:
        """
        [(key, type, element_type or None, value)] in file order.
        """
    def raw(self, name: str) -> numpy.ndarray:
        """
        Read-only uint8 numpy view of a tensor's bytes (zero-copy).
        """
    def tensors(self) -> list:
        """
        [(name, ne in ggml order, type, absolute offset, nbytes)] in file order.
        """
    @property
    def alignment(self) -> int: ...
    @property
    def data_offset(self) -> int: ...
    @property
    def file_size(self) -> int: ...
    @property
    def path(self) -> str: ...
    @property
    def version(self) -> int: ...

class Sampler:
    """
    Token sampler with llama.cpp's chain, order and defaults.

    Per call: suppressed tokens -> repetition/frequency/presence penalties (over the last penalty_last_n
    accepted tokens, prompt included) -> top_k -> top_p -> min_p -> temperature -> one random draw.
    Temperature comes last, so top-p and min-p see the raw (penalized) logits. temperature == 0 is greedy
    (the argmax, lowest id on ties). The same seed, inputs, configuration and build give the same tokens;
    seed=None draws a random seed (see .seed).

    Off values: top_k=0, top_p=1, min_p=0, repeat_penalty=1, frequency_penalty=0, presence_penalty=0,
    penalty_last_n=0. Out-of-range values raise ValueError (nothing is clamped).
    """
    def __init__(
        self,
        n_vocab: typing.SupportsInt | typing.SupportsIndex,
        *,
        temperature: typing.SupportsFloat | typing.SupportsIndex = 0.8,
        top_k: typing.SupportsInt | typing.SupportsIndex = 40,
        top_p: typing.SupportsFloat | typing.SupportsIndex = 0.95,
        min_p: typing.SupportsFloat | typing.SupportsIndex = 0.05,
        repeat_penalty: typing.SupportsFloat | typing.SupportsIndex = 1.0,
        frequency_penalty: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        presence_penalty: typing.SupportsFloat | typing.SupportsIndex = 0.0,
        penalty_last_n: typing.SupportsInt | typing.SupportsIndex = 64,
        seed: typing.Any = None,
    ) -> None: ...
    def accept(self, token: typing.SupportsInt | typing.SupportsIndex) -> None:
        """
        Records a token (prompt or generated) for the penalties.
        """
    def accept_many(self, tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.int32]) -> None:
        """
        accept() for each token in order (all or none are recorded).
        """
    def candidates(
        self, logits: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]
    ) -> tuple[numpy.typing.NDArray[numpy.int32], numpy.typing.NDArray[numpy.float32]]:
        """
        The chain without the draw: (ids int32, logits float32 after temperature) of the tokens the draw chooses from, in the order it walks them. Touches neither the RNG nor the history.
        """
    def reset(self) -> None:
        """
        Forgets accepted tokens and re-seeds the RNG (a new random seed when seed=None).
        """
    def sample(self, logits: typing.Annotated[numpy.typing.ArrayLike, numpy.float32]) -> int:
        """
        Chooses a token from logits (float32, shape (n_vocab,)). Does not accept it. RuntimeError on NaN/+inf logits.
        """
    def set_suppressed(self, tokens: typing.Annotated[numpy.typing.ArrayLike, numpy.int32]) -> None:
        """
        Tokens never sampled (logit -inf before the chain), e.g. end-of-generation ids for ignore_eos. Replaces the previous set.
        """
    @property
    def history_size(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def params(self) -> dict: ...
    @property
    def seed(self) -> int:
        """
        The seed in use (the drawn one when seed=None).
        """

class StopMatcher:
    """
    Stop strings over a stream of detokenized bytes.

    push(piece) returns the bytes safe to emit now, holding back a tail that may begin a stop string (stops
    split across tokens or inside a multi-byte character are found). On a match it returns the text before
    the stop string and .stopped becomes True; flush() returns the held tail when generation ends otherwise.
    """
    def __init__(self, stops: collections.abc.Sequence[str]) -> None:
        """
        stops: str (matched as UTF-8) or bytes; empty strings raise ValueError.
        """
    def flush(self) -> bytes: ...
    def push(self, piece: str) -> bytes: ...
    def reset(self) -> None: ...
    @property
    def held(self) -> bytes: ...
    @property
    def stop_index(self) -> typing.Any: ...
    @property
    def stopped(self) -> bool: ...
    @property
    def stops(self) -> list: ...

class QueueFullError(RuntimeError):
    pass

class Scheduler:
    """
    Continuous batching over a Model's sequences [first_seq, first_seq + n_seq),
    stepped by a background thread (engine/scheduler.h).
    """
    def __init__(
        self,
        model: Model,
        pieces: collections.abc.Sequence[bytes],
        first_seq: typing.SupportsInt = 0,
        n_seq: typing.SupportsInt = 0,
        prefill_budget: typing.SupportsInt = 256,
        prefill_budget_idle: typing.SupportsInt = 0,
        max_waiting: typing.SupportsInt = 1048576,
        prefix_cache: bool = True,
        max_step_slowdown: typing.SupportsFloat = 1.75,
        max_step_seconds: typing.SupportsFloat = 0.5,
    ) -> None: ...
    def submit(
        self,
        prompt: numpy.typing.ArrayLike,
        max_tokens: typing.SupportsInt,
        temperature: typing.SupportsFloat = 0.8,
        top_k: typing.SupportsInt = 40,
        top_p: typing.SupportsFloat = 0.95,
        min_p: typing.SupportsFloat = 0.05,
        repeat_penalty: typing.SupportsFloat = 1.0,
        frequency_penalty: typing.SupportsFloat = 0.0,
        presence_penalty: typing.SupportsFloat = 0.0,
        penalty_last_n: typing.SupportsInt = 64,
        seed: typing.Any = None,
        eog: numpy.typing.ArrayLike | None = None,
        suppress: numpy.typing.ArrayLike | None = None,
        stop: collections.abc.Sequence[str] = [],
        logprobs: typing.SupportsInt = -1,
        prompt_logprobs: typing.SupportsInt = -1,
    ) -> int: ...
    def cancel(self, request: typing.SupportsInt) -> None: ...
    def wait_events(
        self, timeout: typing.SupportsFloat
    ) -> (
        list[tuple[int, int, bytes, str | None, int, int, str, float, list[tuple[int, float]], bool]] | None
    ): ...
    def shutdown(self) -> None: ...
    @property
    def stats(self) -> dict: ...

class ImatrixCollector:
    """
    Σx² per input column and token counts of every block matrix (and output.weight with process_output), as llama-imatrix collects them.
    """
    def __init__(self, process_output: bool = False) -> None: ...
    def stats(self) -> dict:
        """
        {matrix name: (float32 Σx² per input column, tokens seen)}
        """

class Model:
    """
    A llama-family GGUF model (llama, mistral, qwen2) with a paged KV cache for n_seq_max
    sequences of up to n_ctx tokens each, allocated up front (kv_bytes).
    """
    def __init__(
        self,
        path: str,
        n_ctx: typing.SupportsInt | typing.SupportsIndex,
        n_threads: typing.SupportsInt | typing.SupportsIndex = 0,
        n_seq_max: typing.SupportsInt | typing.SupportsIndex = 1,
        n_batch: typing.SupportsInt | typing.SupportsIndex = 512,
        gpu_layers: typing.SupportsInt | typing.SupportsIndex = 0,
        device: str = "",
        device_free_bytes: typing.SupportsInt | typing.SupportsIndex = 0,
        n_kv_blocks: typing.SupportsInt | typing.SupportsIndex = 0,
        kv_type_k: str = "f16",
        kv_type_v: str = "f16",
    ) -> None:
        """
        Loads the model. n_threads 0 = one per hardware thread. FormatError / UnsupportedError for
        bad or unsupported files, MemoryError (with the bytes) when the KV cache does not fit.
        gpu_layers N puts the last N layers (N > n_layer: and the output head) on the backend
        `device` ('cuda', or 'cpu-test': a second CPU device, for tests only); -1: everything, -2:
        as many as fit in the device's free memory (device_free_bytes != 0 stands in for it).
        MemoryError (with the bytes) when the layers asked for do not fit. n_kv_blocks: KV pool
        blocks of 16 tokens shared by all sequences (0: n_seq_max * ceil(n_ctx / 16)). kv_type_k,
        kv_type_v: the cache's types for K and V, 'f16', 'q8_0' or 'q4_0' (ValueError otherwise).
        """
    def clear(self, seq_id: typing.SupportsInt | typing.SupportsIndex = 0) -> None:
        """
        Forgets sequence seq_id, returning its cache blocks to the pool.
        """
    def eval(
        self, ids: typing.Any, seq_id: typing.SupportsInt | typing.SupportsIndex = 0, all_logits: bool = False
    ) -> numpy.typing.NDArray[numpy.float32]:
        """
        Appends `ids` to sequence seq_id's cache and returns the last token's logits [n_vocab], or
        [len(ids), n_vocab] with all_logits.
        """
    def eval_batch(
        self, ids: typing.Any, seq_ids: typing.Any, all_logits: bool = False
    ) -> numpy.typing.NDArray[numpy.float32]:
        """
        Evaluates a batch mixing sequences in one forward pass: ids[i] is appended to sequence
        seq_ids[i] (after its cached tokens and its earlier tokens in ids, causal within each
        sequence). Returns float32 [n_seq_in_batch, n_vocab]: the logits of each distinct sequence's
        last token, rows in the order those last tokens appear in ids (the order of first appearance
        when each sequence's tokens are contiguous or there is one token per sequence); with
        all_logits, [len(ids), n_vocab]. ValueError (nothing appended) for ids or seq_ids out of
        range, mismatched lengths, or a sequence that would exceed n_ctx.
        """
    def logits(self, ids: typing.Any) -> numpy.typing.NDArray[numpy.float32]:
        """
        Logits [len(ids), n_vocab] of every position of `ids` in a fresh context. Uses (and clears)
        sequence 0.
        """
    def seq_len(self, seq_id: typing.SupportsInt | typing.SupportsIndex = 0) -> int:
        """
        Tokens in sequence seq_id's cache.
        """
    def truncate(
        self,
        seq_id: typing.SupportsInt | typing.SupportsIndex,
        n_keep: typing.SupportsInt | typing.SupportsIndex,
    ) -> None:
        """
        Keeps the first n_keep tokens of sequence seq_id.
        """
    @property
    def arch(self) -> str: ...
    @property
    def head_dim(self) -> int: ...
    @property
    def kv_bytes(self) -> int: ...
    @property
    def kv_type_k(self) -> str:
        """
        The KV cache's type for keys: 'f16', 'q8_0' or 'q4_0'.
        """
    @property
    def kv_type_v(self) -> str:
        """
        The KV cache's type for values: 'f16', 'q8_0' or 'q4_0'.
        """
    @property
    def n_batch(self) -> int: ...
    @property
    def n_ctx(self) -> int: ...
    @property
    def n_ctx_train(self) -> int: ...
    @property
    def n_embd(self) -> int: ...
    @property
    def n_ff(self) -> int: ...
    @property
    def n_head(self) -> int: ...
    @property
    def n_head_kv(self) -> int: ...
    @property
    def n_layer(self) -> int: ...
    @property
    def n_seq_max(self) -> int: ...
    @property
    def n_kv_blocks(self) -> int: ...
    @property
    def n_free_kv_blocks(self) -> int: ...
    @property
    def n_threads(self) -> int: ...
    @property
    def n_vocab(self) -> int: ...
    @property
    def offload(self) -> typing.Any:
        """
        None when every layer runs on the CPU; else a dict: backend, gpu_layers (N as
        llama.cpp counts it), first_layer, n_layer_device, head (bool), weights_bytes,
        kv_bytes, work_bytes, total_bytes (device memory by part), free_bytes (before
        loading), weights_copied (no device layer reads the file mapping).
        """
    @property
    def path(self) -> str: ...
    @property
    def rope_type(self) -> str: ...

def build_info() -> dict:
    """
    Version, compiler, CUDA, CPU features detected and the ISA in use.
    """

def cuda_test_matvec(
    raw: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8],
    type: str,
    rows: typing.SupportsInt | typing.SupportsIndex,
    x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Tests only: y [n_tok, rows] = W x[t] by the CUDA dequant-matvec, W the [rows, x.shape[1]] tensor of
    `type` in `raw`. RuntimeError without CUDA.
    """

def cuda_test_rmsnorm(
    x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    w: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    eps: typing.SupportsFloat | typing.SupportsIndex,
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Tests only: the CUDA RMSNorm of each row of x.
    """

def cuda_test_rope(
    x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    pos: typing.Annotated[numpy.typing.ArrayLike, numpy.int32],
    inv_freq: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    freq_scale: typing.SupportsFloat | typing.SupportsIndex,
    neox: bool,
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Tests only: the CUDA RoPE of x [n_tok, n_head, head_dim] at positions pos.
    """

def cuda_test_silu_mul(
    gate: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    up: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
) -> numpy.typing.NDArray[numpy.float32]:
    """
    Tests only: silu(gate) * up by the CUDA kernel.
    """

def block_grid(
    raw: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8], type: str, ne0: typing.SupportsInt
) -> tuple[numpy.typing.NDArray[numpy.float32], numpy.typing.NDArray[numpy.float32], int, int]:
    """The fixed grid of quantized rows (nrows, row_bytes): (scale, offset, qmin, qmax)."""

def set_quants(
    raw: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8],
    type: str,
    q: typing.Annotated[numpy.typing.ArrayLike, numpy.int8],
) -> numpy.typing.NDArray[numpy.uint8]:
    """A copy of the quantized rows raw with every element's q replaced, scales kept."""

def dequantize(
    raw: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8],
    type: str,
    shape: collections.abc.Sequence[typing.SupportsInt | typing.SupportsIndex],
    n_threads: typing.SupportsInt | typing.SupportsIndex = 0,
    out: numpy.ndarray | None = None,
) -> numpy.ndarray:
    """
    Dequantize raw tensor bytes of the given numpy shape to float32 (into out when given).
    """

def gguf_open(path: str) -> GGUFFile:
    """
    Map and validate a GGUF file; FormatError/UnsupportedError/OSError on failure.
    """

def imatrix_eval(
    model: Model,
    ids: typing.Annotated[numpy.typing.ArrayLike, numpy.int32],
    collector: ImatrixCollector,
    all_logits: bool = False,
) -> None:
    """
    Evaluate ids as a fresh sequence while the collector observes every matrix product.
    """

def offload_backends() -> list:
    """
    The device backends that can run layers in this build on this machine ('cpu-test' is for tests).
    """

def quantize(
    a: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    type: str,
    n_threads: typing.SupportsInt | typing.SupportsIndex = 0,
    imatrix: typing.Annotated[numpy.typing.ArrayLike, numpy.float32] | None = None,
) -> numpy.ndarray:
    """
    Quantize float32 rows (last axis) with the type's reference quantizer, or with its weighted quantizer (ggml's quantize_row_*_impl) when imatrix holds one weight per column.
    """

def types() -> list:
    """
    The type registry: one dict per tensor type.
    """

def vec_dot(
    weights: typing.Annotated[numpy.typing.ArrayLike, numpy.uint8],
    x: typing.Annotated[numpy.typing.ArrayLike, numpy.float32],
    type: str,
) -> numpy.ndarray:
    """
    Reference dot products of each row of a tensor's bytes (rows of len(x), the row count inferred from the byte count) with the float32 row x, which is first quantized to the type's vec_dot_type by its reference quantizer. Returns float32 of shape (nrows,).
    """

DEVICE_MARGIN_BYTES: int = 268435456
