"""Importance-matrix files (``qrt.imatrix_file``): llama.cpp's GGUF and legacy ``.dat`` formats, their round
trips, and hostile files (BAD_INPUTS 45-46: FormatError naming the entry, never a crash)."""

from __future__ import annotations

import pathlib
import struct

import numpy as np
import pytest

import qrt
from qrt import imatrix_file
from qrt.imatrix_file import Imatrix, ImatrixEntry


def sample(n_mat: int = 1) -> Imatrix:
    rng = np.random.default_rng(0)
    entries = {
        name: ImatrixEntry(
            (rng.standard_normal((n_mat, width)) ** 2 * 100).astype(np.float32),
            np.full(n_mat, 2048, np.int64),
        )
        for name, width in [
            ("blk.0.attn_q.weight", 64),
            ("blk.0.ffn_down.weight", 96),
            ("blk.1.attn_k.weight", 64),
        ]
    }
    return Imatrix(entries, ["calibration.txt"], 4, 512)


def write_legacy(path: pathlib.Path, m: Imatrix, *, trailer: bool = True) -> bytes:
    """The legacy .dat bytes llama-imatrix --output-format dat writes (values = Σx²/count·ncall)."""
    out = [struct.pack("<i", len(m.entries))]
    for name in sorted(m.entries):
        e = m.entries[name]
        ncall = int(e.counts.max()) // m.chunk_size
        vals = (e.sums / e.counts[:, None].astype(np.float32)) * np.float32(ncall)
        out += [struct.pack("<i", len(name)), name.encode(), struct.pack("<ii", ncall, vals.size)]
        out.append(vals.astype("<f4").tobytes())
    if trailer:
        ds = m.datasets[0].encode()
        out += [struct.pack("<ii", m.chunk_count, len(ds)), ds]
    data = b"".join(out)
    path.write_bytes(data)
    return data


def test_gguf_round_trip(tmp_path: pathlib.Path) -> None:
    m = sample()
    p = tmp_path / "m.imatrix.gguf"
    imatrix_file.write_gguf(p, m)
    r = imatrix_file.read(p)
    assert (r.datasets, r.chunk_count, r.chunk_size, r.legacy) == (m.datasets, 4, 512, False)
    assert list(r.entries) == sorted(m.entries)
    for name, e in m.entries.items():
        np.testing.assert_array_equal(r.entries[name].sums, e.sums)
        np.testing.assert_array_equal(r.entries[name].counts, e.counts)
        np.testing.assert_array_equal(r.weights(name), (e.sums / np.float32(2048)).reshape(-1))
    assert imatrix_file.encode_gguf(r) == p.read_bytes()
    with qrt.gguf.open(p) as f:
        assert f.metadata["general.type"] == "imatrix"
        assert f.tensors["blk.0.attn_q.weight.in_sum2"].shape == (64,)  # ggml_n_dims drops trailing 1s
        assert f.tensors["blk.0.attn_q.weight.counts"].shape == (1,)


def test_gguf_experts_and_unseen_matrix(tmp_path: pathlib.Path) -> None:
    m = sample(n_mat=3)
    m.entries["blk.0.attn_q.weight"].counts[1] = 0  # an expert no token was routed to: weight 1
    p = tmp_path / "moe.gguf"
    imatrix_file.write_gguf(p, m)
    w = imatrix_file.read(p).weights("blk.0.attn_q.weight").reshape(3, 64)
    np.testing.assert_array_equal(w[1], np.ones(64, np.float32))
    np.testing.assert_array_equal(w[0], m.entries["blk.0.attn_q.weight"].sums[0] / np.float32(2048))


@pytest.mark.parametrize("trailer", [True, False])
def test_legacy_read(tmp_path: pathlib.Path, trailer: bool) -> None:
    m = sample()
    p = tmp_path / "m.dat"
    write_legacy(p, m, trailer=trailer)
    r = imatrix_file.read(p)
    assert r.legacy and list(r.entries) == sorted(m.entries)
    assert (r.datasets, r.chunk_count) == ((["calibration.txt"], 4) if trailer else ([], 0))
    e = m.entries["blk.0.ffn_down.weight"]
    ncall = np.float32(4)
    expected = ((e.sums / np.float32(2048)) * ncall / ncall).reshape(-1)  # llama-quantize: values / ncall
    np.testing.assert_array_equal(r.weights("blk.0.ffn_down.weight"), expected)
    assert r.weights("nope") is None


def test_legacy_every_truncation_is_format_error(tmp_path: pathlib.Path) -> None:
    data = write_legacy(tmp_path / "full.dat", sample())
    p = tmp_path / "cut.dat"
    for n in range(0, len(data) - 1, 7):
        p.write_bytes(data[:n])
        if n == 0:
            with pytest.raises(qrt.FormatError, match="truncated"):
                imatrix_file.read(p)
            continue
        with pytest.raises(qrt.FormatError):
            imatrix_file.read(p)


@pytest.mark.parametrize(
    ("patch", "match"),
    [
        (lambda b: struct.pack("<i", 0) + b[4:], "0 entries"),
        (lambda b: struct.pack("<i", 1 << 30) + b[4:], "truncated"),  # entry count past the end
        (lambda b: b[:4] + struct.pack("<i", -5) + b[8:], "name length of -5"),
        (lambda b: b[:4] + struct.pack("<i", 1 << 30) + b[8:], "truncated"),  # name past the end
        (lambda b: b + b"xx", "stray bytes"),
    ],
)
def test_legacy_hostile(tmp_path: pathlib.Path, patch, match: str) -> None:
    p = tmp_path / "bad.dat"
    p.write_bytes(patch(write_legacy(tmp_path / "ok.dat", sample())))
    with pytest.raises(qrt.FormatError, match=match):
        imatrix_file.read(p)


def test_legacy_value_count_past_end(tmp_path: pathlib.Path) -> None:
    data = bytearray(write_legacy(tmp_path / "ok.dat", sample()))
    name_len = struct.unpack_from("<i", data, 4)[0]
    struct.pack_into("<i", data, 8 + name_len + 4, 1 << 28)  # nval of the first entry
    p = tmp_path / "bad.dat"
    p.write_bytes(bytes(data))
    with pytest.raises(qrt.FormatError, match=r"truncated.*values"):
        imatrix_file.read(p)


@pytest.mark.parametrize(
    ("value", "match"),
    [(np.nan, "NaN or Inf"), (np.inf, "NaN or Inf"), (-1.0, "negative")],
)
@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_bad_values_name_the_entry(tmp_path: pathlib.Path, value: float, match: str, fmt: str) -> None:
    m = sample()
    m.entries["blk.0.ffn_down.weight"].sums[0, 5] = value
    p = tmp_path / f"bad.{fmt}"
    if fmt == "gguf":
        imatrix_file.write_gguf(p, m)
    else:
        write_legacy(p, m)
    with pytest.raises(qrt.FormatError, match=rf"blk\.0\.ffn_down\.weight.*{match}|{match}.*ffn_down"):
        imatrix_file.read(p)


def _gguf_with(tmp_path: pathlib.Path, mutate) -> pathlib.Path:
    """A GGUF imatrix written by hand through encode_gguf after ``mutate(entries)``."""
    m = sample()
    mutate(m)
    p = tmp_path / "bad.gguf"
    p.write_bytes(imatrix_file.encode_gguf(m))
    return p


def test_gguf_wrong_shapes(tmp_path: pathlib.Path) -> None:
    def two_counts(m: Imatrix) -> None:  # counts for 2 matrices, sums for 1 x 64
        m.entries["blk.0.attn_q.weight"].counts = np.array([1, 2], np.int64)

    with pytest.raises(qrt.FormatError, match=r"blk\.0\.attn_q\.weight.*do not match counts"):
        imatrix_file.read(_gguf_with(tmp_path, two_counts))


def test_gguf_unpaired_and_wrong_type(tmp_path: pathlib.Path) -> None:
    good = tmp_path / "good.gguf"
    imatrix_file.write_gguf(good, sample())
    data = good.read_bytes()
    # rename one counts tensor: its in_sum2 loses its pair
    p = tmp_path / "unpaired.gguf"
    p.write_bytes(data.replace(b"blk.1.attn_k.weight.counts", b"blk.1.attn_k.weight.countz"))
    with pytest.raises(qrt.FormatError, match=r"blk\.1\.attn_k\.weight.*pair"):
        imatrix_file.read(p)
    # F32 -> F16 (type id 1) for the first tensor info: then its data size differs too; either way refused
    name = b"blk.0.attn_q.weight.counts"
    i = data.index(name) + len(name) + 4 + 8  # n_dims, ne[0]
    bad = bytearray(data)
    struct.pack_into("<i", bad, i, 1)
    p.write_bytes(bytes(bad))
    with pytest.raises(qrt.FormatError):
        imatrix_file.read(p)


def test_gguf_model_file_is_not_an_imatrix(smollm2_path: pathlib.Path) -> None:
    with pytest.raises(qrt.FormatError, match="not an imatrix file"):
        imatrix_file.read(smollm2_path)


def test_gguf_every_prefix_is_format_error(tmp_path: pathlib.Path) -> None:
    good = tmp_path / "good.gguf"
    imatrix_file.write_gguf(good, sample())
    data = good.read_bytes()
    p = tmp_path / "cut.gguf"
    for n in [*range(4, 600, 5), len(data) - 29]:  # the last: 1 byte short of the last tensor (4 + 28 pad)
        p.write_bytes(data[:n])
        with pytest.raises(qrt.FormatError):
            imatrix_file.read(p)


@pytest.mark.parametrize("fmt", ["gguf", "dat"])
def test_random_mutations_never_crash(tmp_path: pathlib.Path, fmt: str) -> None:
    """Single-byte mutations anywhere: the file reads, or FormatError; never another exception."""
    src = tmp_path / f"ok.{fmt}"
    if fmt == "gguf":
        imatrix_file.write_gguf(src, sample())
    else:
        write_legacy(src, sample())
    data = src.read_bytes()
    rng = np.random.default_rng(7)
    p = tmp_path / f"mut.{fmt}"
    limit = min(len(data), 1200)  # headers, names, counts and the first values
    for _ in range(400):
        b = bytearray(data)
        b[int(rng.integers(limit))] = int(rng.integers(256))
        p.write_bytes(bytes(b))
        try:
            m = imatrix_file.read(p)
        except qrt.FormatError:
            continue
        for name in m.entries:
            w = m.weights(name)
            assert w is not None and np.isfinite(w).all() and (w >= 0).all()
