"""Plan and run a conversion: checkpoint -> typed tensor plan + metadata -> streamed GGUF.

:func:`make_plan` reads everything but the weights (config, safetensors headers, tokenizer) and decides every
tensor's type and byte size, so the header, ``--dry-run`` and the expected file size all come from the plan.
:func:`run_plan` then reads each tensor a chunk of rows at a time (BF16/F16/F32 -> float32, Q/K permuted a
few heads at a time), quantizes it with ``qrt.quantize`` (C++, multithreaded, GIL released) and appends the
bytes to the output. Peak memory is a few chunks (~64 MB), plus a whole tensor only for NF4, whose
double-quantization state spans the tensor.
"""

from __future__ import annotations

import logging
import math
import os
import pathlib
import sys
import time
from collections.abc import Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np

import qrt
from qrt import FormatError, UnsupportedError

from . import imatrix as imatrix_mod
from .arch import Architecture, TensorMap, detect, map_tensors, permute_rows
from .checkpoint import Checkpoint, read_json_object
from .gguf_writer import KV, STRING, UINT32, GGUFStreamWriter, TensorSlot, file_size
from .presets import FTYPES, ModelInfo, allows_quantization, choose_types, tensor_order
from .safetensors import FLOAT_DTYPES, to_float32
from .vocab import vocab_metadata

CHUNK_ELEMENTS = 1 << 20  # float32 elements per chunk: 4 MB
NF4_FORMAT_VERSION = 1
NF4_NOTE = (
    "NF4 is a qrt-only tensor type: this file loads in qrt, not in llama.cpp or other GGUF readers "
    "(it carries qrt.format_version)"
)

_log = logging.getLogger("qrt_convert")


@dataclass
class PlannedTensor:
    name: str  #: GGUF name
    hf_name: str | None  #: checkpoint tensor (None: generated)
    shape: tuple[int, ...]  #: numpy shape
    src_dtype: str  #: safetensors dtype (F32 for generated tensors)
    type: str  #: type written
    nbytes: int
    permute_heads: int = 0
    tensor_map: TensorMap | None = None
    imatrix: np.ndarray | None = None  #: column importances for the weighted quantizers (--imatrix)

    @property
    def ne(self) -> tuple[int, ...]:
        return tuple(reversed(self.shape))


@dataclass
class Plan:
    hf_dir: pathlib.Path
    ftype: str
    arch: Architecture
    kvs: list[KV]
    tensors: list[PlannedTensor]
    file_size: int
    source_bytes: int
    notes: list[str] = field(default_factory=list)

    def slots(self) -> list[TensorSlot]:
        ids = {name: info.id for name, info in qrt.types().items()}
        return [TensorSlot(t.name, t.ne, ids[t.type], t.nbytes) for t in self.tensors]

    def describe(self) -> str:
        """The plan as text: one line per tensor (name, ggml shape, type, bytes), then the totals."""
        w = max(len(t.name) for t in self.tensors)
        lines = [f"{'tensor':<{w}}  {'shape (ggml ne)':<22} {'type':<5} {'bytes':>12}"]
        for t in self.tensors:
            shape = "{" + ", ".join(str(d) for d in t.ne) + "}"
            lines.append(f"{t.name:<{w}}  {shape:<22} {t.type:<5} {t.nbytes:>12,}")
        counts: dict[str, int] = {}
        for t in self.tensors:
            counts[t.type] = counts.get(t.type, 0) + 1
        mix = ", ".join(f"{n} {k}" for k, n in sorted(counts.items(), key=lambda kv: -kv[1]))
        lines.append(
            f"{len(self.tensors)} tensors ({mix}), {len(self.kvs)} metadata keys; "
            f"source {self.source_bytes / 2**20:.1f} MiB -> expected file size {self.file_size:,} bytes "
            f"({self.file_size / 2**20:.1f} MiB, {self.bits_per_weight():.2f} bits per weight)"
        )
        lines.extend(self.notes)
        return "\n".join(lines)

    def bits_per_weight(self) -> float:
        n = sum(math.prod(t.shape) for t in self.tensors)
        return 8 * sum(t.nbytes for t in self.tensors) / max(n, 1)


def tensor_nbytes(type_name: str, shape: tuple[int, ...]) -> int:
    info = qrt.types()[type_name]
    n = math.prod(shape)
    if n % info.block_size:
        raise ValueError(f"{n} elements are not a multiple of {type_name}'s block of {info.block_size}")
    nblocks = n // info.block_size
    size = nblocks * info.type_size
    if type_name == "NF4":  # blocks, then dynamic_map[256], offset, absmax2[ceil(nblocks / 256)] (nf4.h)
        size += 4 * 256 + 4 + 4 * -(-nblocks // 256)
    return size


def _general_metadata(hf_dir: pathlib.Path, arch: str, total_params: int) -> list[KV]:
    """general.* as convert_hf_to_gguf.py derives them (gguf-py's Metadata: model card, directory name)."""
    try:
        import gguf
    except ImportError:
        return [KV("general.type", STRING, "model"), KV("general.name", STRING, hf_dir.name)]
    logging.getLogger("gguf").setLevel(logging.ERROR)
    try:
        meta = gguf.Metadata.load(None, hf_dir, None, total_params)
    except Exception as e:  # a malformed README model card must not stop the conversion
        _log.warning("ignoring model card metadata: %s", e)
        meta = gguf.Metadata()
    if meta.name is None:
        meta.name = hf_dir.name
    if meta.size_label is None and total_params > 0:
        meta.size_label = gguf.size_label(total_params, total_params, 0, 0)
    w = gguf.GGUFWriter(path=None, arch=arch)
    w.add_type(gguf.GGUFType.MODEL)
    meta.set_gguf_meta_model(w)
    out = []
    for key, v in w.kv_data[0].items():
        if key == "general.architecture":
            continue
        sub = int(v.sub_type) if v.sub_type is not None else None
        out.append(KV(key, int(v.type), v.value, sub))
    return out


def _gemma3_vocab_rows(hf_dir: pathlib.Path, arch: Architecture) -> int | None:
    """How many embedding rows ``Gemma3Model.modify_tensors`` keeps: the SentencePiece vocabulary (padded to
    vocab_size), or tokenizer.json's vocab plus its added tokens."""
    if arch.arch != "gemma3":
        return None
    if (hf_dir / "tokenizer.model").is_file():
        return arch.vocab_size
    tj = read_json_object(hf_dir / "tokenizer.json")
    model, added = tj.get("model"), tj.get("added_tokens")
    if not isinstance(model, dict) or not isinstance(model.get("vocab"), dict) or not isinstance(added, list):
        raise FormatError(f"{hf_dir / 'tokenizer.json'}: no model.vocab object or added_tokens list")
    return len(model["vocab"]) + len(added)


def _convert_order(ckpt: Checkpoint, maps: list[TensorMap]) -> list[str]:
    """convert_hf_to_gguf.py's tensor order: generated tensors first, then shard by shard (file names sorted),
    each shard's tensors by checkpoint name (gguf-py's SafetensorsLocal sorts them as safetensors does)."""
    out = [m.gguf_name for m in maps if m.hf_name is None]
    by_file: dict[str, list[tuple[str, str]]] = {}
    for m in maps:
        if m.hf_name is not None:
            by_file.setdefault(pathlib.Path(ckpt.file_of(m.hf_name).path).name, []).append(
                (m.hf_name, m.gguf_name)
            )
    for name in sorted(by_file):
        out += [g for _, g in sorted(by_file[name])]
    return out


def make_plan(
    ckpt: Checkpoint,
    ftype: str = "Q4_K_M",
    *,
    tokenizer_pre: str | None = None,
    imatrix: str | os.PathLike[str] | None = None,
    calibrated: bool = False,
) -> Plan:
    """Decide metadata, tensor types and sizes for converting ``ckpt`` to ``ftype`` (with the importance
    matrix file ``imatrix``, as ``llama-quantize --imatrix``: see :mod:`qrt_convert.imatrix`). ``calibrated``:
    choose the types as with an importance matrix before one exists (layer-wise calibration makes it)."""
    ftype = ftype.upper()
    if ftype not in FTYPES:
        raise ValueError(f"unknown type {ftype!r}; choose one of {', '.join(FTYPES)}")
    if imatrix is not None and ftype in ("F16", "BF16", "NF4"):
        raise ValueError(
            f"--imatrix has no effect on {ftype}: only the GGUF block types round with importances"
        )
    imat = imatrix_mod.load(imatrix) if imatrix is not None else None
    arch = detect(ckpt.config)
    shapes = {e.name: e.shape for e in ckpt}
    maps = {m.gguf_name: m for m in map_tensors(arch, shapes, _gemma3_vocab_rows(ckpt.dir, arch))}
    order = tensor_order(list(maps))  # llama-quantize's, which its per-tensor rules count along

    src: list[tuple[str, tuple[int, ...], str]] = []
    for name in order:
        m = maps[name]
        if m.hf_name is not None:
            dt = ckpt.tensors[m.hf_name].dtype
            if dt not in (*FLOAT_DTYPES, "F64"):
                raise UnsupportedError(
                    f"{ckpt.tensors[m.hf_name].path}: tensor {m.hf_name!r} is {dt}; only BF16, F16 and F32 "
                    "weights can be converted"
                )
        ne = tuple(reversed(m.shape))
        before = "F16" if allows_quantization(name, len(ne)) else "F32"
        src.append((name, ne, before))
    types = choose_types(
        src,
        ftype,
        ModelInfo(arch.arch, arch.n_layer, arch.n_head, arch.n_head_kv),
        imat is not None or calibrated,
    )

    tensors = []
    float_file = ftype in ("F16", "BF16")
    for name in _convert_order(ckpt, list(maps.values())) if float_file else order:
        m = maps[name]
        t = types[name]
        dt = ckpt.tensors[m.hf_name].dtype if m.hf_name is not None else "F32"
        tensors.append(
            PlannedTensor(name, m.hf_name, m.shape, dt, t, tensor_nbytes(t, m.shape), m.permute_heads, m)
        )

    if not calibrated:
        imatrix_mod.check_required(tensors, ftype, imat)
    if imat is not None:
        imatrix_mod.attach(tensors, imat, os.fspath(imatrix))

    total_params = sum(math.prod(t.shape) for t in tensors)
    file_type = KV("general.file_type", UINT32, FTYPES[ftype][0])
    kvs = [KV("general.architecture", STRING, arch.arch), *arch.early_kvs]
    kvs += _general_metadata(ckpt.dir, arch.arch, total_params)
    if float_file:  # as convert_hf_to_gguf.py writes them
        kvs += [*arch.kvs[: arch.file_type_index], file_type, *arch.kvs[arch.file_type_index :]]
        kvs.append(KV("general.quantization_version", UINT32, 2))
    else:
        kvs += arch.kvs
    try:
        kvs += vocab_metadata(ckpt.dir, arch, tokenizer_pre)
    except (AttributeError, TypeError, KeyError, IndexError) as e:  # JSON of an unexpected shape
        raise FormatError(f"{ckpt.dir}: tokenizer files have an unexpected structure: {e!r}") from None
    if not float_file:  # as llama-quantize leaves them
        kvs += [KV("general.quantization_version", UINT32, 2), file_type]
    if imat is not None:
        kvs += imatrix_mod.metadata(os.fspath(imatrix), imat)
    notes = []
    if ftype == "NF4":
        kvs.append(KV("qrt.format_version", UINT32, NF4_FORMAT_VERSION))
        notes.append("note: " + NF4_NOTE)
    if ckpt.has_remote_code:
        notes.append("note: config.json names remote code (auto_map); it is ignored, never run")
    used = {m.hf_name for m in maps.values()}
    skipped = [n for n in shapes if n not in used]
    if skipped:
        notes.append(
            f"note: {len(skipped)} checkpoint tensors not needed in GGUF were skipped ({skipped[0]}, ...)"
        )

    plan = Plan(ckpt.dir, ftype, arch, kvs, tensors, 0, ckpt.source_bytes, notes)
    plan.file_size = file_size(kvs, plan.slots())
    return plan


def _chunks(ckpt: Checkpoint, t: PlannedTensor) -> Iterator[tuple[np.ndarray, int]]:
    """(float32 rows, source bytes) pieces of ``t`` in order, each already permuted."""
    if t.hf_name is None:
        assert t.tensor_map is not None and t.tensor_map.generate is not None
        a = np.ascontiguousarray(t.tensor_map.generate(), dtype=np.float32)
        yield a, a.nbytes
        return
    f = ckpt.file_of(t.hf_name)
    rows = t.shape[0] if t.shape else 1
    row_elems = max(1, math.prod(t.shape) // max(rows, 1))
    if len(t.shape) < 2 or not qrt.types()[t.type].row_wise:
        step = rows
    else:
        step = max(1, CHUNK_ELEMENTS // row_elems)
        if t.permute_heads:
            head_rows = rows // t.permute_heads
            step = max(head_rows, step // head_rows * head_rows)
    item = 2 if t.src_dtype in ("BF16", "F16") else (8 if t.src_dtype == "F64" else 4)
    for r0 in range(0, rows, step):
        r1 = min(rows, r0 + step)
        raw = f.read(t.hf_name, r0, r1)
        x = to_float32(raw, t.src_dtype)
        if t.tensor_map is not None and t.tensor_map.offset:
            # llama.cpp adds in the source type when it is F16 (torch keeps F16), in float32 otherwise
            x = x + np.float32(t.tensor_map.offset)
            if t.src_dtype == "F16":
                x = x.astype(np.float16).astype(np.float32)
        if t.permute_heads:
            x = permute_rows(x, (r1 - r0) // (rows // t.permute_heads))
        yield np.ascontiguousarray(x), raw.size * item


def _encode(t: PlannedTensor, x: np.ndarray, n_threads: int) -> np.ndarray:
    if t.type == "F32":
        return x
    rows2d = x.reshape(-1, t.shape[-1]) if x.ndim != 1 else x.reshape(1, -1)
    try:
        return qrt.quantize(rows2d, t.type, n_threads=n_threads, imatrix=t.imatrix)
    except ValueError as e:
        where = f"tensor {t.hf_name!r}" if t.hf_name else t.name
        raise FormatError(f"{where}: cannot quantize to {t.type}: {e}") from None


def run_plan(
    ckpt: Checkpoint,
    plan: Plan,
    out_path: str | os.PathLike[str],
    *,
    progress: bool = True,
    n_threads: int = 0,
    precomputed: Mapping[str, pathlib.Path] | None = None,
) -> None:
    """Write ``plan`` to ``out_path`` (atomically: temporary file, then rename). ``precomputed`` names
    tensors whose stored bytes calibration already made (``.npy`` files): they are written as they are."""
    precomputed = precomputed or {}
    bar = None
    if progress:
        try:
            from tqdm import tqdm

            bar = tqdm(
                total=sum(ckpt.tensors[t.hf_name].nbytes for t in plan.tensors if t.hf_name),
                unit="B",
                unit_scale=True,
                unit_divisor=1000,
                desc="converting",
                file=sys.stderr,
                dynamic_ncols=True,
                smoothing=0.1,
                bar_format="{desc:<28.28} {percentage:3.0f}%|{bar}| {n_fmt}/{total_fmt} [{elapsed}<{remaining}, {rate_fmt}]",
            )
        except ImportError:  # pragma: no cover - tqdm is a dependency
            bar = None

    def pieces() -> Iterator[tuple[PlannedTensor, np.ndarray, int]]:
        for t in plan.tensors:
            if t.name in precomputed:
                data = np.load(precomputed[t.name])
                if data.nbytes != t.nbytes:
                    raise ValueError(
                        f"{t.name}: calibration made {data.nbytes} bytes, the plan has {t.nbytes}"
                    )
                yield t, data, ckpt.tensors[t.hf_name].nbytes if t.hf_name else 0
                continue
            for x, nb in _chunks(ckpt, t):
                yield t, x, nb

    try:
        with GGUFStreamWriter(out_path, plan.kvs, plan.slots()) as w, ThreadPoolExecutor(1) as pool:
            it = pieces()
            nxt = pool.submit(next, it, None)  # read + widen + permute one chunk ahead of quantize + write
            while True:
                item = nxt.result()
                if item is None:
                    break
                nxt = pool.submit(next, it, None)
                t, x, nb = item
                if bar is not None:
                    bar.set_description_str(t.name, refresh=False)
                data = x if t.name in precomputed else _encode(t, x, n_threads)
                w.write(memoryview(np.ascontiguousarray(data)).cast("B"))
                del x, data
                if bar is not None:
                    bar.update(nb)
    finally:
        if bar is not None:
            bar.close()


def convert(
    hf_dir: str | os.PathLike[str],
    out_path: str | os.PathLike[str],
    type: str = "Q4_K_M",
    *,
    progress: bool = True,
    n_threads: int = 0,
    tokenizer_pre: str | None = None,
    imatrix: str | os.PathLike[str] | None = None,
) -> Plan:
    """Convert the Hugging Face checkpoint in ``hf_dir`` to a GGUF file at ``out_path``; returns the plan.

    ``type`` is one of :data:`presets.FTYPES` (llama-quantize's mixes, plus F16/BF16 and qrt's NF4).
    Raises :class:`qrt.FormatError` for malformed checkpoint files, :class:`qrt.UnsupportedError` for what
    qrt-convert does not handle (architecture, pickle weights, unknown pre-tokenizer), ``OSError`` for I/O
    failures; no output file is left behind on any error. ``imatrix``: an importance-matrix file (llama.cpp's
    GGUF or legacy format), used as ``llama-quantize --imatrix`` uses it."""
    t0 = time.monotonic()
    with Checkpoint(hf_dir) as ckpt:
        plan = make_plan(ckpt, type, tokenizer_pre=tokenizer_pre, imatrix=imatrix)
        if progress:
            for note in plan.notes:
                print(note, file=sys.stderr)
        run_plan(ckpt, plan, out_path, progress=progress, n_threads=n_threads)
    if progress:
        dt = time.monotonic() - t0
        print(
            f"wrote {out_path}: {plan.file_size / 2**20:.1f} MiB, {len(plan.tensors)} tensors, {plan.ftype} "
            f"({plan.bits_per_weight():.2f} bpw) in {dt:.1f} s",
            file=sys.stderr,
        )
    return plan
