"""Read GGUF v3 files: metadata, tensor infos and zero-copy tensor bytes.

    import qrt.gguf
    with qrt.gguf.open("model.gguf") as f:
        print(f.metadata["general.architecture"])
        t = f.tensors["token_embd.weight"]      # TensorInfo(name, shape, type, offset, nbytes)
        w = f.dequantize("token_embd.weight")   # float32, shape t.shape

The file is memory-mapped and validated byte by byte before anything is trusted (the rules are written
down in ``csrc/gguf/gguf.h``). Corrupt files raise :class:`qrt.FormatError`, tensor types qrt cannot
handle raise :class:`qrt.UnsupportedError` (both ``ValueError``); a file that cannot be opened raises the
matching ``OSError``. Messages name the file, the section (header, metadata, tensor info, data), the byte
offset and the key or tensor.

Run ``python -m qrt.gguf FILE`` for a summary of a file.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from . import _C
from ._C import FormatError, UnsupportedError  # re-exported: what open() raises

if TYPE_CHECKING:  # numpy costs more to import than reading a file's metadata takes
    import numpy as np

__all__ = ["Field", "FormatError", "GGUFFile", "TensorInfo", "UnsupportedError", "open"]

#: GGUF metadata value types, by their gguf-py (``GGUFValueType``) names.
VALUE_TYPES = tuple(
    "UINT8 INT8 UINT16 INT16 UINT32 INT32 FLOAT32 BOOL STRING ARRAY UINT64 INT64 FLOAT64".split()
)


@dataclass(frozen=True)
class TensorInfo:
    """Where a tensor lives in the file and what it holds."""

    name: str
    shape: tuple[int, ...]  #: numpy order (GGUF's ``ne`` reversed): rows last-but-one, row elements last
    type: str  #: registry name, e.g. ``"Q4_K"``
    offset: int  #: absolute file offset of the first data byte
    nbytes: int  #: bytes of data (padding excluded)


@dataclass(frozen=True)
class Field:
    """A metadata entry with its GGUF value type, enough for a writer to reproduce it exactly."""

    key: str
    type: str  #: one of :data:`VALUE_TYPES`, e.g. ``"UINT32"`` or ``"ARRAY"``
    element_type: str | None  #: arrays only: the element type, e.g. ``"STRING"``
    value: Any  #: int, float, bool or str; a list for arrays


class GGUFFile:
    """An open GGUF file. Create it with :func:`open`; use it as a context manager or call :meth:`close`.

    ``metadata``, ``fields`` and ``tensors`` are plain Python data and stay usable after :meth:`close`.
    :meth:`raw` views point into the file's mapping; each view keeps the mapping alive, so closing the
    file never invalidates a view handed out earlier: the file is unmapped when this object is closed
    *and* the last view is gone. After :meth:`close`, :meth:`raw` and :meth:`dequantize` raise
    ``ValueError``.
    """

    def __init__(self, native: _C.GGUFFile, path: str) -> None:
        self._native: _C.GGUFFile | None = native
        self.path: str = path  #: the path as given to :func:`open`
        self.version: int = native.version  #: GGUF version (3, or 2 which has the same layout)
        self.alignment: int = native.alignment  #: data alignment in bytes (``general.alignment`` or 32)
        self.data_offset: int = native.data_offset  #: absolute offset of the data section
        self.file_size: int = native.file_size
        self.fields: dict[str, Field] = {
            key: Field(key, vtype, etype, value) for key, vtype, etype, value in native.metadata()
        }  #: every metadata entry with its type, in file order
        self.metadata: dict[str, Any] = {
            k: f.value for k, f in self.fields.items()
        }  #: key -> value, file order
        self.tensors: dict[str, TensorInfo] = {
            name: TensorInfo(name, tuple(reversed(ne)), type_, offset, nbytes)
            for name, ne, type_, offset, nbytes in native.tensors()
        }  #: name -> TensorInfo, in file order

    def field(self, key: str) -> Field:
        """The metadata entry ``key`` with its GGUF type; ``KeyError`` when absent."""
        return self.fields[key]

    @property
    def closed(self) -> bool:
        return self._native is None

    def _open_native(self) -> _C.GGUFFile:
        if self._native is None:
            raise ValueError(f"{self.path}: GGUF file is closed")
        return self._native

    def _info(self, name: str) -> TensorInfo:
        try:
            return self.tensors[name]
        except KeyError:
            raise KeyError(f"no tensor named {name!r} in {self.path}") from None

    def raw(self, name: str) -> np.ndarray:
        """The bytes of tensor ``name``: a read-only 1-D uint8 numpy view onto the mapping (no copy)."""
        self._info(name)
        return self._open_native().raw(name)

    def dequantize(self, name: str, *, n_threads: int = 0) -> np.ndarray:
        """Tensor ``name`` decoded to a new float32 array of shape ``tensors[name].shape``."""
        from .formats import dequantize

        info = self._info(name)
        return dequantize(self.raw(name), info.type, info.shape, n_threads=n_threads)

    def close(self) -> None:
        """Drop this object's hold on the file (idempotent). Views from :meth:`raw` remain valid."""
        self._native = None

    def __enter__(self) -> GGUFFile:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed " if self.closed else ""
        arch = self.metadata.get("general.architecture")
        arch_s = f" arch={arch!r}" if isinstance(arch, str) else ""
        return (
            f"<{state}GGUFFile {self.path!r} v{self.version}{arch_s} {len(self.metadata)} keys "
            f"{len(self.tensors)} tensors>"
        )


def open(path: str | os.PathLike[str]) -> GGUFFile:
    """Map and validate the GGUF file at ``path``.

    Raises :class:`qrt.FormatError` for corrupt bytes, :class:`qrt.UnsupportedError` for tensor types qrt
    does not handle and ``OSError`` when the file cannot be opened. The GIL is released while parsing.
    """
    fspath = os.fspath(path)  # TypeError for anything that is not a path
    encoded = os.fsencode(fspath)
    if b"\0" in encoded:  # the C library would silently open the path cut at the NUL
        raise ValueError("embedded null byte in path")
    return GGUFFile(_C.gguf_open(encoded), os.fsdecode(fspath))


# ---- python -m qrt.gguf FILE ----
