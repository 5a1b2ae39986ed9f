"""Read the pieces of a SentencePiece ``tokenizer.model`` (a ``ModelProto`` protobuf) without sentencepiece.

Only what the GGUF vocabulary needs: ``ModelProto.pieces`` (field 1), each a ``SentencePiece`` message with
``piece`` (1, string), ``score`` (2, float) and ``type`` (3, enum; NORMAL=1 by default, UNKNOWN=2,
CONTROL=3, USER_DEFINED=4, UNUSED=5, BYTE=6). Every length and tag is bounds-checked; a malformed file raises
:class:`qrt.FormatError` naming it. Other fields are skipped.
"""

from __future__ import annotations

import os
import struct
from dataclasses import dataclass

from qrt import FormatError

NORMAL, UNKNOWN, CONTROL, USER_DEFINED, UNUSED, BYTE = 1, 2, 3, 4, 5, 6
MAX_MODEL_BYTES = 1 << 30


@dataclass(frozen=True)
class Piece:
    piece: str
    score: float
    type: int


class _Reader:
    def __init__(self, buf: bytes, path: str) -> None:
        self.buf, self.path = buf, path

    def fail(self, msg: str, pos: int) -> FormatError:
        return FormatError(f"{self.path}: {msg} at byte {pos} (sentencepiece model)")

    def varint(self, pos: int, end: int) -> tuple[int, int]:
        shift = result = 0
        start = pos
        while True:
            if pos >= end or shift > 63:
                raise self.fail("truncated or overlong varint", start)
            b = self.buf[pos]
            pos += 1
            result |= (b & 0x7F) << shift
            if not b & 0x80:
                return result, pos
            shift += 7

    def fields(self, pos: int, end: int):
        """Yield (field number, wire type, value or (start, stop) for length-delimited) over [pos, end)."""
        while pos < end:
            key, pos = self.varint(pos, end)
            field_no, wire = key >> 3, key & 7
            if field_no == 0:
                raise self.fail("field number 0", pos)
            if wire == 0:
                value, pos = self.varint(pos, end)
                yield field_no, wire, value
            elif wire == 1:
                if pos + 8 > end:
                    raise self.fail("truncated 64-bit field", pos)
                yield field_no, wire, self.buf[pos : pos + 8]
                pos += 8
            elif wire == 2:
                n, pos = self.varint(pos, end)
                if n > end - pos:
                    raise self.fail(f"length {n} runs past the end of its message", pos)
                yield field_no, wire, (pos, pos + n)
                pos += n
            elif wire == 5:
                if pos + 4 > end:
                    raise self.fail("truncated 32-bit field", pos)
                yield field_no, wire, self.buf[pos : pos + 4]
                pos += 4
            else:
                raise self.fail(f"unsupported wire type {wire}", pos)


def read_pieces(path: str | os.PathLike[str]) -> list[Piece]:
    """The pieces of the SentencePiece model at ``path``, in id order."""
    path = os.fspath(path)
    size = os.path.getsize(path)
    if size > MAX_MODEL_BYTES:
        raise FormatError(f"{path}: {size} bytes is too large for a sentencepiece model")
    with open(path, "rb") as f:
        buf = f.read()
    r = _Reader(buf, path)
    pieces: list[Piece] = []
    for field_no, wire, value in r.fields(0, len(buf)):
        if field_no != 1:
            continue
        if wire != 2:
            raise r.fail("ModelProto.pieces is not a message", 0)
        start, stop = value
        text, score, ptype = None, 0.0, NORMAL
        for f2, w2, v2 in r.fields(start, stop):
            if f2 == 1:
                if w2 != 2:
                    raise r.fail("SentencePiece.piece is not a string", start)
                try:
                    text = buf[v2[0] : v2[1]].decode("utf-8")
                except UnicodeDecodeError:
                    raise r.fail(f"piece {len(pieces)} is not UTF-8", v2[0]) from None
            elif f2 == 2:
                if w2 != 5:
                    raise r.fail("SentencePiece.score is not a float", start)
                score = struct.unpack("<f", v2)[0]
            elif f2 == 3:
                if w2 != 0 or not 1 <= v2 <= 6:
                    raise r.fail(f"SentencePiece.type {v2!r} is not a known type", start)
                ptype = v2
        if text is None:
            raise r.fail(f"piece {len(pieces)} has no text", start)
        pieces.append(Piece(text, score, ptype))
    if not pieces:
        raise FormatError(f"{path}: no pieces (not a sentencepiece model?)")
    return pieces
