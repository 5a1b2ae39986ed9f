"""A validating safetensors reader that never trusts the file.

Layout (https://github.com/huggingface/safetensors): ``u64 N`` (little-endian), ``N`` bytes of UTF-8 JSON
(an object: tensor name -> ``{"dtype", "shape", "data_offsets": [begin, end]}``, plus an optional
``"__metadata__"`` object of strings), then the data buffer. Offsets are relative to the buffer.

Checked here, each failure a :class:`qrt.FormatError` naming the file (and the tensor):
header size 0, over 100 MB or past the end of the file; header not UTF-8, not JSON, not an object, duplicate
keys; a tensor entry that is not an object, an unknown dtype, a shape that is not a list of non-negative
integers or whose byte size overflows; offsets that are not two integers, end < start, tensors that do not
tile the buffer exactly (gaps, overlaps, not starting at 0, not reaching the end of the file); shape x dtype
size != byte range.

Tensor bytes are read with ``pread`` into fresh buffers, a row range at a time, so memory stays bounded by
what the caller asks for (no mapping of the whole file).
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass

import numpy as np

from qrt import FormatError

MAX_HEADER_BYTES = 100_000_000  # the safetensors library's own limit
_MAX_BYTES = 1 << 62  # anything larger is an overflow, not a tensor

#: dtype -> (bytes per element, numpy dtype used to read it; None where numpy has none)
DTYPES: dict[str, tuple[int, np.dtype | None]] = {
    "BOOL": (1, np.dtype(np.bool_)),
    "U8": (1, np.dtype(np.uint8)),
    "I8": (1, np.dtype(np.int8)),
    "F8_E5M2": (1, None),
    "F8_E4M3": (1, None),
    "F8_E8M0": (1, None),
    "I16": (2, np.dtype("<i2")),
    "U16": (2, np.dtype("<u2")),
    "F16": (2, np.dtype("<f2")),
    "BF16": (2, np.dtype("<u2")),  # raw bits; widened to float32 by to_float32()
    "I32": (4, np.dtype("<i4")),
    "U32": (4, np.dtype("<u4")),
    "F32": (4, np.dtype("<f4")),
    "F64": (8, np.dtype("<f8")),
    "I64": (8, np.dtype("<i8")),
    "U64": (8, np.dtype("<u8")),
}

#: source dtypes the converter turns into weights
FLOAT_DTYPES = ("BF16", "F16", "F32")


@dataclass(frozen=True)
class TensorEntry:
    name: str
    dtype: str
    shape: tuple[int, ...]
    begin: int  #: absolute file offset of the first byte
    nbytes: int
    path: str  #: the file holding it

    @property
    def n_elements(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


def _no_duplicates(pairs: list[tuple[str, object]]) -> dict:
    out: dict = {}
    for k, v in pairs:
        if k in out:
            raise ValueError(f"duplicate key {k!r}")
        out[k] = v
    return out


def _is_int(x: object) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


class SafetensorsFile:
    """One ``.safetensors`` file: its validated tensor table; :meth:`read` returns tensor rows."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = os.fspath(path)
        self._fd = -1
        self._fd = os.open(self.path, os.O_RDONLY | getattr(os, "O_CLOEXEC", 0))
        try:
            self.tensors, self.metadata = self._parse()
        except BaseException:
            self.close()
            raise

    def _fail(self, msg: str, tensor: str | None = None) -> FormatError:
        where = f"{self.path}: tensor {tensor!r}: " if tensor is not None else f"{self.path}: "
        return FormatError(f"{where}{msg} (safetensors)")

    def _parse(self) -> tuple[dict[str, TensorEntry], dict[str, str]]:
        size = os.fstat(self._fd).st_size
        head = os.pread(self._fd, 8, 0)
        if len(head) < 8:
            raise self._fail(f"file of {size} bytes is too short for the 8-byte header length")
        n = int.from_bytes(head, "little")
        if n == 0:
            raise self._fail("header length is 0")
        if n > MAX_HEADER_BYTES:
            raise self._fail(f"header length {n} exceeds the {MAX_HEADER_BYTES}-byte limit")
        if n > size - 8:
            raise self._fail(f"header length {n} runs past the end of the file ({size} bytes)")
        raw = os.pread(self._fd, n, 8)
        if len(raw) != n:
            raise self._fail("short read of the header")
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as e:
            raise self._fail(f"header is not UTF-8 (byte {e.start})") from None
        try:
            header = json.loads(text, object_pairs_hook=_no_duplicates)
        except (ValueError, RecursionError) as e:
            raise self._fail(f"header is not valid JSON: {e}") from None
        if not isinstance(header, dict):
            raise self._fail(f"header is a JSON {type(header).__name__}, not an object")

        data_start = 8 + n
        buffer_len = size - data_start
        meta = header.pop("__metadata__", None)
        if meta is None:
            meta = {}
        if not isinstance(meta, dict) or not all(isinstance(v, str) for v in meta.values()):
            raise self._fail("__metadata__ is not an object of strings")

        spans: list[tuple[int, int, str]] = []
        entries: dict[str, TensorEntry] = {}
        for name, info in header.items():
            if not isinstance(info, dict):
                raise self._fail("entry is not an object", name)
            extra = set(info) - {"dtype", "shape", "data_offsets"}
            if extra or len(info) != 3:
                raise self._fail(
                    f"entry needs exactly dtype, shape and data_offsets (got {sorted(info)})", name
                )
            dtype, shape, offsets = info["dtype"], info["shape"], info["data_offsets"]
            if not isinstance(dtype, str) or dtype not in DTYPES:
                raise self._fail(f"unknown dtype {dtype!r}", name)
            if not isinstance(shape, list) or not all(_is_int(d) and d >= 0 for d in shape):
                raise self._fail(f"shape {shape!r} is not a list of non-negative integers", name)
            if (
                not isinstance(offsets, list)
                or len(offsets) != 2
                or not all(_is_int(o) and o >= 0 for o in offsets)
            ):
                raise self._fail(f"data_offsets {offsets!r} is not two non-negative integers", name)
            begin, end = offsets
            if end < begin:
                raise self._fail(f"data_offsets end {end} < start {begin}", name)
            nbytes = DTYPES[dtype][0]
            for d in shape:
                nbytes *= d
                if nbytes > _MAX_BYTES:
                    raise self._fail(f"shape {shape} overflows", name)
            if nbytes != end - begin:
                raise self._fail(
                    f"shape {shape} x {dtype} is {nbytes} bytes but data_offsets [{begin}, {end}] hold "
                    f"{end - begin}",
                    name,
                )
            if end > buffer_len:
                raise self._fail(
                    f"data_offsets [{begin}, {end}] run past the end of the data buffer ({buffer_len} bytes)",
                    name,
                )
            spans.append((begin, end, name))
            entries[name] = TensorEntry(name, dtype, tuple(shape), data_start + begin, nbytes, self.path)

        # the tensors must tile the buffer: sorted by start, each begins where the previous ended
        spans.sort()
        pos, prev = 0, None
        for begin, end, name in spans:
            if begin != pos:
                if begin < pos:
                    raise self._fail(f"data_offsets [{begin}, {end}] overlap tensor {prev!r}", name)
                raise self._fail(f"gap of {begin - pos} bytes before its data_offsets [{begin}, {end}]", name)
            pos, prev = end, name
        if pos != buffer_len:
            raise self._fail(f"tensors cover {pos} bytes of a {buffer_len}-byte data buffer")
        return entries, meta

    def read(self, name: str, row_start: int = 0, row_stop: int | None = None) -> np.ndarray:
        """Rows ``[row_start, row_stop)`` of tensor ``name`` (rows = the first axis; a 1-D tensor is one row
        per element) as a new array of the stored dtype (BF16 as uint16 bits)."""
        e = self.tensors[name]
        np_dtype = DTYPES[e.dtype][1]
        if np_dtype is None:
            raise self._fail(f"dtype {e.dtype} cannot be read", name)
        shape = e.shape or (1,)
        rows = shape[0]
        row_stop = rows if row_stop is None else row_stop
        row_elems = e.n_elements // rows if rows else 0
        item = np_dtype.itemsize
        offset = e.begin + row_start * row_elems * item
        count = (row_stop - row_start) * row_elems
        out = np.empty(count, dtype=np_dtype)
        view = memoryview(out.view(np.uint8))
        done = 0
        while done < len(view):
            got = os.preadv(self._fd, [view[done:]], offset + done)
            if got <= 0:
                raise self._fail("file shrank while reading", name)
            done += got
        return out.reshape((row_stop - row_start, *shape[1:]))

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1

    def __enter__(self) -> SafetensorsFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        try:
            self.close()
        except Exception:
            pass


def to_float32(a: np.ndarray, dtype: str) -> np.ndarray:
    """Widen ``a`` as read by :meth:`SafetensorsFile.read` (``dtype`` = its safetensors dtype) to float32.

    BF16 -> F32 and F16 -> F32 are exact."""
    if dtype == "BF16":
        return (a.astype(np.uint32) << 16).view(np.float32)
    if dtype in ("F16", "F64"):
        return a.astype(np.float32)
    if dtype == "F32":
        return a
    raise ValueError(f"not a float dtype: {dtype}")
