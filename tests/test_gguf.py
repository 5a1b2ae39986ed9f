"""qrt.gguf: good files round-trip against gguf-py; every GGUF item of BAD_INPUTS.md (1-15) is a clean
FormatError/UnsupportedError whose message names the file, the section, the offset and the culprit."""

from __future__ import annotations

import gc
import os
import pathlib
import struct
import subprocess
import sys

import gguf
import numpy as np
import pytest

import qrt
import qrt.gguf
from qrt.cli import gguf_info
from tests.gguf_bytes import (
    ARRAY,
    BOOL,
    F16_ID,
    F32_ID,
    FLOAT32,
    FLOAT64,
    INT8,
    INT16,
    INT32,
    INT64,
    Q8_0_ID,
    STRING,
    UINT8,
    UINT16,
    UINT32,
    UINT64,
    GGUFBytes,
    i32,
    i64,
    string,
    u32,
    u64,
)
from tests.support import llamacpp as _llamacpp

VOCAB_DIR = _llamacpp.vocab_dir()


# ---------------------------------------------------------------- helpers


def small_file() -> GGUFBytes:
    """A valid file with one key of every scalar type, a few arrays and three tensors; the last tensor's
    data is a multiple of the alignment, so every strict prefix of the file is truncated."""
    b = GGUFBytes()
    b.kv("general.architecture", STRING, "llama")
    for i, vt in enumerate([UINT8, INT8, UINT16, INT16, UINT32, INT32, UINT64, INT64]):
        b.kv(f"t.int{i}", vt, 7 - 2 * (vt in (INT8, INT16, INT32, INT64)) * 5)
    b.kv("t.f32", FLOAT32, 0.5).kv("t.f64", FLOAT64, -2.25).kv("t.bool", BOOL, True)
    b.kv("t.strs", ARRAY, ["a", "", "é"], STRING).kv("t.i16s", ARRAY, [1, -2], INT16)
    b.kv("t.empty", ARRAY, [], UINT32)
    b.tensor("w32", [8, 2], F32_ID, np.arange(16, dtype=np.float32).tobytes())
    b.tensor("q8", [32], Q8_0_ID, bytes(range(34)))
    b.tensor("h16", [16], F16_ID, np.ones(16, np.float16).tobytes())
    return b


def write(tmp_path: pathlib.Path, blob: bytes, name: str = "x.gguf") -> pathlib.Path:
    p = tmp_path / name
    p.write_bytes(blob)
    return p


def reject(tmp_path: pathlib.Path, blob: bytes, exc: type[Exception], *fragments: str) -> str:
    """Open `blob`; assert it raises exactly `exc` with every fragment (and the file name) in its message."""
    p = write(tmp_path, blob)
    with pytest.raises(exc) as info:
        qrt.gguf.open(p)
    assert type(info.value) is exc
    msg = str(info.value)
    assert str(p) in msg, msg
    assert " at byte " in msg, msg
    assert "\n" not in msg, msg  # one line, even when the culprit bytes hold a newline
    for frag in fragments:
        assert frag in msg, f"{frag!r} not in {msg!r}"
    return msg


def one_tensor(
    ne: list[int],
    type_id: int = F32_ID,
    data: bytes = b"",
    n_dims: int | None = None,
    offset: int | None = None,
    name: str = "t",
) -> bytes:
    b = GGUFBytes()
    b.tensor(name, ne, type_id, data, offset=offset, n_dims=n_dims)
    return b.build()


# ---------------------------------------------------------------- good files


def test_small_file_parses(tmp_path: pathlib.Path) -> None:
    b = small_file()
    with qrt.gguf.open(write(tmp_path, b.build())) as f:
        assert f.version == 3 and f.alignment == 32
        assert f.data_offset == b.offsets()["data"]
        assert f.metadata["t.strs"] == ["a", "", "é"]
        assert f.metadata["t.bool"] is True
        assert f.metadata["t.int1"] == -3 and f.metadata["t.int0"] == 7
        assert f.field("t.empty") == qrt.gguf.Field("t.empty", "ARRAY", "UINT32", [])
        assert f.tensors["w32"].shape == (2, 8)
        assert f.tensors["q8"].offset == f.data_offset + 64
        np.testing.assert_array_equal(f.dequantize("w32"), np.arange(16, dtype=np.float32).reshape(2, 8))
        assert "3 tensors" in repr(f)


@pytest.fixture(scope="module")
def gguf_py_file(tmp_path_factory: pytest.TempPathFactory) -> tuple[pathlib.Path, dict, dict]:
    """A file written by gguf-py with metadata of every value type and tensors of several types."""
    path = tmp_path_factory.mktemp("gguf") / "written.gguf"
    V = gguf.GGUFValueType
    meta = {
        "k.u8": (255, V.UINT8),
        "k.i8": (-128, V.INT8),
        "k.u16": (65535, V.UINT16),
        "k.i16": (-32768, V.INT16),
        "k.u32": (2**32 - 1, V.UINT32),
        "k.i32": (-(2**31), V.INT32),
        "k.f32": (1.5, V.FLOAT32),
        "k.bool": (False, V.BOOL),
        "k.str": ("héllo wörld ☃", V.STRING),
        "k.u64": (2**64 - 1, V.UINT64),
        "k.i64": (-(2**63), V.INT64),
        "k.f64": (3.141592653589793, V.FLOAT64),
    }
    arrays = {
        "a.u8": ([0, 1, 255], V.UINT8),
        "a.i16": ([-1, 2], V.INT16),
        "a.f32": ([0.25, -1.0], V.FLOAT32),
        "a.bool": ([True, False, True], V.BOOL),
        "a.str": (["x", "yz", "<0x0A>"], V.STRING),
        "a.i64": ([-(2**40), 5], V.INT64),
        "a.f64": ([1e300, -0.0], V.FLOAT64),
        "a.u32": ([7], V.UINT32),
    }
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 64)).astype(np.float32)
    Q = gguf.GGMLQuantizationType
    tensors = {"f32": (x, Q.F32), "f16": (x.astype(np.float16), Q.F16)}
    for q in (Q.Q8_0, Q.Q4_0, Q.Q4_1, Q.Q5_0, Q.Q5_1, Q.BF16):
        tensors[q.name.lower()] = (gguf.quants.quantize(x, q), q)
    tensors["vec"] = (x[0, :7].copy(), Q.F32)  # odd size: padding follows
    w = gguf.GGUFWriter(path, "llama")
    for k, (v, t) in meta.items():
        w.add_key_value(k, v, t)
    for k, (v, t) in arrays.items():
        w.add_key_value(k, v, V.ARRAY, sub_type=t)
    for name, (data, q) in tensors.items():
        w.add_tensor(name, data, raw_dtype=q if q not in (Q.F32, Q.F16) else None)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return path, {**meta, **arrays}, tensors


def test_gguf_py_round_trip(gguf_py_file: tuple[pathlib.Path, dict, dict]) -> None:
    path, meta, tensors = gguf_py_file
    with qrt.gguf.open(path) as f:
        for key, (value, vtype) in meta.items():
            fld = f.field(key)
            if isinstance(value, list):
                assert (fld.type, fld.element_type) == ("ARRAY", vtype.name), key
                assert fld.value == value, key  # the test values are exact in float32
            else:
                assert (fld.type, fld.element_type) == (vtype.name, None), key
                assert fld.value == value, key
        assert f.metadata["general.architecture"] == "llama"
        for name, (data, q) in tensors.items():
            t = f.tensors[name]
            assert t.type == q.name
            assert t.offset % f.alignment == 0
            raw = f.raw(name)
            assert raw.tobytes() == np.ascontiguousarray(data).tobytes(), name
            assert not raw.flags.writeable
            want = gguf.quants.dequantize(np.asarray(data), q).reshape(t.shape)
            np.testing.assert_array_equal(f.dequantize(name), want.astype(np.float32))


def test_matches_gguf_reader(gguf_py_file: tuple[pathlib.Path, dict, dict]) -> None:
    assert_same_as_gguf_py(gguf_py_file[0])


def test_rewrite_is_byte_identical(
    gguf_py_file: tuple[pathlib.Path, dict, dict], tmp_path: pathlib.Path
) -> None:
    """fields + raw carry everything a writer needs: rewriting with gguf-py reproduces the file exactly."""
    src = gguf_py_file[0]
    out = tmp_path / "rewritten.gguf"
    with qrt.gguf.open(src) as f:
        w = gguf.GGUFWriter(out, f.metadata["general.architecture"])
        for fld in f.fields.values():
            if fld.key != "general.architecture":
                sub = gguf.GGUFValueType[fld.element_type] if fld.element_type else None
                w.add_key_value(fld.key, fld.value, gguf.GGUFValueType[fld.type], sub_type=sub)
        for t in f.tensors.values():
            q = gguf.GGMLQuantizationType[t.type]
            block, size = gguf.GGML_QUANT_SIZES[q]
            byte_shape = (*t.shape[:-1], t.shape[-1] // block * size)  # gguf-py takes raw bytes in this shape
            w.add_tensor(t.name, f.raw(t.name).reshape(byte_shape), raw_dtype=q)
        w.write_header_to_file()
        w.write_kv_data_to_file()
        w.write_tensors_to_file()
        w.close()
    assert out.read_bytes() == src.read_bytes()


def assert_same_as_gguf_py(path: pathlib.Path) -> None:
    r = gguf.GGUFReader(path)
    with qrt.gguf.open(path) as f:
        want = {k: fl for k, fl in r.fields.items() if not k.startswith("GGUF.")}
        assert list(f.fields) == list(want)
        for key, fl in want.items():
            ours = f.field(key)
            assert ours.type == fl.types[0].name, key
            assert ours.element_type == (
                fl.types[-1].name if fl.types[0] == gguf.GGUFValueType.ARRAY else None
            )
            assert ours.value == fl.contents(), key
        assert [t.name for t in r.tensors] == list(f.tensors)
        for rt in r.tensors:
            t = f.tensors[rt.name]
            assert t.type == rt.tensor_type.name
            assert t.shape == tuple(int(n) for n in reversed(rt.shape))
            assert t.offset == rt.data_offset
            assert t.nbytes == rt.n_bytes
        if r.tensors:
            assert f.data_offset == r.data_offset
            assert f.alignment == r.alignment


def test_smollm2_matches_gguf_reader(smollm2_path: pathlib.Path) -> None:
    assert_same_as_gguf_py(smollm2_path)
    with qrt.gguf.open(smollm2_path) as f:
        assert len(f.tensors) == 272
        assert {t.type for t in f.tensors.values()} == {"F32", "Q4_1", "Q8_0"}
        emb = f.raw("token_embd.weight")
        r = gguf.GGUFReader(smollm2_path)
        want = next(t for t in r.tensors if t.name == "token_embd.weight")
        assert emb.tobytes() == want.data.tobytes()


# Real files from several writers, SPM and BPE, small and large vocabularies (the sdist has about 20; reading
# every one against gguf-py costs minutes and covers nothing more).
VOCAB_FILES = ("gpt-2", "llama-bpe", "llama-spm", "qwen2", "phi-3", "bert-bge")


@pytest.mark.parametrize("name", VOCAB_FILES)
def test_vocab_files_match_gguf_reader(name: str) -> None:
    assert_same_as_gguf_py(VOCAB_DIR / f"ggml-vocab-{name}.gguf")


def test_vocab_files_found() -> None:
    assert len(list(VOCAB_DIR.glob("*.gguf"))) >= 4


def test_views_outlive_close(tmp_path: pathlib.Path) -> None:
    f = qrt.gguf.open(write(tmp_path, small_file().build()))
    view = f.raw("w32")
    f.close()
    f.close()  # idempotent
    assert f.closed and "closed" in repr(f)
    del f
    gc.collect()
    np.testing.assert_array_equal(view.view(np.float32), np.arange(16, dtype=np.float32))
    with pytest.raises(ValueError, match="read-only"):
        view[0] = 1


def test_closed_file_refuses_reads(tmp_path: pathlib.Path) -> None:
    with qrt.gguf.open(write(tmp_path, small_file().build())) as f:
        pass
    assert f.tensors["w32"].nbytes == 64 and f.metadata["t.f32"] == 0.5  # plain data stays
    with pytest.raises(ValueError, match="closed"):
        f.raw("w32")
    with pytest.raises(ValueError, match="closed"):
        f.dequantize("w32")


def _rss_bytes() -> int:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


@pytest.mark.skipif(not os.path.exists("/proc/self/statm"), reason="needs /proc")
def test_open_close_loop_keeps_rss_flat(tmp_path: pathlib.Path) -> None:
    good = write(tmp_path, small_file().build(), "good.gguf")
    bad = write(tmp_path, small_file().build(n_tensors=2**40), "bad.gguf")

    def cycle(n: int) -> None:
        for _ in range(n):
            with qrt.gguf.open(good) as f:
                f.raw("w32")
            with pytest.raises(qrt.FormatError):
                qrt.gguf.open(bad)

    cycle(200)  # warm up allocator pools
    gc.collect()
    before = _rss_bytes()
    cycle(1000)
    gc.collect()
    assert _rss_bytes() - before < 2 << 20


def test_unknown_tensor_name(tmp_path: pathlib.Path) -> None:
    with qrt.gguf.open(write(tmp_path, small_file().build())) as f, pytest.raises(KeyError, match="nope"):
        f.raw("nope")


def test_os_errors(tmp_path: pathlib.Path) -> None:
    with pytest.raises(FileNotFoundError):
        qrt.gguf.open(tmp_path / "missing.gguf")
    with pytest.raises(IsADirectoryError):
        qrt.gguf.open(tmp_path)
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)
    with pytest.raises(OSError, match="not a regular file"):  # must not block waiting for a writer
        qrt.gguf.open(fifo)
    with pytest.raises(TypeError):
        qrt.gguf.open(3.5)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="null byte"):
        qrt.gguf.open(str(tmp_path / "x.gguf") + "\0.txt")


def test_cli_summary(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gguf_info.main([str(write(tmp_path, small_file().build()))]) == 0
    out = capsys.readouterr().out
    assert "GGUF v3" in out and "general.architecture STRING = 'llama'" in out
    assert "q8" in out and "Q8_0" in out and "(2, 8)" in out


def test_cli_bad_file(tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert gguf_info.main([str(write(tmp_path, b"GGUF\x01\x00\x00\x00"))]) == 1
    err = capsys.readouterr().err
    assert err.startswith("qrt-gguf: error: ") and "truncated header" in err and err.count("\n") == 1
    assert gguf_info.main([str(tmp_path / "missing.gguf")]) == 1
    assert capsys.readouterr().err.startswith("qrt-gguf: error: ")


def test_cli_default_is_demo_model(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    demo = pytest.importorskip("qrt.demo")
    monkeypatch.setattr(demo, "demo_model_path", lambda: write(tmp_path, small_file().build(), "demo.gguf"))
    assert gguf_info.main([]) == 0
    assert "demo.gguf" in capsys.readouterr().out


def test_cli_module_entry(tmp_path: pathlib.Path) -> None:
    p = write(tmp_path, small_file().build())
    run = subprocess.run(
        [sys.executable, "-m", "qrt.cli.gguf_info", str(p)], capture_output=True, text=True, check=False
    )
    assert run.returncode == 0 and "tensors (3" in run.stdout, run.stderr
    run = subprocess.run(
        [sys.executable, "-m", "qrt.cli.gguf_info", str(tmp_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 1 and run.stderr.startswith("qrt-gguf: error: ")


# ---------------------------------------------------------------- BAD_INPUTS 1: short files


@pytest.mark.parametrize(
    "blob", [b"", b"G", b"GGUF", b"GGUF\x03\x00\x00\x00", bytes(GGUFBytes().build()[:23])]
)
def test_bad_01_truncated_header(tmp_path: pathlib.Path, blob: bytes) -> None:
    reject(tmp_path, blob, qrt.FormatError, "truncated header")


# ---------------------------------------------------------------- 2: not GGUF


def test_bad_02_wrong_magic(tmp_path: pathlib.Path) -> None:
    reject(tmp_path, b"GGML" + bytes(40), qrt.FormatError, "not a GGUF file", "'GGML'")
    reject(tmp_path, b"FUGG" + GGUFBytes().build()[4:], qrt.FormatError, "not a GGUF file", "byte-swapped")
    reject(tmp_path, b"\x00\xff\xfe", qrt.FormatError, "not a GGUF file", "\\x00\\xff\\xfe")
    reject(tmp_path, b"vm\nx" + bytes(30), qrt.FormatError, "not a GGUF file", "'vm\\x0ax'")


def test_bad_02_safetensors(tmp_path: pathlib.Path) -> None:
    header = b'{"w":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}}'
    blob = struct.pack("<Q", len(header)) + header + bytes(4)
    reject(tmp_path, blob, qrt.FormatError, "not a GGUF file", "safetensors")


# ---------------------------------------------------------------- 3: versions


@pytest.mark.parametrize(
    ("version", "fragment"),
    [
        (0, "version 0 is not supported"),
        (1, "version 1 is not supported"),
        (4, "newer than"),
        (0xFFFF, "newer than"),
        (0x03000000, "endianness"),
        (0x01000000, "endianness"),
    ],
)
def test_bad_03_version(tmp_path: pathlib.Path, version: int, fragment: str) -> None:
    reject(
        tmp_path, GGUFBytes(version=version).build(), qrt.FormatError, "header at byte 4", "version", fragment
    )


def test_version_2_accepted(tmp_path: pathlib.Path) -> None:
    assert qrt.gguf.open(write(tmp_path, GGUFBytes(version=2).build())).version == 2


# ---------------------------------------------------------------- 4: truncation at every byte


def _expected_section(b: GGUFBytes, cut: int) -> str:
    o = b.offsets()
    if cut < o["kv"]:
        return "header"
    if cut < o["tensor_info"]:
        return "metadata"
    if cut < o["tensor_info"] + sum(map(len, b.infos)):
        return "tensor info"
    return "data"


def test_bad_04_truncation_every_byte(tmp_path: pathlib.Path) -> None:
    b = small_file()
    blob = b.build()
    assert len(blob) == b.offsets()["end"] and len(blob) % 32 == 0
    for cut in range(len(blob)):
        p = write(tmp_path, blob[:cut])
        with pytest.raises(qrt.FormatError) as info:
            qrt.gguf.open(p)
        msg = str(info.value)
        assert f"truncated {_expected_section(b, cut)}" in msg, (cut, msg)
    qrt.gguf.open(write(tmp_path, blob)).close()


def test_bad_04_truncation_gguf_py_file(
    gguf_py_file: tuple[pathlib.Path, dict, dict], tmp_path: pathlib.Path
) -> None:
    blob = gguf_py_file[0].read_bytes()
    with qrt.gguf.open(gguf_py_file[0]) as f:
        end = max(
            t.offset + t.nbytes for t in f.tensors.values()
        )  # the writer's trailing padding is optional
    for cut in range(end):
        p = write(tmp_path, blob[:cut])
        with pytest.raises(qrt.FormatError, match="truncated"):
            qrt.gguf.open(p)


# ---------------------------------------------------------------- 5: huge counts


@pytest.mark.parametrize(
    ("field", "value", "fragment"),
    [
        ("n_kv", 2**63 - 1, "truncated metadata"),
        ("n_tensors", 2**63 - 1, "truncated tensor info"),
        ("n_kv", 1000, "truncated metadata"),
        ("n_tensors", 1000, "truncated tensor info"),
        ("n_kv", -1, "negative count"),
        ("n_tensors", -(2**63), "negative count"),
    ],
)
def test_bad_05_counts(tmp_path: pathlib.Path, field: str, value: int, fragment: str) -> None:
    b = small_file()
    reject(tmp_path, b.build(**{field: value}), qrt.FormatError, field, fragment)


# ---------------------------------------------------------------- 6: string lengths


@pytest.mark.parametrize(
    ("length", "fragment"),
    [
        (1000, "truncated metadata"),
        (2**30 + 1, "exceeds the limit of 1073741824"),
        (2**64 - 1, "exceeds the limit"),
    ],
)
def test_bad_06_value_string_length(tmp_path: pathlib.Path, length: int, fragment: str) -> None:
    b = GGUFBytes().kv_raw(string("k") + i32(STRING) + u64(length) + b"abc")
    reject(tmp_path, b.build(), qrt.FormatError, "key 'k'", fragment)


@pytest.mark.parametrize(
    ("length", "fragment"),
    [(500, "truncated metadata"), (2**64 - 1, "key length"), (2**40, "exceeds the limit of 65535")],
)
def test_bad_06_key_length(tmp_path: pathlib.Path, length: int, fragment: str) -> None:
    b = GGUFBytes().kv_raw(u64(length) + b"key" + i32(UINT8) + b"\x01")
    reject(tmp_path, b.build(), qrt.FormatError, "key #0", fragment)


def test_bad_06_tensor_name_length(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes().tensor_raw(u64(2**64 - 1) + b"abc" + bytes(40))
    reject(tmp_path, b.build(), qrt.FormatError, "tensor info", "tensor #0", "exceeds the limit of 63")


def test_bad_06_string_in_array_too_long(tmp_path: pathlib.Path) -> None:
    rec = string("arr") + i32(ARRAY) + i32(STRING) + u64(2) + string("ok") + u64(99) + b"short"
    reject(tmp_path, GGUFBytes().kv_raw(rec).build(), qrt.FormatError, "truncated metadata", "key 'arr'")


def test_bad_06_invalid_utf8_string(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes().kv_raw(string("k") + i32(STRING) + string(b"\xff\xfe"))
    reject(tmp_path, b.build(), qrt.FormatError, "key 'k'", "not valid UTF-8")


# ---------------------------------------------------------------- 7: arrays


@pytest.mark.parametrize(
    ("elem", "count", "tail", "fragment"),
    [
        (UINT32, 2**63, b"", "exceeds the limit"),
        (UINT32, 2**24 + 1, b"", "exceeds the limit of 16777216"),
        (UINT64, 1000, bytes(16), "truncated metadata"),
        (STRING, 10**6, bytes(24), "truncated metadata"),
        (ARRAY, 1, i32(UINT8) + u64(1) + b"\x00", "arrays of arrays"),
        (13, 1, b"\x00", "unknown array element type 13"),
        (-1, 1, b"\x00", "unknown array element type -1"),
    ],
)
def test_bad_07_arrays(tmp_path: pathlib.Path, elem: int, count: int, tail: bytes, fragment: str) -> None:
    rec = string("arr") + i32(ARRAY) + i32(elem) + u64(count) + tail
    reject(tmp_path, GGUFBytes().kv_raw(rec).build(), qrt.FormatError, "metadata", "key 'arr'", fragment)


# ---------------------------------------------------------------- 8: keys, value types, bools

KEY_VALUE_CASES = [
    (string("") + i32(UINT32) + u32(1), "empty key"),
    (string("clé") + i32(UINT8) + b"\x01", "not printable ASCII"),
    (string("a\nb") + i32(UINT8) + b"\x01", "not printable ASCII"),
    (string(b"\xff\xfe") + i32(UINT8) + b"\x01", "'\\xff\\xfe' is not printable ASCII"),
    (string("x" * 65536) + i32(UINT8) + b"\x01", "exceeds the limit of 65535"),
    (string("k") + i32(13) + b"\x01", "unknown value type 13"),
    (string("k") + i32(-7) + b"\x01", "unknown value type -7"),
    (string("k") + i32(BOOL) + b"\x02", "bool stored as 2"),
    (string("k") + i32(BOOL) + b"\xff", "bool stored as 255"),
    (string("k") + i32(ARRAY) + i32(BOOL) + u64(3) + b"\x00\x01\x07", "bool stored as 7"),
]


@pytest.mark.parametrize(("record", "fragment"), KEY_VALUE_CASES, ids=[f for _, f in KEY_VALUE_CASES])
def test_bad_08_keys_and_values(tmp_path: pathlib.Path, record: bytes, fragment: str) -> None:
    reject(tmp_path, GGUFBytes().kv_raw(record).build(), qrt.FormatError, "metadata", fragment)


def test_bad_08_duplicate_key(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes().kv("a.b", UINT8, 1).kv("a.c", UINT8, 1).kv("a.b", STRING, "again")
    msg = reject(tmp_path, b.build(), qrt.FormatError, "metadata", "key 'a.b'", "duplicate key")
    assert f"at byte {24 + 2 * (8 + 3 + 4 + 1)}" in msg


# ---------------------------------------------------------------- 9: alignment


@pytest.mark.parametrize(
    ("vtype", "value", "fragment"),
    [
        (STRING, "32", "must be UINT32, is STRING"),
        (UINT64, 32, "must be UINT32, is UINT64"),
        (INT32, 32, "must be UINT32, is INT32"),
        (UINT32, 0, "alignment 0 is not a power of two"),
        (UINT32, 48, "alignment 48 is not a power of two"),
        (UINT32, 2**31, "exceeds the limit"),
        (UINT32, 2**32 - 1, "not a power of two"),
    ],
)
def test_bad_09_alignment(tmp_path: pathlib.Path, vtype: int, value: object, fragment: str) -> None:
    b = GGUFBytes().kv("general.alignment", vtype, value)
    reject(tmp_path, b.build(), qrt.FormatError, "metadata at byte 24", "key 'general.alignment'", fragment)


def test_bad_09_alignment_array(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes().kv("general.alignment", ARRAY, [64], UINT32)
    reject(tmp_path, b.build(), qrt.FormatError, "must be UINT32, is ARRAY")


def test_custom_alignment(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes(alignment=256).kv("general.alignment", UINT32, 256)
    b.tensor("a", [3], F32_ID, bytes(12)).tensor("b", [4], F32_ID, bytes(16))
    with qrt.gguf.open(write(tmp_path, b.build())) as f:
        assert f.alignment == 256 and f.data_offset == 256 and f.tensors["b"].offset == 512


# ---------------------------------------------------------------- 10: tensor names


def test_bad_10_tensor_name_too_long(tmp_path: pathlib.Path) -> None:
    reject(
        tmp_path,
        one_tensor([4], data=bytes(16), name="n" * 64),
        qrt.FormatError,
        "tensor info at byte 24",
        "tensor #0",
        "tensor name length 64 exceeds the limit of 63",
    )
    with qrt.gguf.open(write(tmp_path, one_tensor([4], data=bytes(16), name="n" * 63))) as f:
        assert list(f.tensors) == ["n" * 63]


def test_bad_10_tensor_name_duplicate(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes().tensor("w", [8], F32_ID, bytes(32)).tensor("w", [8], F32_ID, bytes(32))
    reject(tmp_path, b.build(), qrt.FormatError, "tensor info", "tensor 'w'", "duplicate tensor name")


@pytest.mark.parametrize(
    ("name", "fragment"),
    [(b"", "empty tensor name"), (b"a\x00b", "not UTF-8 without NUL"), (b"\xc3(", "not UTF-8 without NUL")],
)
def test_bad_10_tensor_name_bytes(tmp_path: pathlib.Path, name: bytes, fragment: str) -> None:
    reject(tmp_path, one_tensor([4], data=bytes(16), name=name), qrt.FormatError, "tensor #0", fragment)


# ---------------------------------------------------------------- 11: dimensions


@pytest.mark.parametrize(
    ("ne", "n_dims", "fragment"),
    [
        ([], 0, "n_dims 0 is not in 1..4"),
        ([1, 1, 1, 1, 1], 5, "n_dims 5 is not in 1..4"),
        ([4], 0xFFFFFFFF, "n_dims 4294967295 is not in 1..4"),
        ([4, 0], None, "dimension 1 is 0, must be positive"),
        ([-4], None, "dimension 0 is -4, must be positive"),
        ([4, 1, 1, -(2**63)], None, "dimension 3 is"),
    ],
)
def test_bad_11_dims(tmp_path: pathlib.Path, ne: list[int], n_dims: int | None, fragment: str) -> None:
    reject(
        tmp_path,
        one_tensor(ne, data=bytes(16), n_dims=n_dims),
        qrt.FormatError,
        "tensor info",
        "tensor 't'",
        fragment,
    )


def test_bad_11_n_dims_beyond_file(tmp_path: pathlib.Path) -> None:
    info = string("t") + u32(4) + i64(4) + i64(4) + i64(4)  # claims 4 dims, the file ends after 3
    blob = GGUFBytes().header(n_tensors=1) + info
    reject(tmp_path, blob, qrt.FormatError, "truncated tensor info at byte 61", "tensor 't'", "dimension")


# ---------------------------------------------------------------- 12: overflows


def test_bad_12_element_count_overflow(tmp_path: pathlib.Path) -> None:
    reject(tmp_path, one_tensor([2**32, 2**32]), qrt.FormatError, "tensor 't'", "element count overflows")
    reject(tmp_path, one_tensor([2**62, 2, 2]), qrt.FormatError, "element count overflows")


def test_bad_12_byte_count_overflow(tmp_path: pathlib.Path) -> None:
    reject(tmp_path, one_tensor([2**31, 2**31]), qrt.FormatError, "tensor 't'", "F32 tensor overflows")
    reject(tmp_path, one_tensor([32 * (2**58 - 1)], Q8_0_ID), qrt.FormatError, "Q8_0 tensor overflows")


def test_bad_12_running_offset_wraps(tmp_path: pathlib.Path) -> None:
    b = GGUFBytes()
    for i in range(4):  # four 2^62-byte tensors: the fourth's padded end is 2^64
        b.tensor_raw(string(f"t{i}") + u32(2) + i64(2**30) + i64(2**30) + i32(F32_ID) + u64(i * 2**62))
    reject(tmp_path, b.build(), qrt.FormatError, "tensor 't3'", "data section size overflows")


# ---------------------------------------------------------------- 13: types


@pytest.mark.parametrize(
    ("type_id", "fragment"),
    [
        (42, "ggml type id 42 (Q2_0)"),
        (4, "ggml type id 4 (Q4_2 (removed from ggml))"),
        (31, "Q4_0_4_4"),
        (1234567, "ggml type id 1234567 (not a ggml type)"),
        (-1, "ggml type id -1"),
        (9, "type Q8_1 is compute-only"),
    ],
)
def test_bad_13_unsupported_type(tmp_path: pathlib.Path, type_id: int, fragment: str) -> None:
    reject(
        tmp_path,
        one_tensor([256], type_id, bytes(1024)),
        qrt.UnsupportedError,
        "tensor info",
        "tensor 't'",
        fragment,
    )


def test_bad_13_row_not_multiple_of_block(tmp_path: pathlib.Path) -> None:
    reject(
        tmp_path,
        one_tensor([33, 2], Q8_0_ID, bytes(68)),
        qrt.FormatError,
        "tensor 't'",
        "row length 33 is not a multiple of Q8_0's block size 32",
    )


# ---------------------------------------------------------------- 14: offsets and data


@pytest.mark.parametrize("offset", [4096, 2**64 - 1, 8, 1])
def test_bad_14_first_offset_wrong(tmp_path: pathlib.Path, offset: int) -> None:
    reject(
        tmp_path,
        one_tensor([8], data=bytes(32), offset=offset),
        qrt.FormatError,
        "tensor info",
        "tensor 't'",
        f"data offset {offset}, expected 0",
    )


@pytest.mark.parametrize(
    ("second_offset", "why"),
    [(0, "overlap"), (16, "overlap"), (40, "misaligned"), (64, "gap"), (2**40, "beyond the file")],
)
def test_bad_14_second_offset_wrong(tmp_path: pathlib.Path, second_offset: int, why: str) -> None:
    b = (
        GGUFBytes()
        .tensor("a", [8], F32_ID, bytes(32))
        .tensor("b", [8], F32_ID, bytes(32), offset=second_offset)
    )
    reject(tmp_path, b.build(), qrt.FormatError, "tensor 'b'", f"data offset {second_offset}, expected 32")


def test_bad_14_out_of_order(tmp_path: pathlib.Path) -> None:
    b = (
        GGUFBytes()
        .tensor("a", [8], F32_ID, bytes(32), offset=32)
        .tensor("b", [8], F32_ID, bytes(32), offset=0)
    )
    reject(tmp_path, b.build(), qrt.FormatError, "tensor 'a'", "data offset 32, expected 0")


def test_bad_14_truncated_data(tmp_path: pathlib.Path) -> None:
    blob = GGUFBytes().tensor("a", [8], F32_ID, bytes(32)).tensor("b", [64], F32_ID, bytes(256)).build()
    msg = reject(tmp_path, blob[:-1], qrt.FormatError, "truncated data", "tensor 'b'", "past the end")
    assert f"({len(blob) - 1} bytes" in msg


def test_trailing_bytes_and_missing_final_padding_accepted(tmp_path: pathlib.Path) -> None:
    blob = GGUFBytes().tensor("a", [3], F32_ID, bytes(12)).build()
    for data in (blob + b"trailing", blob[: len(blob) - 20]):
        with qrt.gguf.open(write(tmp_path, data)) as f:
            assert f.raw("a").nbytes == 12


# ---------------------------------------------------------------- 15: 4 TiB tensor in a tiny file


def test_bad_15_huge_tensor_small_file(tmp_path: pathlib.Path) -> None:
    blob = one_tensor([2**40], F32_ID)
    assert len(blob) < 100
    reject(
        tmp_path,
        blob,
        qrt.FormatError,
        "truncated data",
        "tensor 't'",
        "F32 data of 4398046511104 bytes",
        "past the end of the file",
    )


def test_no_tensors_file_needs_no_padding(tmp_path: pathlib.Path) -> None:
    blob = GGUFBytes().kv("a", UINT8, 1).build()
    with qrt.gguf.open(write(tmp_path, blob)) as f:
        assert f.data_offset == len(blob) and f.tensors == {}
