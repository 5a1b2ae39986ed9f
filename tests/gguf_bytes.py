"""Build GGUF byte strings by hand, including ones no writer would produce (for hostile-file tests).

    b = GGUFBytes()
    b.kv("general.architecture", STRING, "llama")
    b.tensor("w", ne=[32, 2], type_id=F32_ID, data=bytes(256))
    blob = b.build()                    # a valid file
    blob = b.build(n_kv=2**63 - 1)      # the same with a forged header field

Every piece can be overridden with raw bytes (``kv_raw``, ``tensor_raw``) so a test can corrupt exactly
one field. ``offsets()`` reports where each section starts, for mutation tests.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass, field
from typing import Any

UINT8, INT8, UINT16, INT16, UINT32, INT32, FLOAT32, BOOL, STRING, ARRAY, UINT64, INT64, FLOAT64 = range(13)

_FMT = {
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

F32_ID, F16_ID, Q4_0_ID, Q4_1_ID, Q8_0_ID = 0, 1, 2, 3, 8


def u32(x: int) -> bytes:
    return struct.pack("<I", x)


def i32(x: int) -> bytes:
    return struct.pack("<i", x)


def u64(x: int) -> bytes:
    return struct.pack("<Q", x)


def i64(x: int) -> bytes:
    return struct.pack("<q", x)


def string(s: str | bytes) -> bytes:
    b = s.encode() if isinstance(s, str) else s
    return u64(len(b)) + b


def scalar(vtype: int, value: Any) -> bytes:
    """The binary form of one element (no type tag)."""
    if vtype == STRING:
        return string(value)
    return struct.pack(_FMT[vtype], value)


def value(vtype: int, v: Any, element_type: int | None = None) -> bytes:
    """Type tag + value; for ARRAY, ``element_type`` and a list ``v``."""
    if vtype == ARRAY:
        assert element_type is not None
        return i32(ARRAY) + i32(element_type) + u64(len(v)) + b"".join(scalar(element_type, x) for x in v)
    return i32(vtype) + scalar(vtype, v)


def pad(n: int, alignment: int) -> int:
    return (n + alignment - 1) // alignment * alignment


@dataclass
class GGUFBytes:
    version: int = 3
    alignment: int = 32  # used for layout; add a general.alignment kv yourself to change what readers use
    kvs: list[bytes] = field(default_factory=list)
    infos: list[bytes] = field(default_factory=list)
    datas: list[bytes] = field(default_factory=list)

    def kv(self, key: str | bytes, vtype: int, v: Any, element_type: int | None = None) -> GGUFBytes:
        return self.kv_raw(string(key) + value(vtype, v, element_type))

    def kv_raw(self, record: bytes) -> GGUFBytes:
        self.kvs.append(record)
        return self

    def tensor(
        self,
        name: str | bytes,
        ne: list[int],
        type_id: int,
        data: bytes,
        offset: int | None = None,
        n_dims: int | None = None,
    ) -> GGUFBytes:
        """Add a tensor info and its data; ``offset`` defaults to the correct running padded offset."""
        if offset is None:
            offset = sum(pad(len(d), self.alignment) for d in self.datas)
        n = len(ne) if n_dims is None else n_dims
        info = string(name) + u32(n) + b"".join(i64(x) for x in ne) + i32(type_id) + u64(offset)
        return self.tensor_raw(info, data)

    def tensor_raw(self, info: bytes, data: bytes = b"") -> GGUFBytes:
        self.infos.append(info)
        self.datas.append(data)
        return self

    def header(
        self,
        n_tensors: int | None = None,
        n_kv: int | None = None,
        magic: bytes = b"GGUF",
        version: int | None = None,
    ) -> bytes:
        nt = len(self.infos) if n_tensors is None else n_tensors
        nk = len(self.kvs) if n_kv is None else n_kv
        return magic + u32(self.version if version is None else version) + i64(nt) + i64(nk)

    def build(self, **header: Any) -> bytes:
        out = bytearray(self.header(**header))
        for r in self.kvs:
            out += r
        for r in self.infos:
            out += r
        if self.infos:
            out += bytes(pad(len(out), self.alignment) - len(out))
        for d in self.datas:
            out += d
            out += bytes(pad(len(d), self.alignment) - len(d))
        return bytes(out)

    def offsets(self) -> dict[str, int]:
        """Start of each section in ``build()``'s output: kv, tensor_info, data, end."""
        kv = 24
        ti = kv + sum(map(len, self.kvs))
        data = ti + sum(map(len, self.infos))
        if self.infos:
            data = pad(data, self.alignment)
        return {"kv": kv, "tensor_info": ti, "data": data, "end": len(self.build())}
