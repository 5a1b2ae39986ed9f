"""qrt: a quantized LLM inference runtime.

    import qrt
    model = qrt.load("model.gguf")
    print(model.generate("The capital of France is", max_tokens=32))
import qrt
with qrt.gguf.open("model.gguf") as f:
    print(f.metadata["general.architecture"], len(f.tensors))
raw = qrt.quantize(weights, "Q4_K")
approx = qrt.dequantize(raw, "Q4_K", weights.shape)
qrt.convert("hf_checkpoint_dir/", "model.Q4_K_M.gguf", type="Q4_K_M")
"""

from __future__ import annotations

import importlib
import os
from typing import TYPE_CHECKING, Any

from . import _C
from ._C import FormatError, QueueFullError, UnsupportedError

if TYPE_CHECKING:
    from . import gguf, imatrix_file
    from .formats import TypeInfo, dequantize, quantize, types
    from .importance import imatrix
    from .model import Model, load
    from .tokenizer import Detokenizer, Tokenizer

__version__: str = _C.build_info()["version"]

# Public names imported on first use (PEP 562): numpy and jinja2 take ~100 ms to import, as long as a small
# model takes to load, and `import qrt` alone (qrt-run --help, qrt-gguf) needs neither.
_LAZY = {
    "gguf": "gguf",
    "TypeInfo": "formats",
    "dequantize": "formats",
    "quantize": "formats",
    "types": "formats",
    "Model": "model",
    "imatrix": "importance",
    "imatrix_file": "imatrix_file",
    "load": "model",
    "Detokenizer": "tokenizer",
    "Tokenizer": "tokenizer",
}

__all__ = [
    "Detokenizer",
    "FormatError",
    "Model",
    "QueueFullError",
    "Tokenizer",
    "TypeInfo",
    "UnsupportedError",
    "__version__",
    "build_info",
    "convert",
    "dequantize",
    "gguf",
    "imatrix",
    "imatrix_file",
    "load",
    "quantize",
    "types",
]


def build_info() -> dict:
    """How this qrt was built and what it found on this machine.

    Keys: ``version``, ``compiler``, ``cuda`` (CUDA sources compiled in), ``cpu_features`` (flags read by
    CPUID), ``isas_compiled`` and ``isa`` (the kernel set in use; ``QRT_KERNELS=scalar`` forces the
    portable reference kernels).
    """
    return _C.build_info()


def convert(
    hf_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    type: str = "Q4_K_M",
    progress: bool = True,
    **kwargs: Any,
) -> Any:
    """Convert a Hugging Face checkpoint directory (config.json, *.safetensors, tokenizer) to a GGUF file.

    ``type``: F16, BF16, Q8_0, Q4_0, Q4_1, Q5_0, Q5_1, Q2_K, Q3_K_S/M/L, Q4_K_S/M, Q5_K_S/M, Q6_K (llama-quantize's
    per-tensor mixes; the file loads in llama.cpp too) or NF4 (qrt only). ``progress`` shows a progress bar.
    Keyword arguments ``n_threads``, ``tokenizer_pre`` and ``imatrix`` (an importance-matrix file, as
    ``llama-quantize --imatrix``) are passed on. Returns the plan that was written
    (tensors, types, sizes, metadata). Raises :class:`FormatError` for malformed checkpoint files,
    :class:`UnsupportedError` for what cannot be converted, ``OSError`` for I/O failures; on any error no file is
    left at ``out_path``. This is ``qrt-convert`` (the ``qrt_convert`` package) as a function.
    """
    import qrt_convert

    return qrt_convert.convert(hf_dir, out_path, type, progress=progress, **kwargs)


if not TYPE_CHECKING:  # hidden from type checkers, which would otherwise accept any qrt.<name>

    def __getattr__(name: str) -> Any:
        if name not in _LAZY:
            raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
        module = importlib.import_module(f".{_LAZY[name]}", __name__)
        value = module if name == _LAZY[name] else getattr(module, name)
        globals()[name] = value
        return value

    def __dir__() -> list[str]:
        return sorted(set(globals()) | set(_LAZY))
