"""qrt.Tokenizer: token for token what llama.cpp produces.

* llama.cpp's own vocabulary tests, all 15 in the sdist (``ggml-vocab-*.gguf.inp`` -> ``*.out``,
  add_special false): SPM (llama-spm, phi-3), byte-level BPE (ten pre-tokenizers), Gemma 4's
  SentencePiece-style BPE and WordPiece (bert-bge).
* ``llama-tokenize`` (the llama.cpp oracle) on SmolLM2, gemma-3-270m (262k SPM vocabulary with
  user-defined whitespace tokens; gpl-3.0.txt) and the test vocabularies: digits, code, whitespace runs,
  scripts, emoji, control characters, NUL, long words, special tokens with special=True/False, BOS.
* Every supported ``tokenizer.ggml.pre``: the gpt-2 vocabulary relabelled, against llama-tokenize on
  fixed and seeded random texts.
* The embedded Unicode tables and pre-tokenizer expressions are llama.cpp's (when its source is present).
* Decoding: round trips, pieces as llama.cpp prints them, streaming never splits a character.
* BAD_INPUTS.md items 21, 28, 29, 33.
"""

from __future__ import annotations

import ast
import os
import pathlib
import random
import re
import struct
import subprocess
import time
from collections.abc import Callable

import pytest

import qrt
import qrt.gguf
from qrt import FormatError, UnsupportedError
from qrt.pretokenize import _EXPRS
from qrt.tokenizer import _BYTE_CHARS, ATTR_USER_DEFINED, Detokenizer, Tokenizer
from tests.gguf_bytes import ARRAY, INT8, INT32, STRING, GGUFBytes, string, u32
from tests.support import llamacpp as _llamacpp
from tests.support.gemma3 import gemma3_270m

VOCAB_DIR = _llamacpp.vocab_dir()
GPL = pathlib.Path(__file__).parent / "data" / "gpl-3.0.txt"
# every llama.cpp vocabulary test file in the sdist (models/ggml-vocab-NAME.gguf + .inp/.out)
VOCABS = ("bert-bge", "command-r", "deepseek-coder", "deepseek-llm", "falcon", "gemma-4", "gpt-2",
          "llama-bpe", "llama-spm", "mpt", "phi-3", "qwen2", "qwen35", "refact", "starcoder")  # fmt: skip

TEXTS = [
    "", " ", "  ", "   ", "\t", "\n", "\n\n\n", " \n \n", "\t\n", "\r\n", "Hello world", " Hello World!",
    "Hello, y'all! How're you? I'M FINE, they'LL see'S", "'s 't 're 've 'm 'll 'd 'S 'T 'Re", "'", "''",
    "don't  'quoted' ", "3", "33", "333", "3333", "33333", "1234567890", " 12 345 6789",
    "3.14159 1e-10 0x1F 1,000,000 -42", "٣٤٥ ½ ² Ⅻ ①", "v1.2.3-rc4", "2024-01-02T03:04:05Z",
    "def f(x):\n    return x**2  # square\n\n\tif (a && b) { c->d(); }\n",
    "for (int i = 0; i < n; ++i) {\n        sum += a[i];\n}\n",
    '<div class="x">&nbsp;</div>\n<?php echo $a; ?>',
    "a  b   c    d", "   leading", "trailing   ", "\t\t tab\t mix \r\n crlf\r\r\n  \n",
    "\u00a0nbsp\u2003emsp\u3000ideo \u0085nel",
    "нещо на Български", "我想在apple工作1314151天～", "Ελληνικά ñandú café naïve Æsir", "हिन्दी भाषा", "العربية",
    "日本語のテキスト。", "한국어 텍스트", "ﬁ ligature ǅ Ǆ", "Zalgo: Z̴̢a̷l̸g̵o̶", "កាន់តែពិសេសអាចខលចេញ",
    "🦙.cpp 🚀 😶‍🌫️ 👩🏽‍💻 🇫🇷 ✅ (only emoji)", "🚀 (normal) 😶‍🌫️ (multiple emojis concatenated) ✅",
    "\x00nul\x00", "\x01\x7f\x1b[0m\x1c\x1f", "\ufeffBOM", "\U0010ffff\ue000 private", "unassigned \u0378 \U000e0001 tag",
    # assigned in Unicode 15 (llama.cpp's table), unassigned in Python 3.11's unicodedata
    "new in Unicode 15: a\U0001e030b \u0cf3 x\U00011f00y \u31ef",
    "   Hello\n    Hello", " (", "\n =", "' era", "Hello, y'all! How are you 😁 ?我想在apple工作1314151天～",
    "<td>1</td> <tr> </tr>> </ a>  </b>\n> </",  # Gemma's ">▁</" token glues ">" to a space
    "a" * 96, "supercalifragilisticexpialidocious_and_a_very_long_identifier_name_that_goes_on_and_on_123",
    "x" * 300 + " " + "ab" * 200, "!" * 80 + "??..,,", " " * 74 + "spaces", "\n" * 60 + "x",
]  # fmt: skip
SPECIAL_TEXTS = [
    "<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\n", "<|endoftext|>", "<|im_start|><|im_start|>",
    "x<|im_end|>y", "<reponame>foo<file_sep>bar", "< |im_start| >", "<|im_start|", "<s>Hello</s>", " <s> </s> ",
    "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nhi<|eot_id|>", "[PAD151646] <|im_end|>",
]  # fmt: skip
_ALPHABET = [*" \t\n\r\x0b\x0c'sStTdDmMlLrReEvV", *"abcXYZ0123456789.,!?-_()[]{}$+<=>^~|`#%&*/\\\"@:;",
             "\u00a0", "\u2003", "\u3000", "\u0085", "é", "ß", "Ж", "λ", "中", "文", "가", "\u0301", "\u0308", "٣",
             "½", "²", "Ⅻ", "€", "©", "…", "。", "，", "🦙", "😀", "\u200d", "\ufe0f", "\U0001e030", "\u0378", "\x00",
             "\x1c", "\x7f", "ǅ", "ﬁ", "ʰ",
             # case and accents (WordPiece lowercases and strips them), Hangul, full-width, CJK extensions
             "É", "Ñ", "İ", "ı", "Σ", "ς", "Ω", "K", "Å", "ẞ", "각", "ㄱ", "Ａ", "！", "𠀀", "豈", "\u0327",
             "\ufeff", "\xad", "\u2028", "\ue000", "\ufffd"]  # fmt: skip


def random_texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = [
        "".join(rng.choice(_ALPHABET) for _ in range(rng.choice([1, 2, 3, 5, 8, 13, 21, 34])))
        for _ in range(n)
    ]
    for alphabet in (
        "ab",
        "aab ",
        "th e",
        "0123",
        "  \n",
        "▁a",
        "ΑαБб",
        "中文",
        "!?.",
        "\x00a",
    ):  # long words
        out.append("".join(rng.choice(alphabet) for _ in range(rng.randrange(40, 300))))
    return out


def vocab_path(name: str) -> pathlib.Path:
    p = VOCAB_DIR / f"ggml-vocab-{name}.gguf"
    if not p.is_file():
        pytest.skip(f"{p} not found")
    return p


@pytest.fixture(scope="module", params=VOCABS)
def vocab(request: pytest.FixtureRequest) -> tuple[pathlib.Path, Tokenizer]:
    p = vocab_path(request.param)
    return p, Tokenizer.from_gguf(p)


@pytest.fixture(scope="module")
def smollm2(smollm2_path: pathlib.Path) -> Tokenizer:
    return Tokenizer.from_gguf(smollm2_path)


@pytest.fixture(scope="module")
def spm() -> Tokenizer:
    return Tokenizer.from_gguf(vocab_path("llama-spm"))


@pytest.fixture(scope="module")
def gpt2_meta() -> dict:
    with qrt.gguf.open(vocab_path("gpt-2")) as f:
        return dict(f.metadata)


@pytest.fixture(scope="module")
def spm_meta() -> dict:
    with qrt.gguf.open(vocab_path("llama-spm")) as f:
        return dict(f.metadata)


# ---------------------------------------------------------------- the llama.cpp oracle


class LlamaTokenize:
    """``llama-tokenize --stdin``: the token ids llama.cpp gives a text (``common_tokenize``)."""

    def __init__(self, exe: pathlib.Path) -> None:
        self.exe = exe

    def run(self, model: os.PathLike, text: str, special: bool = True, bos: bool = False, ids: bool = True):
        cmd = [str(self.exe), "-m", str(model), "--stdin", "--no-escape", "--log-disable"]
        cmd += ["--ids"] if ids else []
        cmd += [] if special else ["--no-parse-special"]
        cmd += [] if bos else ["--no-bos"]
        r = subprocess.run(cmd, input=text.encode(), capture_output=True, check=True, timeout=600)
        if not ids:
            return r.stdout
        return ast.literal_eval(r.stdout.decode().strip().splitlines()[-1])

    def __call__(self, model: os.PathLike, text: str, special: bool = True, bos: bool = False) -> list[int]:
        return self.run(model, text, special, bos)

    def many(self, model: os.PathLike, tok: Tokenizer, texts: list[str]) -> list[list[int]]:
        """Tokenize many texts (special=True) in one run: joined by a control token, which cuts the text
        into fragments that llama.cpp tokenizes independently, exactly as it would each text alone.
        Texts that contain the separator's text are run alone."""
        specials = [i for i in range(tok.n_vocab) if tok.is_special(i)]
        sep = min(specials, key=lambda i: sum(tok.token_text(i) in t for t in texts))
        sep_text = tok.token_text(sep)
        batch = [t for t in texts if sep_text not in t]
        out: list[list[int]] = [[]]
        for i in self(model, sep_text.join(batch)):
            if i == sep:
                out.append([])
            else:
                out[-1].append(i)
        assert len(out) == len(batch)
        done = iter(out)
        return [next(done) if sep_text not in t else self(model, t) for t in texts]


@pytest.fixture(scope="session")
def llama_tokenize() -> LlamaTokenize:
    try:
        return LlamaTokenize(_llamacpp.ensure_tool("llama-tokenize"))
    except Exception as e:
        if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
            pytest.fail(f"llama-tokenize unavailable: {e}", pytrace=False)
        pytest.skip(f"llama-tokenize unavailable: {e}")
        raise


def bos_only(tok: Tokenizer) -> list[int]:
    """encode("", add_bos=True): BOS alone, or CLS SEP for a WordPiece (BERT) vocabulary."""
    return [tok.bos_id] if tok.model != "bert" else [tok.bos_id, tok.sep_id]


def assert_same(tok: Tokenizer, texts: list[str], expected: list[list[int]], **kw) -> None:
    got = [tok.encode(t, **kw) for t in texts]
    bad = [(t, g, e) for t, g, e in zip(texts, got, expected, strict=True) if g != e]
    assert not bad, "\n".join(f"{t!r}: qrt {g} llama.cpp {e}" for t, g, e in bad[:5])


# ---------------------------------------------------------------- llama.cpp's vocabulary tests


def read_vocab_tests(path: pathlib.Path) -> list[tuple[str, list[int]]]:
    """tests/test-tokenizer-0.cpp read_tests: inputs split by "\\n__ggml_vocab_test__\\n", one .out line each."""
    raw = path.with_name(path.name + ".inp").read_bytes().decode("utf-8")
    sep = "\n__ggml_vocab_test__\n"
    inputs, pos = [], 0
    while pos < len(raw):
        nxt = raw.find(sep, pos)
        if nxt < 0:
            inputs.append(raw[pos:])
            break
        inputs.append(raw[pos:nxt])
        pos = nxt + len(sep)
    outputs = path.with_name(path.name + ".out").read_text(encoding="utf-8").split("\n")[: len(inputs)]
    assert len(inputs) == len(outputs) > 40
    return [(i, [int(x) for x in o.split()]) for i, o in zip(inputs, outputs, strict=True)]


@pytest.mark.parametrize("name", VOCABS)
def test_llamacpp_vocab_files(name: str) -> None:
    path = vocab_path(name)
    tok = Tokenizer.from_gguf(path)
    cases = read_vocab_tests(path)
    assert_same(tok, [text for text, _ in cases], [ids for _, ids in cases], add_bos=False)


def test_vocab_properties_match_llamacpp() -> None:
    """bos/eos/eot and the end-of-generation set as llama.cpp 0.3.36 reports them (llama_vocab_* calls)."""
    expect = {  # name: (n_vocab, bos, eos, eot, add_bos, eog)
        "gpt-2": (50257, 50256, 50256, 50256, False, {50256}),
        "llama-bpe": (128256, 128000, 128001, 128009, True, {128001, 128009}),
        "llama-spm": (32000, 1, 2, None, True, {2}),
        "qwen2": (151936, 151643, 151643, 151645, False, {128247, 151643, 151645}),  # 128247 = "</s>"
        "command-r": (256000, 5, 255001, None, True, {0, 255001}),
        "deepseek-coder": (32256, 32013, 32014, 32014, True, {32014}),
        "deepseek-llm": (102400, 100000, 100001, 100001, True, {100001}),
        "falcon": (65024, 11, 11, 11, False, {11}),
        # add_bos forced on by llama.cpp; "</s>" (212) is a normal token here, not an end of generation
        "gemma-4": (262144, 2, 1, None, True, {1, 50, 106}),
        "mpt": (50432, 0, 0, 0, False, {0}),
        "phi-3": (32064, 1, 32000, 32007, True, {2, 32000, 32007}),
        "qwen35": (151936, 151643, 151643, 151645, False, {128247, 151643, 151645}),
        "refact": (49216, 0, 0, 0, False, {0, 4, 18}),
        "starcoder": (49152, 0, 0, 0, False, {0, 4}),
        "bert-bge": (30522, 101, None, None, True, {0}),  # "[PAD]" is taken for a FIM pad token
    }
    for name, (n, bos, eos, eot, add_bos, eog) in expect.items():
        tok = Tokenizer.from_gguf(vocab_path(name))
        assert (tok.n_vocab, tok.bos_id, tok.eos_id, tok.eot_id, tok.add_bos) == (n, bos, eos, eot, add_bos)
        assert (
            tok.eog_ids == eog
            and all(tok.is_eog(i) for i in eog)
            and not tok.is_eog(min(set(range(5)) - eog))
        )
    # qwen2's "</s>" is a normal token that llama.cpp turns into a control token
    tok = Tokenizer.from_gguf(vocab_path("qwen2"))
    assert tok.is_special(128247) and tok.decode([128247], skip_special=True) == ""


def test_smollm2_properties(smollm2: Tokenizer) -> None:
    assert (smollm2.model, smollm2.pre, smollm2.n_vocab) == ("gpt2", "smollm", 49152)
    assert (smollm2.bos_id, smollm2.eos_id, smollm2.add_bos, smollm2.add_eos) == (1, 2, False, False)
    # llama.cpp: <|endoftext|>, <|im_end|> and <reponame> (its FIM "repo" token) end generation
    assert smollm2.eog_ids == {0, 2, 4}
    # llama.cpp 0.3.36 reports eot 0 here: of two candidates it takes whichever its unordered_map
    # yields first. qrt takes the first in llama.cpp's candidate list, "<|im_end|>".
    assert smollm2.eot_id == 2 and smollm2.token_text(2) == "<|im_end|>"


# ---------------------------------------------------------------- against llama-tokenize


def test_smollm2_matches_llama_tokenize(smollm2: Tokenizer, smollm2_path, llama_tokenize) -> None:
    texts = TEXTS + SPECIAL_TEXTS + random_texts(1, 200)
    assert_same(smollm2, texts, llama_tokenize.many(smollm2_path, smollm2, texts), special=True)
    for text in SPECIAL_TEXTS:
        for special in (True, False):
            assert smollm2.encode(text, special=special) == llama_tokenize(smollm2_path, text, special), text
    assert smollm2.encode("<|im_start|>user", special=True)[0] == 1
    assert smollm2.encode("<|im_start|>user", special=False)[0] != 1


def test_smollm2_gpl(smollm2: Tokenizer, smollm2_path, llama_tokenize) -> None:
    if not GPL.is_file():
        pytest.skip(f"{GPL} not found")
    text = GPL.read_text(encoding="utf-8")
    ids = smollm2.encode(text)
    assert ids == llama_tokenize(smollm2_path, text, special=False)
    assert len(ids) == 7639
    assert smollm2.decode(ids) == text


@pytest.mark.parametrize("name", VOCABS)
def test_vocabs_match_llama_tokenize(name: str, llama_tokenize) -> None:
    path = vocab_path(name)
    tok = Tokenizer.from_gguf(path)
    texts = TEXTS + random_texts(2, 150)
    assert_same(tok, texts, llama_tokenize.many(path, tok, texts), add_bos=False)
    texts = SPECIAL_TEXTS
    assert_same(tok, texts, llama_tokenize.many(path, tok, texts), add_bos=False, special=True)
    for text in SPECIAL_TEXTS[::3]:  # (one run each: nothing separates texts when special tokens are text)
        assert tok.encode(text, add_bos=False) == llama_tokenize(path, text, special=False), text
    # add_bos=None follows the file (llama-tokenize adds BOS when the vocabulary asks for it)
    assert tok.encode("Hello world") == llama_tokenize(path, "Hello world", bos=True)
    assert tok.encode("", add_bos=True) == bos_only(tok) and tok.encode("", add_bos=False) == []


# ---------------------------------------------------------------- Gemma 3: a real 262k SPM vocabulary

WHITESPACE_TEXTS = [" " * n + "x" for n in (1, 2, 3, 30, 31, 32, 33, 64)] + [
    "\t" * 40,
    "\n" * 33,
    "a \t\n \n\n\t\t  b",
    "  \n  \n\n    x\ty\t\tz",
    "\r\n\r\n\t \t",
    "x\u3000\u3000 y",
]


@pytest.fixture(scope="module")
def gemma3() -> tuple[pathlib.Path, Tokenizer]:
    """gemma-3-270m (from the test cache): SPM, 262144 tokens, add_space_prefix false, and 165
    user-defined tokens (runs of spaces, tabs and newlines) that are cut out before SentencePiece runs."""
    try:
        path = gemma3_270m()
    except Exception as e:
        if os.environ.get("QRT_TEST_REQUIRE_ORACLE") == "1":
            pytest.fail(f"gemma-3-270m unavailable: {e}", pytrace=False)
        pytest.skip(f"gemma-3-270m unavailable: {e}")
    return path, Tokenizer.from_gguf(path)


def test_gemma3_properties(gemma3) -> None:
    _, tok = gemma3
    assert (tok.model, tok.pre, tok.n_vocab, tok.add_space_prefix) == ("llama", "default", 262144, False)
    # as llama.cpp 0.3.36 reports them (print_info)
    assert (tok.bos_id, tok.eos_id, tok.eot_id, tok.unk_id, tok.pad_id, tok.add_bos) == (
        2,
        1,
        106,
        3,
        0,
        True,
    )
    assert tok.eog_ids == {1, 106, 212}
    user = [tok.token_text(i) for i in range(tok.n_vocab) if tok._attr[i] & ATTR_USER_DEFINED]
    assert len(user) == 165 and "\t\t" in user and " " * 31 in user


def test_gemma3_gpl(gemma3, llama_tokenize) -> None:
    path, tok = gemma3
    text = GPL.read_text(encoding="utf-8")
    fresh = Tokenizer.from_gguf(path)  # no cached words
    ids = fresh.encode(text, add_bos=False)
    assert ids == llama_tokenize(path, text, special=False)
    assert len(ids) == 7562
    assert fresh.decode(ids) == text
    assert tok.encode(text) == [tok.bos_id, *ids]


def test_gemma3_matches_llama_tokenize(gemma3, llama_tokenize) -> None:
    path, tok = gemma3
    texts = TEXTS + WHITESPACE_TEXTS + random_texts(6, 150)
    assert_same(tok, texts, llama_tokenize.many(path, tok, texts), add_bos=False)
    texts = [*SPECIAL_TEXTS, "<start_of_turn>user\nHi<end_of_turn>\n<start_of_turn>model\n"]
    assert_same(tok, texts, llama_tokenize.many(path, tok, texts), add_bos=False, special=True)
    for text in texts[::3]:
        assert tok.encode(text, add_bos=False) == llama_tokenize(path, text, special=False), text
    assert tok.encode("Hello world") == llama_tokenize(path, "Hello world", bos=True)
    for text in TEXTS + WHITESPACE_TEXTS:
        assert tok.decode(tok.encode(text), skip_special=True) == text
    assert_pieces(path, tok, llama_tokenize)


def write_with_pre(src: pathlib.Path, pre: str, dst: pathlib.Path) -> None:
    """A copy of a vocabulary-only GGUF (no tensors) with another tokenizer.ggml.pre: the string value
    after the key is replaced in place."""
    data = src.read_bytes()
    key = string("tokenizer.ggml.pre") + u32(STRING)
    at = data.index(key) + len(key)
    old_len = struct.unpack_from("<Q", data, at)[0]
    dst.write_bytes(data[:at] + string(pre) + data[at + 8 + old_len :])


# one name per distinct (expressions, ignore_merges) of llama.cpp's llm_tokenizer_bpe
PRES = ("default", "gpt-2", "phi-2", "mpt", "llama-bpe", "dbrx", "deepseek-llm", "deepseek-coder", "falcon",
        "starcoder", "refact", "smollm", "qwen2", "stablelm2", "poro-chat", "viking", "qwen35", "gemma4",
        "tekken", "gpt-4o", "deepseek-v3", "chatglm-bpe", "glm4")  # fmt: skip


@pytest.mark.parametrize("pre", PRES)
def test_pre_tokenizers_match_llama_tokenize(pre: str, tmp_path_factory, llama_tokenize) -> None:
    path = tmp_path_factory.mktemp("pre") / f"gpt2-{pre}.gguf"
    write_with_pre(vocab_path("gpt-2"), pre, path)
    tok = Tokenizer.from_gguf(path)
    assert tok.pre == pre
    texts = TEXTS + random_texts(3, 150)
    assert_same(tok, texts, llama_tokenize.many(path, tok, texts), add_bos=False)
    # add_bos=None: the pre-tokenizer's default (the file has no add_bos_token key)
    assert tok.encode("Hello world") == llama_tokenize(path, "Hello world", bos=True)


def test_pieces_match_llama_tokenize(vocab, llama_tokenize) -> None:
    assert_pieces(*vocab, llama_tokenize)


def assert_pieces(path: pathlib.Path, tok: Tokenizer, llama_tokenize: LlamaTokenize) -> None:
    """Without --ids llama-tokenize prints "%6d -> '<piece>'" per token (common_token_to_piece)."""
    texts = TEXTS + SPECIAL_TEXTS + WHITESPACE_TEXTS
    text = "".join(t for t in texts if "\x00" not in t)  # printf stops at NUL
    ids = tok.encode(text, add_bos=False, special=True)
    expected = b"".join(b"%6d -> '" % i + tok.token_to_piece(i) + b"'\n" for i in ids)
    assert llama_tokenize.run(path, text, ids=False) == expected


# ---------------------------------------------------------------- llama.cpp's tables


def llamacpp_source(rel: str) -> str:
    p = _llamacpp.base_dir() / "src" / rel
    if not p.is_file():
        pytest.skip(f"llama.cpp source {p} not found")
    return p.read_text(encoding="utf-8")


def _varint_blob(values: list[int]) -> bytes:
    data = bytearray()
    for v in values:
        while v >= 0x80:
            data.append(v & 0x7F | 0x80)
            v >>= 7
        data.append(v)
    return bytes(data)


def _zigzag(z: int) -> int:
    return z << 1 if z >= 0 else ((-z) << 1) - 1


def test_unicode_tables_are_llamacpps() -> None:
    """The embedded tables are unicode-data.cpp's, regenerated here: unicode_ranges_flags (one class per
    run), unicode_set_whitespace, unicode_map_lowercase and unicode_ranges_nfd."""
    import base64
    import zlib

    from qrt import unicode_tables as ut

    def blob(name: str) -> bytes:
        return zlib.decompress(base64.b85decode(getattr(ut, name)))

    src = llamacpp_source("src/unicode-data.cpp")

    def table(name: str) -> list[tuple[int, ...]]:
        body = re.search(name + r" = \{(.*?)\};", src, re.S)
        assert body is not None, name
        return [
            tuple(int(x, 16) for x in re.findall(r"0x([0-9A-F]+)", t))
            for t in re.findall(r"\{0x[^}]*\}", body.group(1))
        ]

    bits = ((2, ut.NUMBER), (4, ut.LETTER), (0x20, ut.PUNCTUATION), (0x10, ut.MARK), (0x40, ut.SYMBOL),
            (0x80, ut.CONTROL), (0x08, ut.SEPARATOR))  # fmt: skip
    runs: list[tuple[int, int]] = []
    for start, flags in table("unicode_ranges_flags")[:-1]:
        cls = next((c for bit, c in bits if flags & bit), ut.OTHER)
        if not runs or runs[-1][1] != cls:
            runs.append((start, cls))

    def encode(
        rows: list[tuple[int, ...]], fields: Callable[[int, tuple[int, ...]], tuple[int, ...]]
    ) -> bytes:
        values, prev = [], 0
        for row in rows:
            values += fields(row[0] - prev, row)
            prev = row[0]
        return _varint_blob(values)

    assert blob("_CATEGORIES") == encode(runs, lambda d, r: (d * 8 + r[1],))
    lower = table("unicode_map_lowercase")
    assert blob("_LOWERCASE") == encode(lower, lambda d, r: (d, _zigzag(r[1] - r[0])))
    nfd = table("unicode_ranges_nfd")
    assert blob("_NFD") == encode(nfd, lambda d, r: (d, r[1] - r[0], _zigzag(r[2] - r[0])))
    ws = re.search(r"unicode_set_whitespace = \{(.*?)\};", src, re.S)
    assert ws is not None
    assert {int(x, 16) for x in re.findall(r"0x([0-9A-F]+)", ws.group(1))} == ut.WHITESPACE
    # spot checks of the lookups
    classes = [ut.category(c) for c in (ord("a"), 0x301, 0x1F, 0x200D)]
    assert classes == [ut.LETTER, ut.MARK, ut.CONTROL, ut.CONTROL]
    mapped = [ut.to_lower(ord("A")), ut.to_lower(0x130), ut.nfd(0xE9), ut.nfd(ord("e"))]
    assert mapped == [ord("a"), ord("i"), ord("e"), ord("e")]


def test_pre_tokenizer_expressions_are_llamacpps() -> None:
    src = llamacpp_source("src/llama-vocab.cpp")

    def literals(segment: str) -> tuple[str, ...]:
        code = "\n".join(line for line in segment.splitlines() if not line.strip().startswith("//"))
        return tuple(ast.literal_eval(f'"{s}"') for s in re.findall(r'"((?:[^"\\]|\\.)*)"', code))

    cases = {"llama3": "LLAMA3", "deepseek-llm": "DEEPSEEK_LLM", "deepseek-coder": "DEEPSEEK_CODER",
             "falcon": "FALCON", "starcoder": "STARCODER", "gpt2": "GPT2", "qwen2": "QWEN2", "poro": "PORO",
             "viking": "VIKING", "qwen35": "QWEN35", "gemma4": "GEMMA4", "tekken": "TEKKEN", "gpt4o": "GPT4O",
             "deepseek-v3": "DEEPSEEK3_LLM"}  # fmt: skip
    for name, case in cases.items():
        at = src.index(f"case LLAMA_VOCAB_PRE_TYPE_{case}:")
        assert literals(src[at : src.index("break;", at)]) == _EXPRS[name], name
    at = src.index("case LLAMA_VOCAB_PRE_TYPE_CHATGLM4:")
    assert literals(src[at : src.index("break;", at)]) == _EXPRS["llama3"]
    at = src.index("// default regex for BPE tokenization pre-processing")
    assert literals(src[at : src.index("break;", at)]) == _EXPRS["default"]
    # the texts by which llama.cpp recognises end-of-turn, FIM and end-of-generation tokens
    import qrt.tokenizer as t

    texts = [*t._EOT_TEXTS, *t._EOM_TEXTS, *(x for v in t._FIM_TEXTS.values() for x in v), *t._EOG_TEXTS]
    assert [x for x in [*texts, *t._ALWAYS_RENDERED] if f't.first == "{x}"' not in src] == []


# ---------------------------------------------------------------- decoding


def kept_text(tok: Tokenizer, text: str) -> str:
    """What of ``text`` a byte-level BPE vocabulary can spell: llama.cpp drops a byte that has no token
    (falcon has none for some ASCII control characters), so such characters do not come back."""
    if tok.model != "gpt2":
        return text
    missing = {b for b in range(256) if tok.token_id(_BYTE_CHARS[b]) is None}
    return "".join(c for c in text if not missing & set(c.encode()))


def test_decode_round_trip(vocab) -> None:
    _, tok = vocab
    if tok.model == "bert":  # WordPiece normalizes: the known words come back, one space apart
        for text in TEXTS + random_texts(4, 100):
            words = tok._wordpiece.words(text)  # type: ignore[union-attr]
            known = [w for w in words if tok.encode(w, add_bos=False) != [tok.unk_id]]
            assert tok.decode(tok.encode(text), skip_special=True) == " ".join(known)
        return
    for text in TEXTS + random_texts(4, 100):
        if tok.model in ("llama", "gemma4") and "▁" in text:  # "▁" spells a space: it comes back as " "
            continue
        expected = kept_text(tok, text)
        for add_bos in (False, True):
            ids = tok.encode(text, add_bos=add_bos)
            assert tok.decode(ids, skip_special=True) == expected
        assert tok.decode(tok.encode(text, add_bos=False)) == expected
    for text in SPECIAL_TEXTS:  # special=False: the special texts are plain text
        assert tok.decode(tok.encode(text, add_bos=False)) == text


def test_wordpiece_decode() -> None:
    """WordPiece: decoding gives the normalized words, one space apart (pieces after the first of a word
    have no "▁"); words no token covers are [UNK], left out by skip_special."""
    tok = Tokenizer.from_gguf(vocab_path("bert-bge"))
    assert (tok.model, tok.bos_id, tok.sep_id, tok.unk_id, tok.add_bos) == ("bert", 101, 102, 100, True)
    ids = tok.encode("Hello, Wörld!  Unaffable 我想\tcafé\x00")
    assert ids[0] == 101 and ids[-1] == 102
    # 想 has no token: [UNK], an unknown token, which skip_special leaves out
    assert tok.decode(ids, skip_special=True) == "hello , world ! unaffable 我 cafe"
    assert tok.decode(ids) == "[CLS]hello , world ! unaffable 我[UNK] cafe[SEP]"
    assert tok.token_to_piece(ids[1]) == b" hello" and tok.token_to_piece(101) == b"[CLS]"


def test_decode_special_tokens(smollm2: Tokenizer, spm: Tokenizer) -> None:
    text = "<|im_start|>user\nHi<|im_end|>\n"
    ids = smollm2.encode(text, special=True)
    assert ids[0] == 1 and 2 in ids
    assert smollm2.decode(ids) == text
    assert smollm2.decode(ids, skip_special=True) == "user\nHi\n"
    assert smollm2.token_to_piece(2) == b"<|im_end|>" and smollm2.token_to_piece(2, special=False) == b""
    # SPM: the space added in front of the text is removed once; BOS is "<s>" unless skipped
    ids = spm.encode("Hello world")
    assert ids == [1, 15043, 3186]
    assert spm.decode(ids) == "<s>Hello world" and spm.decode(ids, skip_special=True) == "Hello world"
    assert spm.decode(ids[1:]) == "Hello world" and spm.decode(ids[2:]) == "world"  # as llama_detokenize
    stream = spm.detokenizer()
    assert [stream.feed(i) for i in ids[2:]] == [" world"]  # a continuation keeps its space
    assert spm.token_to_piece(15043) == b" Hello"


def test_token_to_piece_bytes(spm: Tokenizer, smollm2: Tokenizer) -> None:
    # SPM byte fallback: 🦙 has no token, so it is 4 byte tokens <0xF0> <0x9F> <0xA6> <0x99>
    ids = spm.encode("🦙", add_bos=False)
    assert [spm.token_text(i) for i in ids[1:]] == ["<0xF0>", "<0x9F>", "<0xA6>", "<0x99>"]
    assert b"".join(spm.token_to_piece(i) for i in ids) == " 🦙".encode()
    # byte-level BPE: pieces are raw bytes, possibly partial characters
    ids = smollm2.encode("🦙")
    assert b"".join(smollm2.token_to_piece(i) for i in ids) == "🦙".encode()
    assert any(len(smollm2.token_to_piece(i)) < 4 for i in ids)
    assert (
        smollm2.token_text(smollm2.token_id("Ġthe")) == "Ġthe"
        and smollm2.token_to_piece(smollm2.token_id("Ġthe")) == b" the"
    )


def test_detokenizer_never_splits_characters(smollm2: Tokenizer, spm: Tokenizer) -> None:
    text = "naïve 🦙 中文 😶‍🌫️ café " + "".join(chr(c) for c in range(0x1F600, 0x1F640))
    for tok in (smollm2, spm):
        ids = tok.encode(text, add_bos=False)
        stream = tok.detokenizer()
        outputs = [stream.feed(i) for i in ids]
        rest = stream.flush()
        assert rest == "" and "\ufffd" not in "".join(outputs)
        joined = "".join(outputs)
        assert joined == (" " + text if tok is spm else text)
        assert any(o == "" for o in outputs)  # some tokens held back a partial character
        for o in outputs:  # every output is whole characters (no lone surrogates / replacement)
            o.encode("utf-8")
    # one byte token at a time: nothing comes out until the character is complete
    stream = Detokenizer(spm)
    byte_ids = [spm.token_id(f"<0x{b:02X}>") for b in "🦙".encode()]
    assert [stream.feed(i) for i in byte_ids] == ["", "", "", "🦙"]


def test_detokenizer_invalid_utf8(spm: Tokenizer) -> None:
    def tokens(bs: bytes) -> list[int]:
        return [spm.token_id(f"<0x{b:02X}>") for b in bs]

    stream = spm.detokenizer()
    # a lone continuation byte, a truncated 3-byte sequence followed by ASCII, an overlong encoding
    out = [stream.feed(i) for i in tokens(b"\x80A\xe4\xb8B\xc0\xafC")]
    assert "".join(out) == "\ufffdA\ufffdB\ufffd\ufffdC"
    # a character cut off at the end of the stream comes out of flush() as one U+FFFD
    assert [stream.feed(i) for i in tokens(b"\xf0\x9f\xa6")] == ["", "", ""]
    assert stream.flush() == "\ufffd"
    assert stream.flush() == ""
    assert spm.decode(tokens(b"x\xf0\x9f\xa6")) == "x\ufffd"


# ---------------------------------------------------------------- API


def test_sources(gpt2_meta: dict) -> None:
    path = vocab_path("gpt-2")
    a = Tokenizer.from_gguf(path)
    b = Tokenizer.from_gguf(str(path))
    with qrt.gguf.open(path) as f:
        c = Tokenizer.from_gguf(f)
    d = Tokenizer.from_gguf(gpt2_meta)
    text = "Hello world, 1234 🦙"
    assert a.encode(text) == b.encode(text) == c.encode(text) == d.encode(text)
    assert "gpt2/gpt-2" in repr(a)
    with pytest.raises(TypeError):
        Tokenizer.from_gguf(42)


def test_public_names() -> None:
    assert qrt.Tokenizer is Tokenizer and qrt.Detokenizer is Detokenizer


def test_add_bos_add_eos(spm: Tokenizer, smollm2: Tokenizer) -> None:
    assert spm.add_bos and spm.encode("Hi")[0] == 1 and spm.encode("Hi", add_bos=False)[0] != 1
    assert spm.encode("Hi", add_eos=True)[-1] == 2
    assert not smollm2.add_bos and smollm2.encode("Hi")[0] != 1 and smollm2.encode("Hi", add_bos=True)[0] == 1


def test_empty_prompt(vocab) -> None:
    _, tok = vocab
    assert tok.encode("", add_bos=False) == []
    assert tok.encode("", add_bos=True) == bos_only(tok)
    assert tok.decode([]) == ""


# ---------------------------------------------------------------- BAD_INPUTS.md 21, 28, 29, 33


@pytest.mark.parametrize(
    "key, value",
    [
        ("tokenizer.ggml.bos_token_id", 50257),
        ("tokenizer.ggml.eos_token_id", 1 << 31),
        ("tokenizer.ggml.padding_token_id", -1),
        ("tokenizer.ggml.eot_token_id", 99999),
    ],
)
def test_special_token_id_out_of_range(gpt2_meta: dict, key: str, value: int) -> None:
    with pytest.raises(FormatError, match=re.escape(key)):
        Tokenizer.from_gguf({**gpt2_meta, key: value})


def test_lengths_disagree(spm_meta: dict) -> None:
    with pytest.raises(FormatError, match=r"tokenizer\.ggml\.scores: 31999 entries.*32000"):
        Tokenizer.from_gguf({**spm_meta, "tokenizer.ggml.scores": spm_meta["tokenizer.ggml.scores"][:-1]})
    with pytest.raises(FormatError, match=r"tokenizer\.ggml\.token_type: 32001 entries"):
        Tokenizer.from_gguf(
            {**spm_meta, "tokenizer.ggml.token_type": [*spm_meta["tokenizer.ggml.token_type"], 1]}
        )


def test_malformed_byte_token(spm_meta: dict) -> None:
    tokens = list(spm_meta["tokenizer.ggml.tokens"])
    assert tokens[3] == "<0x00>"
    tokens[3] = "<0xZZ>"
    with pytest.raises(FormatError, match=r"tokenizer\.ggml\.tokens\[3\].*<0xZZ>"):
        Tokenizer.from_gguf({**spm_meta, "tokenizer.ggml.tokens": tokens})


def test_wrong_key_types(gpt2_meta: dict, spm_meta: dict, tmp_path: pathlib.Path) -> None:
    cases = [
        (gpt2_meta, "tokenizer.ggml.model", 7),
        (gpt2_meta, "tokenizer.ggml.tokens", "abc"),
        (gpt2_meta, "tokenizer.ggml.bos_token_id", "1"),
        (gpt2_meta, "tokenizer.ggml.bos_token_id", True),
        (gpt2_meta, "tokenizer.ggml.add_bos_token", 1),
        (gpt2_meta, "tokenizer.ggml.merges", [1, 2]),
        (spm_meta, "tokenizer.ggml.scores", ["x"] * 32000),
    ]
    for meta, key, value in cases:
        with pytest.raises(FormatError, match=re.escape(key)):
            Tokenizer.from_gguf({**meta, key: value})
    # in a file, the GGUF value type itself is checked: scores as int8 (llama.cpp takes f32 or i32)
    b = GGUFBytes()
    b.kv("general.architecture", STRING, "llama").kv("tokenizer.ggml.model", STRING, "llama")
    b.kv("tokenizer.ggml.tokens", ARRAY, ["<unk>", "<s>", "</s>", "a"], STRING)
    b.kv("tokenizer.ggml.scores", ARRAY, [0, 0, 0, 1], INT8)
    b.kv("tokenizer.ggml.token_type", ARRAY, [2, 3, 3, 1], INT32)
    path = tmp_path / "int8-scores.gguf"
    path.write_bytes(b.build())
    with pytest.raises(FormatError, match=r"tokenizer\.ggml\.scores: expected an array of FLOAT32/INT32"):
        Tokenizer.from_gguf(path)


def test_missing_keys_and_unsupported(gpt2_meta: dict) -> None:
    for key in ("tokenizer.ggml.model", "tokenizer.ggml.tokens", "tokenizer.ggml.merges"):
        with pytest.raises(FormatError, match=f"missing key {re.escape(key)}"):
            Tokenizer.from_gguf({k: v for k, v in gpt2_meta.items() if k != key})
    # UGM (T5), RWKV, PLaMo-2: refused, naming the model and what qrt reads
    with pytest.raises(
        UnsupportedError, match=r"'t5' \(Unigram \(UGM\), as T5 and XLM-R use\) is not supported"
    ):
        Tokenizer.from_gguf({**gpt2_meta, "tokenizer.ggml.model": "t5"})
    for model in ("t5", "rwkv", "plamo2", "sentencepiece"):
        with pytest.raises(
            UnsupportedError, match=f"'{model}'.* is not supported; .*'llama'.*'gpt2'.*'gemma4'.*'bert'"
        ):
            Tokenizer.from_gguf({**gpt2_meta, "tokenizer.ggml.model": model})
    with pytest.raises(UnsupportedError, match=r"'kimi-k2'.*smollm"):
        Tokenizer.from_gguf({**gpt2_meta, "tokenizer.ggml.pre": "kimi-k2"})
    with pytest.raises(FormatError, match="empty"):
        Tokenizer.from_gguf({**gpt2_meta, "tokenizer.ggml.tokens": [], "tokenizer.ggml.token_type": []})
    # no pre-tokenizer: llama.cpp's "default"
    tok = Tokenizer.from_gguf({k: v for k, v in gpt2_meta.items() if k != "tokenizer.ggml.pre"})
    assert tok.pre == "default"


def test_new_vocabulary_types_bad_metadata(gpt2_meta: dict) -> None:
    """BAD_INPUTS 21 for the Gemma 4 and WordPiece readers."""
    with qrt.gguf.open(vocab_path("bert-bge")) as f:
        bert = dict(f.metadata)
    with pytest.raises(FormatError, match=r"missing key tokenizer\.ggml\.merges.*'gemma4'"):
        Tokenizer.from_gguf({**bert, "tokenizer.ggml.model": "gemma4"})
    for key in ("tokenizer.ggml.normalizer.lowercase", "tokenizer.ggml.normalizer.strip_accents"):
        with pytest.raises(FormatError, match=re.escape(key)):
            Tokenizer.from_gguf({**bert, key: 1})
    with pytest.raises(FormatError, match=r"seperator_token_id = 30522 is outside"):
        Tokenizer.from_gguf({**bert, "tokenizer.ggml.seperator_token_id": 30522})
    # the normalizer switches (strip_accents follows lowercase unless given); bge's vocabulary is uncased
    lower, strip = "tokenizer.ggml.normalizer.lowercase", "tokenizer.ggml.normalizer.strip_accents"
    for meta, expected in (
        ({lower: False}, "[UNK][UNK]"),
        ({lower: False, strip: True}, "[UNK]cafe"),
        ({strip: False}, "hello[UNK]"),
    ):
        tok = Tokenizer.from_gguf({**bert, **meta})
        assert tok.decode(tok.encode("Hello café", add_bos=False)) == expected, meta
    # llama.cpp's WordPiece ignores add_bos_token/add_eos_token: CLS ... SEP whenever special tokens are added
    tok = Tokenizer.from_gguf(
        {**bert, "tokenizer.ggml.add_bos_token": False, "tokenizer.ggml.add_eos_token": True}
    )
    assert tok.encode("hi") == [101, 7632, 102]
    # without an unknown token, a word no token covers is an error, not a silent drop
    for key in ("unknown", "seperator", "mask"):
        del bert[f"tokenizer.ggml.{key}_token_id"]
    small = {key: bert[key][:100] for key in ("tokenizer.ggml.tokens", "tokenizer.ggml.token_type")}
    tok = Tokenizer.from_gguf({**bert, **small})
    with pytest.raises(ValueError, match="no token covers 'hello'"):
        tok.encode("hello", add_bos=False)


def test_space_cut_keeps_glued_tokens() -> None:
    """SPM and Gemma 4 text is merged word by word, cut before each "▁" run, except after a character that
    a token (SPM) or a merge (BPE) joins to a "▁": "a▁b" must still come out whole."""
    spm = Tokenizer.from_gguf({
        "tokenizer.ggml.model": "llama", "tokenizer.ggml.add_space_prefix": False,
        "tokenizer.ggml.tokens": ["<unk>", "<s>", "</s>", "x", "a", "b", "▁", "▁b", "a▁", "a▁b", "xa"],
        "tokenizer.ggml.scores": [0.0, 0.0, 0.0, -1.0, -1.0, -1.0, -1.0, -2.0, -3.0, -0.5, -4.0],
        "tokenizer.ggml.token_type": [2, 3, 3, 1, 1, 1, 1, 1, 1, 1, 1],
    })  # fmt: skip
    assert [spm.token_text(i) for i in spm.encode("xa b xb a", add_bos=False)] == [
        "x", "a▁b", "▁", "x", "b", "▁", "a"]  # fmt: skip
    bpe = Tokenizer.from_gguf({
        "tokenizer.ggml.model": "gemma4",
        "tokenizer.ggml.tokens": ["<pad>", "<bos>", "x", "a", "b", "▁", "▁b", "a▁b", "xa"],
        "tokenizer.ggml.merges": ["▁ b", "a ▁b", "x a"],
    })  # fmt: skip
    assert [bpe.token_text(i) for i in bpe.encode("xa b xb a", add_bos=False)] == [
        "x", "a▁b", "▁", "x", "b", "▁", "a"]  # fmt: skip


def test_gemma4_byte_fallback() -> None:
    """A character Gemma 4 has no token for: its UTF-8 bytes as <0xHH> tokens, which a stream puts
    back together into the one character."""
    tok = Tokenizer.from_gguf(vocab_path("gemma-4"))
    text = "a\U000e0001b"
    ids = tok.encode(text, add_bos=False)
    assert [tok.token_text(i) for i in ids[1:5]] == ["<0xF3>", "<0xA0>", "<0x80>", "<0x81>"]
    stream = tok.detokenizer()
    assert [stream.feed(i) for i in ids] == ["a", "", "", "", "\U000e0001", "b"]
    assert tok.decode(ids) == text and tok.token_to_piece(ids[1]) == b"\xf3"
    assert tok.decode(tok.encode("  two  spaces ")) == "<bos>  two  spaces "


def test_bad_text(smollm2: Tokenizer) -> None:
    with pytest.raises(UnicodeEncodeError):
        smollm2.encode("lone \ud800 surrogate")
    with pytest.raises(UnicodeEncodeError):
        smollm2.encode("\udfff")
    with pytest.raises(TypeError):
        smollm2.encode(b"bytes")  # type: ignore[arg-type]
    assert smollm2.decode(smollm2.encode("a\x00b\x00")) == "a\x00b\x00"


@pytest.mark.parametrize("bad", [-1, 49152, 1 << 40])
def test_ids_out_of_range(smollm2: Tokenizer, bad: int) -> None:
    with pytest.raises(ValueError, match=f"token id {bad} is outside"):
        smollm2.decode([1, bad])
    with pytest.raises(ValueError, match="outside"):
        smollm2.token_to_piece(bad)
    with pytest.raises(ValueError, match="outside"):
        smollm2.detokenizer().feed(bad)
    with pytest.raises(ValueError, match="outside"):
        smollm2.token_text(bad)
    assert not smollm2.is_eog(bad)


def test_ids_not_integers(smollm2: Tokenizer) -> None:
    with pytest.raises(TypeError):
        smollm2.decode([1.0])  # type: ignore[list-item]
    with pytest.raises(TypeError):
        smollm2.decode(["1"])  # type: ignore[list-item]
    import numpy as np

    assert smollm2.decode(np.array([19556, 905])) == "Hello world"


HANG_SECONDS = 300  # far beyond any machine's time for linear work; a quadratic loop takes hours


def encode_timed(tok: Tokenizer, text: str, **kw) -> tuple[list[int], float]:
    t0 = time.perf_counter()
    ids = tok.encode(text, **kw)
    return ids, time.perf_counter() - t0


@pytest.mark.slow
def test_ten_megabyte_prompt(smollm2_path: pathlib.Path, spm: Tokenizer, gemma3) -> None:
    """BAD_INPUTS 28: a 10 MB prompt works. The time bound only tells a hang (a quadratic merge loop) from a
    slow machine: speed is measured in bench/, and a shared CI machine can be several times slower."""
    base = GPL.read_text(encoding="utf-8") if GPL.is_file() else " ".join(TEXTS)
    big = (base * (10_000_000 // len(base) + 1))[:10_000_000]
    gemma4 = Tokenizer.from_gguf(vocab_path("gemma-4"))
    for tok in (Tokenizer.from_gguf(smollm2_path), spm, gemma3[1], gemma4):
        ids, dt = encode_timed(tok, big)
        assert dt < HANG_SECONDS, f"{tok}: {dt:.1f} s"
        assert tok.decode(ids, skip_special=True) == big
    bert = Tokenizer.from_gguf(vocab_path("bert-bge"))
    ids, dt = encode_timed(bert, big)
    assert dt < HANG_SECONDS and len(ids) > 1_000_000, f"{dt:.1f} s"
    # gemma-4 and gemma-3 merge a whole line at once: one long line costs more than many short ones
    line = " ".join(base.split())
    line = (line * (2_000_000 // len(line) + 1))[:2_000_000]
    for tok in (gemma3[1], gemma4):
        ids, dt = encode_timed(tok, line, add_bos=False)
        assert dt < HANG_SECONDS and tok.decode(ids) == line, f"{tok}: {dt:.1f} s"


def test_long_words_match_llama_tokenize(
    smollm2: Tokenizer, spm: Tokenizer, smollm2_path, gemma3, llama_tokenize
) -> None:
    """Words too long for the quadratic merge loop (and cut where no merge joins)."""
    rng = random.Random(5)
    texts: list[Callable[[], str]] = [
        lambda: "a" * 20000,
        lambda: " " * 5000 + "x",
        lambda: "".join(rng.choice("abcdefghij") for _ in range(20000)),
        lambda: "".join(chr(rng.randrange(0x4E00, 0x9FA5)) for _ in range(5000)),
        lambda: "\x00" * 3000,
    ]
    vocabs = [(smollm2, smollm2_path), (spm, vocab_path("llama-spm")), gemma3[::-1]]
    vocabs += [(Tokenizer.from_gguf(vocab_path(name)), vocab_path(name)) for name in ("gemma-4", "bert-bge")]
    for make in texts:
        text = make()
        for tok, path in vocabs:
            assert tok.encode(text, add_bos=False) == llama_tokenize(path, text, special=False), text[:20]
