"""Pre-tokenizers of byte-level BPE vocabularies: how llama.cpp cuts text into words before merging.

``tokenizer.ggml.pre`` names one; each is a list of regular expressions applied one after the other
(llama.cpp's ``llm_tokenizer_bpe``), evaluated over llama.cpp's own Unicode category table (Unicode 15,
:mod:`qrt.unicode_tables`) rather than this Python's ``unicodedata``; llama.cpp's hand-written splitters
(gpt2, llama3, qwen2, qwen35, newlines) are reproduced branch by branch.
"""

from __future__ import annotations

import re

from .unicode_tables import WHITESPACE, category

# ---- pre-tokenizers (llm_tokenizer_bpe): the regular expressions, applied one after the other ----

_RE_GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)"
_RE_LLAMA3 = (
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_RE_QWEN2 = (
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_RE_QWEN35 = (
    "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])|[^\\r\\n\\p{L}\\p{N}]?[\\p{L}\\p{M}]+|\\p{N}"
    "| ?[^\\s\\p{L}\\p{M}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_RE_NEWLINES = "[^\\n]+|[\\n]+"
# Tekken and GPT-4o: llama.cpp's stand-ins for \p{Lu}/\p{Ll} are lookaheads, "(?=[\p{L}])([^a-z])" = a letter
# that is not a-z; over the collapsed text every non-ASCII letter passes both, as in llama.cpp
_RE_TEKKEN = (
    "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+"
    "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*"
    "|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_CONTRACTION = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?"
_RE_GPT4O = (
    f"[^\\r\\n\\p{{L}}\\p{{N}}]?((?=[\\p{{L}}])([^a-z]))*((?=[\\p{{L}}])([^A-Z]))+{_CONTRACTION}"
    f"|[^\\r\\n\\p{{L}}\\p{{N}}]?((?=[\\p{{L}}])([^a-z]))+((?=[\\p{{L}}])([^A-Z]))*{_CONTRACTION}"
    "|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
)
_EXPRS = {
    "default": ("[\\p{P}\\$\\+<=>\\^~\\|]+", _RE_GPT2, "\\p{N}+", "[0-9][0-9][0-9]"),
    "llama3": (_RE_LLAMA3,),
    "deepseek-llm": (
        "[\r\n]",
        (
            "\\s?[A-Za-z\xb5\xc0-\xd6\xd8-\xf6\xf8-\u01ba\u01bc-\u01bf\u01c4-\u0293\u0295-\u02af\u0370-\u0373"
            "\u0376\u0377\u037b-\u037d\u037f\u0386\u0388-\u038a\u038c\u038e-\u03a1\u03a3-\u03f5\u03f7-\u0481"
            "\u048a-\u052f\u0531-\u0556\u10a0-\u10c5\u13a0-\u13f5\u13f8-\u13fd\u1c90-\u1cba\u1cbd-\u1cbf"
            "\u1d00-\u1d2b\u1d6b-\u1d77\u1d79-\u1d9a\u1e00-\u1f15\u1f18-\u1f1d\u1f20-\u1f45\u1f48-\u1f4d"
            "\u1f50-\u1f57\u1f59\u1f5b\u1f5d\u1f5f-\u1f7d\u1f80-\u1fb4\u1fb6-\u1fbc\u1fbe\u1fc2-\u1fc4\u1fc6-"
            "\u1fcc\u1fd0-\u1fd3\u1fd6-\u1fdb\u1fe0-\u1fec\u1ff2-\u1ff4\u1ff6-\u1ffc\u2102\u2107\u210a-\u2113"
            "\u2115\u2119-\u211d\u2124\u2126\u2128\u212a-\u212d\u212f-\u2134\u2139\u213c-\u213f\u2145-\u2149"
            "\u214e\u2183\u2184\u2c00-\u2c7b\u2c7e-\u2ce4\u2ceb-\u2cee\u2cf2\u2cf3\ua640-\ua66d\ua680-\ua69b"
            "\ua722-\ua76f\ua771-\ua787\ua78b-\ua78e\uab70-\uabbf\ufb00-\ufb06\ufb13-\ufb17\uff21-\uff3a"
            "\uff41-\uff5a\U00010400-\U0001044f\U000104b0-\U000104d3\U000104d8-\U000104fb\U00010c80-"
            "\U00010cb2\U00010cc0-\U00010cf2\U000118a0-\U000118df\U0001e900-\U0001e943]+"
        ),
        "\\s?[!-/:-~！-／：-～‘-‟　-。]+",
        "\\s+$",
        "[一-龥ࠀ-一가-퟿]+",
        "\\p{N}+",
    ),
    "deepseek-coder": ("[\r\n]", "\\s?\\p{L}+", "\\s?\\p{P}+", "[一-龥ࠀ-一가-퟿]+", "\\p{N}"),
    "falcon": ("[\\p{P}\\$\\+<=>\\^~\\|`]+", _RE_GPT2, "[0-9][0-9][0-9]"),
    "starcoder": ("\\p{N}", _RE_GPT2),
    "gpt2": (_RE_GPT2,),
    "qwen2": (_RE_QWEN2,),
    "qwen35": (_RE_QWEN35,),
    "gemma4": (_RE_NEWLINES,),
    "tekken": (_RE_TEKKEN,),
    "gpt4o": (_RE_GPT4O,),
    "deepseek-v3": (
        "\\p{N}{1,3}",
        "[一-龥\u3040-ゟ゠-ヿ]+",
        "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+"
        "| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ),
    "poro": (" ?[^(\\s|.,!?…。，、।۔،)]+",),
    "viking": (" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"),
}

# tokenizer.ggml.pre -> (expressions, ignore_merges, add_bos default), as llama_vocab::impl::load sets them
# (its clean_spaces only changes llama_detokenize, which qrt does not imitate). "gemma4" is SentencePiece-
# style BPE: spaces become "▁", words are lines, symbols are characters (not GPT-2's byte alphabet) and
# what no token covers falls back to <0xHH> tokens; llama.cpp forces add_bos on for it. The ChatGLM/GLM
# pre-tokenizers (_NO_BOS) also take away the default BOS id.
_PRE: dict[str, tuple[str, bool, bool]] = {}
for _names, _setting in (
    (("llama3", "llama-v3", "llama-bpe", "falcon3", "falcon-h1", "pixtral", "midm-2.0", "lfm2"),
     ("llama3", True, True)),
    (("dbrx", "smaug-bpe"), ("llama3", False, False)),
    (("gpt-2", "phi-2", "mpt", "olmo", "jais", "gigachat", "a.x-4.0", "mellum", "exaone4", "trillion",
      "granite-docling"), ("gpt2", False, False)),
    (("starcoder", "refact", "codeshell", "exaone", "minerva-7b", "mellum2", "smollm", "command-r"),
     ("starcoder", False, False)),
    (("qwen2", "deepseek-r1-qwen", "kormo", "f2llmv2", "hunyuan", "solar-open", "stablelm2", "megrez"),
     ("qwen2", False, False)),
    (("qwen35",), ("qwen35", False, False)),
    (("tekken",), ("tekken", True, True)),
    (("gpt-4o", "llama4", "kanana2", "talkie", "minimax-m2"), ("gpt4o", False, False)),
    (("deepseek-v3", "hunyuan-dense", "joyai-llm", "hy_v4"), ("deepseek-v3", False, False)),
    (("chatglm-bpe",), ("llama3", False, False)),
    (("glm4", "glm5"), ("llama3", True, False)),
    (("gemma4", "granite-embed-multi-311m"), ("gemma4", False, True)),
    (("poro-chat", "bloom", "gpt3-finnish"), ("poro", False, False)),
    *(((name,), (name, False, False)) for name in ("default", "deepseek-llm", "deepseek-coder", "falcon", "viking")),
):  # fmt: skip
    for _name in _names:
        _PRE[_name] = _setting
_NO_BOS = frozenset(("chatglm-bpe", "glm4", "glm5"))


class _CollapseTable(dict):
    """str.translate table for llama.cpp's "collapsed" text: ASCII stays, other code points become one
    character per class (0x0B whitespace, 0xD1 \\p{N}, 0xD2 \\p{L}, 0xD3 \\p{P}, 0xD4 \\p{M}, 0xD5
    \\p{S}, 0xD0 anything else). Filled on first use of each code point."""

    _BYTE = (0xD0, 0xD1, 0xD2, 0xD3, 0xD4, 0xD5, 0xD0, 0xD0)  # by unicode_tables class

    def __missing__(self, cp: int) -> int:
        if cp < 0x80:
            out = cp
        elif cp in WHITESPACE:
            out = 0x0B
        else:
            out = self._BYTE[category(cp)]
        self[cp] = out
        return out


_COLLAPSE = _CollapseTable()
_WIDE_WS = {cp: 0x0B for cp in WHITESPACE if cp >= 0x80}  # std::wregex sees non-ASCII spaces as \v

# The hand-written splitters of unicode.cpp, as expressions over the collapsed text. They follow
# the C++ branch by branch (which differs from the regular expressions they are named after).
_L, _N, _W = "A-Za-z\xd2", "0-9\xd1", "\t\n\x0b\x0c\r "
_WS_TAIL = f"|[{_W}]+(?![^{_W}])|[{_W}]|(?s:.)"
_O = f"[^{_L}{_N}{_W}]"
_LM = _L + "\xd4"  # qwen35: letters and combining marks run together
_CUSTOM = {
    _RE_GPT2: f"'(?:[stmd]|re|ve|ll)| ?[{_L}]+| ?[{_N}]+| ?{_O}+{_WS_TAIL}",
    _RE_LLAMA3: (
        f"'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|[^\r\n{_N}]?[{_L}]+|[{_N}]{{1,3}}| ?{_O}+[\r\n]*"
        f"|[{_W}]*[\r\n]+{_WS_TAIL}"
    ),
    _RE_QWEN2: (
        f"'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|[^\r\n{_N}]?[{_L}]+|[{_N}]| ?{_O}+[\r\n]*"
        f"|[{_W}]*[\r\n]+{_WS_TAIL}"
    ),
    _RE_QWEN35: (
        f"'(?:[sStTmMdD]|[rR][eE]|[vV][eE]|[lL][lL])|[^\r\n{_N}]?[{_LM}]+|[{_N}]| ?[^{_LM}{_N}{_W}]+[\r\n]*"
        f"|[{_W}]*[\r\n]+{_WS_TAIL}"
    ),
    _RE_NEWLINES: "[^\n]+|\n+",
}

# unicode_regex_split: \p{X} -> the collapsed class character plus its ASCII members
_UCAT = {"N": 1, "L": 2, "P": 3, "M": 4, "S": 5, "Lu": 2, "Ll": 2, "Lt": 2, "Lm": 2, "Lo": 2}
_UCAT_ASCII = {1: "0-9", 2: "A-Za-z", 3: "!-#%-*,-/:-;?-@\\[-\\]_\\{\\}", 4: "", 5: "\\$\\+<->^`\\|\\~"}


def _collapse_regex(expr: str) -> str:
    """The std::regex llama.cpp builds for an expression with \\p{..} classes (unicode.cpp)."""
    out: list[str] = []
    inside = False
    i = 0
    while i < len(expr):
        c = expr[i]
        if c == "[" and (i == 0 or expr[i - 1] != "\\"):
            out.append("[")
            inside = True
        elif inside and c == "]" and expr[i - 1] != "\\":
            out.append("]")
            inside = False
        elif expr.startswith("\\p{", i) and i + 3 < len(expr):
            close = expr.find("}", i + 3)
            cat = _UCAT.get(expr[i + 3 : close]) if 0 <= close <= i + 10 else None
            if cat is None:
                out.append(c)
            else:
                body = chr(0xD0 + cat) + _UCAT_ASCII[cat]
                out.append(body if inside else f"[{body}]")
                i = close
        else:
            out.append(c)
        i += 1
    return "".join(out)


def _end_anchor(expr: str) -> str:
    """ECMAScript's "$" (end of the subject) is Python's "\\Z"; only deepseek-llm ends with one."""
    return expr[:-1] + "\\Z" if expr.endswith("$") and not expr.endswith("\\$") else expr


class _Splitter:
    """unicode_regex_split for one pre-tokenizer: text -> words (slices of the text)."""

    def __init__(self, exprs: tuple[str, ...]) -> None:
        # (kind, compiled): kind 0 = hand-written splitter (matches tile the text), 1 = std::regex over
        # the collapsed text, 2 = std::wregex over the code points (matches and the gaps between them)
        self.steps: list[tuple[int, re.Pattern[str]]] = []
        for expr in exprs:
            if expr in _CUSTOM:
                self.steps.append((0, re.compile(_CUSTOM[expr])))
            elif "\\p{" in expr:
                self.steps.append((1, re.compile(_end_anchor(_collapse_regex(expr)), re.ASCII)))
            else:
                self.steps.append((2, re.compile(_end_anchor(expr), re.ASCII)))

    def split(self, text: str) -> list[str]:
        collapsed = wide = None
        spans = [(0, len(text))]
        for kind, pattern in self.steps:
            if kind == 2:
                subject = wide if wide is not None else (wide := text.translate(_WIDE_WS))
            else:
                subject = collapsed if collapsed is not None else (collapsed := text.translate(_COLLAPSE))
            out: list[tuple[int, int]] = []
            for s, e in spans:
                if kind == 0:
                    out.extend(m.span() for m in pattern.finditer(subject, s, e))
                    continue
                for m in pattern.finditer(subject, s, e):
                    a, b = m.span()
                    if a > s:
                        out.append((s, a))
                    out.append((a, b))
                    s = b
                if s < e:
                    out.append((s, e))
            spans = out
        return [text[s:e] for s, e in spans]


# GPT-2's byte alphabet (unicode.cpp unicode_byte_to_utf8_map)
