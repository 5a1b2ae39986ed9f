"""qrt-convert: a Hugging Face checkpoint (safetensors) -> a quantized GGUF file, in one step.

    import qrt
    qrt.convert("SmolLM2-135M-Instruct/", "smollm2.Q4_K_M.gguf", type="Q4_K_M")

or ``qrt-convert HF_DIR -o OUT.gguf --type Q4_K_M`` (``--dry-run`` prints the plan and the file size).

Architectures: LlamaForCausalLM, MistralForCausalLM, Qwen2ForCausalLM with BF16/F16/F32 weights. The output
matches llama.cpp's ``convert_hf_to_gguf.py`` followed by ``llama-quantize``: the same metadata keys, tensor
names, Q/K permutation and per-tensor types, and byte-identical quantized tensors (qrt.quantize is ggml's
reference quantizer). NF4 files are qrt's own. Nothing from the checkpoint is ever executed: pickles are
refused, ``auto_map`` is ignored, every file is validated before use.
"""

from __future__ import annotations

from .calibrate import convert_calibrated
from .converter import Plan, convert, make_plan, run_plan
from .presets import FTYPES

#: the values ``type`` accepts
TYPES: tuple[str, ...] = tuple(FTYPES)

__all__ = ["TYPES", "Plan", "convert", "convert_calibrated", "make_plan", "plan", "run_plan"]


def plan(hf_dir, type: str = "Q4_K_M", *, tokenizer_pre: str | None = None) -> Plan:
    """What :func:`convert` would write (tensors, types, sizes, metadata), without writing anything."""
    from .checkpoint import Checkpoint

    with Checkpoint(hf_dir) as ckpt:
        return make_plan(ckpt, type, tokenizer_pre=tokenizer_pre)
