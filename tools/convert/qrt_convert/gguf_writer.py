"""A streaming GGUF v3 writer: the header is written from the plan, then tensors one at a time.

Every tensor's type and byte size are known before any data is produced (``plan``), so offsets are computed
up front and each tensor's bytes go straight to the file as they are made; nothing holds the whole model.
The file is written under a temporary name in the output directory and renamed over the output only after
the last byte is written and synced; on any error the temporary file is removed (BAD_INPUTS 27).
"""

from __future__ import annotations

import os
import pathlib
import struct
import tempfile
from dataclasses import dataclass
from typing import Any

GGUF_MAGIC = b"GGUF"
GGUF_VERSION = 3
ALIGNMENT = 32

# gguf_type ids (FORMATS.md §1.1)
UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

_SCALAR_FMT = {
    UINT8: "<B",
    INT8: "<b",
    UINT16: "<H",
    INT16: "<h",
    UINT32: "<I",
    INT32: "<i",
    FLOAT32: "<f",
    BOOL: "<?",
    UINT64: "<Q",
    INT64: "<q",
    FLOAT64: "<d",
}
TYPE_NAMES = {
    v: k
    for k, v in dict(
        UINT8=UINT8,
        INT8=INT8,
        UINT16=UINT16,
        INT16=INT16,
        UINT32=UINT32,
        INT32=INT32,
        FLOAT32=FLOAT32,
        BOOL=BOOL,
        STRING=STRING,
        ARRAY=ARRAY,
        UINT64=UINT64,
        INT64=INT64,
        FLOAT64=FLOAT64,
    ).items()
}


@dataclass
class KV:
    """One metadata entry with its GGUF type (``element_type`` for arrays)."""

    key: str
    type: int
    value: Any
    element_type: int | None = None


def _string(s: str | bytes) -> bytes:
    b = s.encode("utf-8") if isinstance(s, str) else bytes(s)
    return struct.pack("<Q", len(b)) + b


def _value(vtype: int, value: Any) -> bytes:
    if vtype == STRING:
        return _string(value)
    return struct.pack(_SCALAR_FMT[vtype], value)


def encode_kv(kv: KV) -> bytes:
    out = [_string(kv.key), struct.pack("<i", kv.type)]
    if kv.type == ARRAY:
        et = kv.element_type
        assert et is not None and et != ARRAY
        out.append(struct.pack("<iQ", et, len(kv.value)))
        if et == STRING:
            out.extend(_string(v) for v in kv.value)
        else:
            import numpy as np

            np_t = {
                UINT8: "<u1",
                INT8: "<i1",
                UINT16: "<u2",
                INT16: "<i2",
                UINT32: "<u4",
                INT32: "<i4",
                FLOAT32: "<f4",
                BOOL: "?",
                UINT64: "<u8",
                INT64: "<i8",
                FLOAT64: "<f8",
            }[et]
            out.append(np.asarray(kv.value, dtype=np_t).tobytes())
    else:
        out.append(_value(kv.type, kv.value))
    return b"".join(out)


@dataclass
class TensorSlot:
    name: str
    ne: tuple[int, ...]  #: ggml order (numpy shape reversed)
    ggml_type: int
    nbytes: int
    offset: int = 0  #: relative to the data section


def _pad(n: int, align: int = ALIGNMENT) -> int:
    return (n + align - 1) // align * align


def header_bytes(kvs: list[KV], slots: list[TensorSlot]) -> bytes:
    """Everything before the data section (padded to the alignment); also fills in ``slot.offset``."""
    parts = [GGUF_MAGIC, struct.pack("<IQQ", GGUF_VERSION, len(slots), len(kvs))]
    parts.extend(encode_kv(kv) for kv in kvs)
    offset = 0
    for s in slots:
        s.offset = offset
        parts.append(_string(s.name))
        parts.append(struct.pack("<I", len(s.ne)))
        parts.append(struct.pack(f"<{len(s.ne)}q", *s.ne))
        parts.append(struct.pack("<iQ", s.ggml_type, offset))
        offset += _pad(s.nbytes)
    head = b"".join(parts)
    return head + b"\0" * (_pad(len(head)) - len(head))


def file_size(kvs: list[KV], slots: list[TensorSlot]) -> int:
    return len(header_bytes(kvs, slots)) + sum(_pad(s.nbytes) for s in slots)


class GGUFStreamWriter:
    """``with GGUFStreamWriter(path, kvs, slots) as w: w.write(slot_index_bytes...)`` in slot order.

    The output appears under ``path`` only when the ``with`` block ends without an exception."""

    def __init__(self, path: str | os.PathLike[str], kvs: list[KV], slots: list[TensorSlot]) -> None:
        self.path = pathlib.Path(path)
        self.kvs, self.slots = kvs, slots
        self._file = None
        self._tmp: str | None = None
        self._current = 0  # index of the slot being written
        self._written = 0  # bytes of that slot written so far

    def __enter__(self) -> GGUFStreamWriter:
        parent = self.path.parent
        if self.path.is_dir():
            raise IsADirectoryError(f"{self.path}: is a directory")
        fd, self._tmp = tempfile.mkstemp(dir=parent, prefix=f".{self.path.name}.", suffix=".tmp")
        try:
            self._file = os.fdopen(fd, "wb", buffering=0)
            self._file.write(header_bytes(self.kvs, self.slots))
        except BaseException:
            self._abort()
            raise
        return self

    def write(self, data: bytes | memoryview) -> None:
        """Append bytes of the current tensor; moves to the next tensor when this one is complete."""
        assert self._file is not None
        slot = self.slots[self._current]
        n = len(data)
        if self._written + n > slot.nbytes:
            raise AssertionError(f"{slot.name}: {self._written + n} bytes written, {slot.nbytes} planned")
        mv = memoryview(data).cast("B")
        while len(mv):
            k = self._file.write(mv)
            mv = mv[k:]
        self._written += n
        if self._written == slot.nbytes:
            pad = _pad(slot.nbytes) - slot.nbytes
            if pad:
                self._file.write(b"\0" * pad)
            self._current += 1
            self._written = 0

    def _abort(self) -> None:
        if self._file is not None:
            try:
                self._file.close()
            except OSError:
                pass
            self._file = None
        if self._tmp is not None:
            try:
                os.unlink(self._tmp)
            except OSError:
                pass
            self._tmp = None

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if exc_type is not None:
            self._abort()
            return
        try:
            if self._current != len(self.slots):
                raise AssertionError(f"only {self._current} of {len(self.slots)} tensors were written")
            assert self._file is not None and self._tmp is not None
            os.fsync(self._file.fileno())
            self._file.close()
            self._file = None
            os.chmod(self._tmp, 0o644 & ~_umask())
            os.replace(self._tmp, self.path)
            self._tmp = None
        except BaseException:
            self._abort()
            raise


def _umask() -> int:
    m = os.umask(0)
    os.umask(m)
    return m
