"""Importance-matrix files as llama.cpp reads and writes them (``common/imatrix-loader.cpp``,
``tools/imatrix/imatrix.cpp``).

Two formats:

* GGUF (llama-imatrix's default): ``general.type = "imatrix"``, ``imatrix.datasets`` (string array),
  ``imatrix.chunk_count`` and ``imatrix.chunk_size`` (u32); per weight matrix two F32 tensors,
  ``<name>.in_sum2`` of ggml shape ``{ne0, n_mat}`` (Σx² of each input column over every token that entered
  the matrix) and ``<name>.counts`` of shape ``{1, n_mat}`` (how many tokens that was).
* legacy ``.dat``: ``int32 n_entries``, then per entry ``int32 len, name[len], int32 ncall, int32 nval,
  float values[nval]`` holding Σx²/count·ncall, then optionally ``int32 chunk_count, int32 len,
  dataset[len]``.

:func:`read` accepts both (it tries GGUF first, as llama.cpp does) and validates everything before use:
a malformed file raises :class:`qrt.FormatError`, never crashes. :meth:`Imatrix.weights` gives the
per-column importances llama-quantize passes to the weighted quantizers; :func:`write_gguf` writes the
GGUF format byte for byte as llama-imatrix does.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass, field

import numpy as np

from ._C import FormatError, UnsupportedError

GGUF_MAGIC = b"GGUF"
_ALIGNMENT = 32
_IN_SUM2, _COUNTS = ".in_sum2", ".counts"


@dataclass
class ImatrixEntry:
    """The statistics of one weight matrix (``n_mat`` is 1 for a dense matrix, the expert count for MoE)."""

    sums: np.ndarray  #: float32 ``(n_mat, ne0)``: Σx² per input column (legacy: Σx²/count·ncall)
    counts: np.ndarray  #: int64 ``(n_mat,)``: tokens seen (legacy: one value, ``ncall``)


@dataclass
class Imatrix:
    """An importance matrix: per weight-matrix name (GGUF tensor names), its activation statistics."""

    entries: dict[str, ImatrixEntry]
    datasets: list[str] = field(default_factory=list)  #: calibration file(s) it was computed on
    chunk_count: int = 0  #: chunks of ``chunk_size`` tokens processed
    chunk_size: int = 0
    legacy: bool = False  #: read from the legacy ``.dat`` format

    def weights(self, name: str) -> np.ndarray | None:
        """The importance of each input column of ``name`` as llama-quantize derives it (float32, ne0·n_mat
        values), or None when the matrix has no entry.

        GGUF: Σx²/count per matrix (1 where a matrix saw no token); legacy: values/ncall."""
        e = self.entries.get(name)
        if e is None:
            return None
        if self.legacy:
            ncall = int(e.counts[0]) if e.counts.size else 0
            w = e.sums.reshape(-1)
            return (w / np.float32(ncall)).astype(np.float32) if ncall > 0 else w.astype(np.float32)
        out = np.ones_like(e.sums, dtype=np.float32)
        for j, c in enumerate(e.counts):
            if c > 0:
                out[j] = e.sums[j] / np.float32(c)
        return out.reshape(-1)


def read(path: str | os.PathLike[str]) -> Imatrix:
    """Read an importance-matrix file in llama.cpp's GGUF or legacy ``.dat`` format.

    Raises :class:`qrt.FormatError` (naming the file and the entry) for truncated or malformed files,
    tensors of the wrong type or shape, unpaired sums and counts, and non-finite or negative values;
    ``OSError`` when the file cannot be read."""
    path = os.fspath(path)
    with open(path, "rb") as f:
        magic = f.read(4)
    m = _read_gguf(path) if magic == GGUF_MAGIC else _read_legacy(path)
    for name, e in m.entries.items():
        if not np.isfinite(e.sums).all():
            raise FormatError(f"{path}: imatrix entry {name!r} holds NaN or Inf")
        if (e.sums < 0).any() or (e.counts < 0).any():
            raise FormatError(f"{path}: imatrix entry {name!r} holds negative sums or counts")
    return m


def _read_gguf(path: str) -> Imatrix:
    from . import gguf

    try:
        f = gguf.open(path)
    except UnsupportedError as e:  # a tensor type qrt does not know: imatrix tensors are F32
        raise FormatError(f"{e} (imatrix tensors must be F32)") from None
    with f:
        meta = f.metadata
        missing = [
            k for k in ("imatrix.datasets", "imatrix.chunk_count", "imatrix.chunk_size") if k not in meta
        ]
        if missing:  # llama-quantize: "missing imatrix metadata"
            raise FormatError(f"{path}: not an imatrix file: missing metadata {', '.join(missing)}")
        datasets = meta["imatrix.datasets"]
        if not isinstance(datasets, list) or not all(isinstance(s, str) for s in datasets):
            raise FormatError(f"{path}: imatrix.datasets must be an array of strings")
        counts_of: dict[str, int] = {}
        for key in ("imatrix.chunk_count", "imatrix.chunk_size"):
            if f.fields[key].type != "UINT32":
                raise FormatError(f"{path}: {key} must be UINT32, not {f.fields[key].type}")
            counts_of[key] = int(meta[key])
        pairs: dict[str, dict[str, gguf.TensorInfo]] = {}
        for t in f.tensors.values():
            for suffix in (_IN_SUM2, _COUNTS):
                if t.name.endswith(suffix) and len(t.name) > len(suffix):
                    pairs.setdefault(t.name[: -len(suffix)], {})[suffix] = t
        if not pairs:
            raise FormatError(f"{path}: imatrix file holds no entries")
        entries = {}
        for name in sorted(pairs):
            p = pairs[name]
            if len(p) != 2:
                raise FormatError(f"{path}: imatrix entry {name!r} has {next(iter(p))} but not its pair")
            s, c = p[_IN_SUM2], p[_COUNTS]
            for t in (s, c):
                if t.type != "F32":
                    raise FormatError(f"{path}: tensor {t.name!r} is {t.type}; imatrix tensors must be F32")
            n_mat = int(np.prod(c.shape))
            if c.shape[-1] != 1 or int(np.prod(s.shape[:-1])) != n_mat:
                raise FormatError(
                    f"{path}: imatrix entry {name!r}: sums of shape {s.shape} do not match counts of shape "
                    f"{c.shape} (expected sums (n_mat, ne0) and counts (n_mat, 1))"
                )
            sums = np.frombuffer(f.raw(s.name), np.float32).reshape(n_mat, -1).copy()
            cnt = np.frombuffer(f.raw(c.name), np.float32)
            if not np.isfinite(cnt).all():
                raise FormatError(f"{path}: imatrix entry {name!r} has non-finite counts")
            if (cnt < 0).any():
                raise FormatError(f"{path}: imatrix entry {name!r} holds negative sums or counts")
            if (cnt > 2.0**53).any():
                raise FormatError(
                    f"{path}: imatrix entry {name!r} has an implausible token count {cnt.max()}"
                )
            entries[name] = ImatrixEntry(sums, np.floor(cnt.astype(np.float64) + 0.5).astype(np.int64))
    return Imatrix(entries, list(datasets), counts_of["imatrix.chunk_count"], counts_of["imatrix.chunk_size"])


class _Reader:
    def __init__(self, path: str, data: bytes) -> None:
        self.path, self.data, self.pos = path, data, 0

    def take(self, n: int, what: str) -> bytes:
        if n < 0 or self.pos + n > len(self.data):
            raise FormatError(
                f"{self.path}: legacy imatrix truncated at offset {self.pos}: {what} needs {n} bytes, "
                f"{len(self.data) - self.pos} left"
            )
        b = self.data[self.pos : self.pos + n]
        self.pos += n
        return b

    def i32(self, what: str) -> int:
        return struct.unpack("<i", self.take(4, what))[0]


def _read_legacy(path: str) -> Imatrix:
    with open(path, "rb") as f:
        r = _Reader(path, f.read())
    n_entries = r.i32("the entry count")
    if n_entries < 1:
        raise FormatError(f"{path}: legacy imatrix has {n_entries} entries (not an imatrix file?)")
    entries: dict[str, ImatrixEntry] = {}
    for i in range(n_entries):
        at = r.pos
        n = r.i32(f"entry {i}'s name length")
        if n < 0:
            raise FormatError(f"{path}: entry {i} at offset {at} has a name length of {n}")
        raw_name = r.take(n, f"entry {i}'s name")
        try:
            name = raw_name.split(b"\0", 1)[0].decode("utf-8")
        except UnicodeDecodeError:
            raise FormatError(f"{path}: entry {i} at offset {at}: name is not UTF-8") from None
        ncall = r.i32(f"entry {name!r}'s call count")
        nval = r.i32(f"entry {name!r}'s value count")
        if nval < 1:
            raise FormatError(f"{path}: entry {name!r} has {nval} values")
        values = np.frombuffer(r.take(4 * nval, f"entry {name!r}'s {nval} values"), "<f4").astype(np.float32)
        entries[name] = ImatrixEntry(values.reshape(1, -1), np.array([ncall], np.int64))
    chunk_count, datasets = 0, []
    if r.pos < len(r.data):  # the trailer (chunk count, dataset name) is optional but then complete
        chunk_count = r.i32("the chunk count")
        n = r.i32("the dataset name length")
        if n > 0:
            datasets.append(r.take(n, "the dataset name").split(b"\0", 1)[0].decode("utf-8", "replace"))
        if r.pos != len(r.data):
            raise FormatError(f"{path}: {len(r.data) - r.pos} stray bytes after the legacy imatrix trailer")
    return Imatrix(entries, datasets, chunk_count, 0, legacy=True)


# ------------------------------------------------------------------------------------------- writing


def _gguf_string(s: str) -> bytes:
    b = s.encode("utf-8")
    return struct.pack("<Q", len(b)) + b


def encode_gguf(m: Imatrix) -> bytes:
    """The GGUF bytes llama-imatrix writes for ``m`` (its key order, tensors sorted by name, 32-byte
    alignment)."""
    kv = [
        _gguf_string("general.type") + struct.pack("<i", 8) + _gguf_string("imatrix"),
        _gguf_string("imatrix.datasets")
        + struct.pack("<iiQ", 9, 8, len(m.datasets))
        + b"".join(_gguf_string(s) for s in m.datasets),
        _gguf_string("imatrix.chunk_count") + struct.pack("<iI", 4, m.chunk_count),
        _gguf_string("imatrix.chunk_size") + struct.pack("<iI", 4, m.chunk_size),
    ]
    tensors: list[tuple[str, np.ndarray]] = []
    for name in sorted(m.entries):
        e = m.entries[name]
        tensors.append(
            (name + _IN_SUM2, np.ascontiguousarray(e.sums, np.float32).reshape(-1, e.sums.shape[-1]))
        )
        tensors.append((name + _COUNTS, e.counts.astype(np.float32).reshape(-1, 1)))
    infos, data, offset = [], [], 0
    for name, a in tensors:
        ne = tuple(reversed(a.shape))
        while len(ne) > 1 and ne[-1] == 1:  # ggml_n_dims: trailing dimensions of 1 are not written
            ne = ne[:-1]
        infos.append(
            _gguf_string(name)
            + struct.pack("<I", len(ne))
            + struct.pack(f"<{len(ne)}q", *ne)
            + struct.pack("<iQ", 0, offset)
        )
        b = a.astype("<f4").tobytes()
        pad = -len(b) % _ALIGNMENT
        data.append(b + bytes(pad))
        offset += len(b) + pad
    head = GGUF_MAGIC + struct.pack("<IQQ", 3, len(tensors), len(kv)) + b"".join(kv) + b"".join(infos)
    return head + bytes(-len(head) % _ALIGNMENT) + b"".join(data)


def write_gguf(path: str | os.PathLike[str], m: Imatrix) -> None:
    """Write ``m`` in llama.cpp's GGUF imatrix format, atomically: a temporary file in the same folder
    renamed over ``path`` once complete, so an interruption leaves no partial file."""
    path = os.fspath(path)
    data = encode_gguf(m)
    tmp = f"{path}.{os.getpid()}.tmp"
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
