"""qrt: a quantized LLM inference runtime.

    import qrt
    model = qrt.load("model.gguf")
    print(model.generate("The capital of France is", max_tokens=32))
import qrt
with qrt.gguf.open("model.gguf") as f:
    print(f.metadata["general.architecture"], len(f.tensors))
raw = qrt.quantize(weights, "Q4_K")
approx = qrt.dequantize(raw, "Q4_K", weights.shape)
"""

from __future__ import annotations

from . import _C, gguf
from ._C import FormatError, UnsupportedError
from .formats import TypeInfo, dequantize, quantize, types
from .model import Model, load
from .tokenizer import Detokenizer, Tokenizer

__version__: str = _C.build_info()["version"]

__all__ = [
    "Detokenizer",
    "FormatError",
    "Model",
    "Tokenizer",
    "TypeInfo",
    "UnsupportedError",
    "__version__",
    "build_info",
    "dequantize",
    "gguf",
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
