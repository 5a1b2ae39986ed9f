"""The tokenizer of a GGUF file, token for token what llama.cpp produces.

    tok = qrt.Tokenizer.from_gguf("model.gguf")     # or a qrt.gguf file, or its metadata dict
    ids = tok.encode("Hello world")                  # add_bos from the file, special tokens as text
    ids = tok.encode("<|im_start|>user", special=True)
    text = tok.decode(ids)
    stream = tok.detokenizer()                      # feed ids, get only whole characters back
    for i in ids:
        print(stream.feed(i), end="")
    print(stream.flush())

Two vocabulary kinds are read from ``tokenizer.ggml.*`` (``../shared/FORMATS.md`` §1.3):

* ``model == "llama"``, SentencePiece (SPM): spaces become ``▁``, one is put in front of the text
  (``add_space_prefix``), adjacent pieces are merged highest score first, and what no token covers falls
  back to the ``<0xHH>`` byte tokens.
* ``model == "gpt2"``, byte-level BPE: the text is cut into words by the pre-tokenizer that
  ``tokenizer.ggml.pre`` names (the regular expressions of llama.cpp's ``llm_tokenizer_bpe``), each word's
  bytes are spelled with GPT-2's byte alphabet and merged by ``tokenizer.ggml.merges`` rank.

Both follow ``src/llama-vocab.cpp`` and ``src/unicode.cpp`` of llama.cpp (the version vendored in
llama-cpp-python 0.3.36), including its quirks: control/user-defined tokens are cut out of the text
before tokenizing (user-defined ones even with ``special=False``), Unicode categories come from
llama.cpp's own table (Unicode 15, embedded below) rather than from this Python's ``unicodedata``, the
pre-tokenizer's hand-written splitters are reproduced rather than the regular expressions they stand
for, and the special tokens llama.cpp recognises by their text (``<|im_end|>``, ``<|eot_id|>``, ...)
become control tokens. ``tests/test_tokenizer.py`` checks every llama.cpp vocabulary test file and
``llama-tokenize`` on many texts.

Where llama.cpp's answer depends on the iteration order of a C++ ``unordered_map`` (which of several
end-of-turn candidates becomes ``eot_id``), the first candidate in llama.cpp's list wins here. A
special-token id outside the vocabulary, lists of different lengths or a malformed byte token raise
:class:`qrt.FormatError` (llama.cpp warns or falls back instead).

Pure Python; words are cached, so long texts cost about a microsecond per character.
"""

from __future__ import annotations

import base64
import bisect
import codecs
import heapq
import itertools
import operator
import os
import re
import zlib
from collections.abc import Iterable, Mapping
from typing import Any

from ._C import FormatError, UnsupportedError

__all__ = ["Detokenizer", "Tokenizer"]

# ---- token types (GGUF ``tokenizer.ggml.token_type``) and llama.cpp's token attributes ----

TYPE_NORMAL, TYPE_UNKNOWN, TYPE_CONTROL, TYPE_USER_DEFINED, TYPE_UNUSED, TYPE_BYTE = 1, 2, 3, 4, 5, 6

ATTR_UNDEFINED = 0
ATTR_UNKNOWN = 1 << 0
ATTR_UNUSED = 1 << 1
ATTR_NORMAL = 1 << 2
ATTR_CONTROL = 1 << 3
ATTR_USER_DEFINED = 1 << 4
ATTR_BYTE = 1 << 5
ATTR_LSTRIP = 1 << 7
ATTR_RSTRIP = 1 << 8

_TYPE_TO_ATTR = {
    TYPE_NORMAL: ATTR_NORMAL,
    TYPE_UNKNOWN: ATTR_UNKNOWN,
    TYPE_CONTROL: ATTR_CONTROL,
    TYPE_USER_DEFINED: ATTR_USER_DEFINED,
    TYPE_UNUSED: ATTR_UNUSED,
    TYPE_BYTE: ATTR_BYTE,
}
_ATTR_SPECIAL = ATTR_UNKNOWN | ATTR_CONTROL  # hidden by decode(skip_special=True)

# ---- special tokens llama.cpp finds by their text (llama_vocab::impl::load) ----

_EOT_TEXTS = (
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<end_of_turn>", "<|endoftext|>", "<|end_of_text|>", "<EOT>",
    "_<EOT>", "[EOT]", "<｜end▁of▁sentence｜>", "<end_of_utterance>",
)  # fmt: skip
_EOM_TEXTS = ("<|eom_id|>",)
_FIM_TEXTS = {
    "fim_pre": ("<|fim_prefix|>", "<fim-prefix>", "<fim_prefix>", "<｜fim▁begin｜>", "<PRE>", "▁<PRE>",
                "<|code_prefix|>", "<|prefix|>"),
    "fim_suf": ("<|fim_suffix|>", "<fim-suffix>", "<fim_suffix>", "<｜fim▁hole｜>", "<SUF>", "▁<SUF>",
                "<|code_suffix|>", "<|suffix|>"),
    "fim_mid": ("<|fim_middle|>", "<fim-middle>", "<fim_middle>", "<｜fim▁end｜>", "<MID>", "▁<MID>",
                "<|code_middle|>", "<|middle|>"),
    "fim_pad": ("<|fim_pad|>", "<fim-pad>", "<fim_pad>", "<PAD>", "[PAD]"),
    "fim_rep": ("<|fim_repo|>", "<|repo_name|>", "<fim-repo>", "<REPO>", "<reponame>"),
    "fim_sep": ("<|file_sep|>",),
}  # fmt: skip
_EOG_TEXTS = frozenset((
    "<|eot_id|>", "<|im_end|>", "<|end|>", "<|return|>", "<|call|>", "<|flush|>", "<|calls|>",
    "<end_of_turn>", "<|endoftext|>", "</s>", "<|eom_id|>", "<EOT>", "_<EOT>", "[EOT]", "[EOS]",
    "<|end_of_text|>", "<end_of_utterance>", "<eos>", "<turn|>", "<|tool_response>",
    "<｜end▁of▁sentence｜>", "[e~[",
))  # fmt: skip
_ALWAYS_RENDERED = frozenset(("<|channel|>", "<|message|>", "<|start|>", "<|constrain|>"))  # gpt-oss

# key suffix under ``tokenizer.ggml.`` -> attribute name; later keys override earlier ones (as llama.cpp)
_ID_KEYS = (
    ("bos_token_id", "bos"), ("eos_token_id", "eos"), ("eot_token_id", "eot"), ("eom_token_id", "eom"),
    ("unknown_token_id", "unk"), ("seperator_token_id", "sep"), ("padding_token_id", "pad"),
    ("mask_token_id", "mask"), ("fim_pre_token_id", "fim_pre"), ("fim_suf_token_id", "fim_suf"),
    ("fim_mid_token_id", "fim_mid"), ("fim_pad_token_id", "fim_pad"), ("fim_rep_token_id", "fim_rep"),
    ("fim_sep_token_id", "fim_sep"), ("prefix_token_id", "fim_pre"), ("suffix_token_id", "fim_suf"),
    ("middle_token_id", "fim_mid"),
)  # fmt: skip

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
    "poro": (" ?[^(\\s|.,!?…。，、।۔،)]+",),
    "viking": (" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"),
}

# tokenizer.ggml.pre -> (expressions, ignore_merges, add_bos default), as llama_vocab::impl::load sets them
# (its clean_spaces only changes llama_detokenize, which qrt does not imitate)
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
    (("poro-chat", "bloom", "gpt3-finnish"), ("poro", False, False)),
    *(((name,), (name, False, False)) for name in ("default", "deepseek-llm", "deepseek-coder", "falcon", "viking")),
):  # fmt: skip
    for _name in _names:
        _PRE[_name] = _setting

# ---- Unicode categories, as llama.cpp's unicode-data.cpp has them ----
# Runs of code points with one class (0 other, 1 \p{N}, 2 \p{L}, 3 \p{P}, 4 \p{M}, 5 \p{S}): varint
# (start delta * 8 + class), zlib, base85. tests/test_tokenizer.py regenerates it from llama.cpp's source.
_UNICODE_CLASSES = (
    "c-n1N4`>_L8Q=Hb$$t0UyXEwBYA+`V&L^oTvON^Vfr}D@;y>WH30!0w(j*<OJA;=k;ASm&Z3B+%47JI?crKVU1=UGM8q%Sd6tpY>"
    "leS>82E1kg)1;6M2h_D2ZkK{-Q?@539V?XYc=zt^d++=6zTfY=ADtjEZL8MQ7mkRV5Yu$L3A(1U-x0l87jmLEg;5KusHqXW3ivJH"
    "t*ASEq&26beiDj}t!RiivZT<^LWX6)Hv;$x<GBiAg$OPCXJUjc{u$vK4@qGi%izY1-$Ep;h0Oy@v+t0%q0cq(^#<gg&a-BiyTL+C"
    "XrqGTeOLzZVPHRdu5gm{hBcd+y0`=`@8vd6g~sqhutE&?r9S}7?C$t0SpfbjxkPO~4LsK$3ijb7SeO@vr~rD%Y{!&lOvAKU7jq4a"
    "8o@$1xK(JJnHFZ;M|wtGOvY0Q!?dC-=OEkGFQOXjx3EV>`ba4yH_LO2TY|l48o@rD<#>kwpS_1Fb$iwh>!G;;R5SfDRT<kt$2R25"
    "unpU?2NS8N#T~)g*mH;TE$O^8Qw1D{`UcX5v%^4XM@T#VcC{UO1RtsR4~;z3$r@PKK$HE<t$X?*5$m5^ow-ppCmnc0rb_xa1@;2S"
    "V3_ctERo@i=QsOihz(6rG`%G5=v4cR^Q7)z3Z*8)el&ZTNFn2%>I<hx^vF?7kA^qD1zeY+B}5*}Byk3~XxYchMDNlwdZ;xnx4A>+"
    "K<&%6xe1%wW-jXfa)_(_Nl_ul(oEbYSToTP@`U8LNaRo=|9c+8MJjKziW%8e2KzYp*-AiULU`{94ND+v*066Y8|{2<2Atm05HWgZ"
    "z!(}qiyK2{=>)O07;+Z$H~U)-T3q$Bi-BB=n5o;YD1|lPgNeZ;iv$a+AX5A95_btU?~6^7E079_3)JT|FxC3%oR%@y;3Q2yAg@Ax"
    "V_$p!o+k}%--koN!U`GfbkCA9L^k>M#=;pQdUDG|MDkq`ejXCohO+3=lf0-@f+8a$mqT90SC=&q=P0(LE{mewc0@+E4_iXcjT5i{"
    "oo|75SQ~sr9zt+yM5qH114m*d@^XnB6}qd70lBa>D<LT*iBF4Uy4BUyQ#9CWB;R{H`5A=oZny#a-iCYh3*}vS?}_KWf)h0S4Gg@#"
    "@m=_aCMQU^@_2Zh=+_(G`EfR38_iAHcW1Lea~gYI7Fw@|-xEGTz9!mn5*mDsEP=il7_R8IU>sz!gW5o7Slzt^TZ48;H?R^g!y<w="
    "1L&le39bh8V6t$Wl*!Y09M(V`_yW4sqsPd=AIZ_8dHggjDzzHMs<ijtM0{r0$Dm-$!2=TKefR*xMWsKK>Annm#MK5duB6wC^cqY8"
    "Mlpd`pf$lZZgsL}sM958=oEAY{kCb?Vryusg%#)&S777-)*$LWAio+x)sKr7+*?RVw2byfu}cCd<X#0?sxuU2y^0peMeG_x#KC3}"
    "H3}JdbeZ*Zd_wRA!#&;D$>o}C`Ep>W3T}zcO)0C7iKT{l;ti$J90zbjqKK{Y%DsjX6yf$`;UbJHqC(qQkqjp$z;By?S)#q5>6WHz"
    "hMU4Fi~kTiYq`aMz3zgrVxI0DHpCz<0nUQleN2o_ljX){tEom}yKc}|AZ+O)G4?I_oUmzD1G_|DRwW4^BTny|fIC_G5=o_3L6gvR"
    "JJr-jWL2$)LR@(*kd87vfctQ4oy;EHPbt+<Zv_hZYmmVuf<5Pzj9_?|NGfBZ3Yyw+6@s}n*x6I0b+0z1FG40FeQah$Wq~${;5Y=o"
    "B$Ael7T1w1CGlk?)Sm4<xlbX4pMq5+-M9iqQ?u7wp^;n#f*rH4sbdPZJI{E<z@l=Q&eB7(bX)c;ad!F_#TrOYc!&w(j$(fb1=ev1"
    "o{FdDVFu#PyzDXF98_VqeSyB@HQfg^1>5a@P7WAaf*o3fZGM}5mW-->E*GrhG|}W|dy*cBC*nL<&``6~GVGrM*>IkfKxSXkb!w9N"
    "=wsOjWN?$;=6sL#xp+wXbv{qG7^W9ZeatS<X^3y?Gc=CYmoQ1^WUy?fKaUTHXFhou62>%{q$j{;Px)I$PQe{=NMoD*dAbbdSktpH"
    "^sZ|w<Rv!Oa7>wnp}cGdd1>r@$Z*4SIr5OT%b!>B;)>iar%BHH7<l1*lH>6%*1`ARClg?6sY8p(c7J|D4_+X7-l3)T)?{U`f>{AR"
    "dR?ize~DzGj2k@1rF+?od^1T>@;S}6`SYRE5I1&6M2z4J@uJN?_vZub*Y7|Let}EdE;g(+XsP{W{`a$RqQN*c-YH?(HulliP)%Ha"
    "U0ICFx~KzgO_4k-jW)BwB;DTX#&x#WS3Nuj=~*Z?A5;DW&iRIAC4sz3ceo=(B_!iHXdGGi59z4v`H1vf{)6JICwo@B$o>H`)kmC;"
    "yVl$kEH|V_?4Fz-mIX2Sd$LN*D(opY-lLTb162}Up{>zOSGU=IACfit4$LSq_Ls&oJX40@YGBtQTxRD2SXJb|jjSi(;GjHf4@-({"
    "LU}p43-aV8oNW)wVQ~ZS#`>Sp503fZYjo1NN)xZqF8z5ulzKVE$BNx+kj-4sJzfISlX;Z@q$de0Hr7Zq=LLP)t&8S;V6VaoY4TfH"
    "F}4Ct{`^loX;@+$&+*`H?>afF<XDp*H(uHN2~}gN^Ec(6L>-&v4ldWZfJspLa)s<LS>`_MG}fc{-%0(co<(O}&zJ2qZOPb5@D??`"
    "GVYROxnX!LJf@H7=g8i}CH#Qa;IMq%({8+wxuq_&Crc0;iB%huYk{q@i5?wHF3@g&>jLRsg|P9JQVtJ~hDTyO?W;uhx<}>0p7vQ)"
    "uhO@PKc64}msuoB6C}H;i>VqpQo2cBTzz8t6s$H)|8)5hNss@AOy0Up#y9*I-wjtQ"
)
_WHITESPACE = frozenset(
    [*range(0x09, 0x0E), 0x20, 0x85, 0xA0, 0x1680, *range(0x2000, 0x200B), 0x2028, 0x2029, 0x202F, 0x205F,
     0x3000]
)  # fmt: skip


def _class_runs() -> tuple[list[int], list[int]]:
    data = zlib.decompress(base64.b85decode(_UNICODE_CLASSES))
    starts: list[int] = []
    classes: list[int] = []
    cp = v = shift = 0
    for b in data:
        v |= (b & 0x7F) << shift
        shift += 7
        if b & 0x80:
            continue
        cp += v >> 3
        starts.append(cp)
        classes.append(v & 7)
        v = shift = 0
    return starts, classes


class _CollapseTable(dict):
    """str.translate table for llama.cpp's "collapsed" text: ASCII stays, other code points become one
    character per class (0x0B whitespace, 0xD1 \\p{N}, 0xD2 \\p{L}, 0xD3 \\p{P}, 0xD4 \\p{M}, 0xD5
    \\p{S}, 0xD0 anything else). Filled on first use of each code point."""

    _runs: tuple[list[int], list[int]] | None = None

    def __missing__(self, cp: int) -> int:
        if cp < 0x80:
            out = cp
        elif cp in _WHITESPACE:
            out = 0x0B
        else:
            if _CollapseTable._runs is None:
                _CollapseTable._runs = _class_runs()
            starts, classes = _CollapseTable._runs
            out = 0xD0 + classes[bisect.bisect_right(starts, cp) - 1]
        self[cp] = out
        return out


_COLLAPSE = _CollapseTable()
_WIDE_WS = {cp: 0x0B for cp in _WHITESPACE if cp >= 0x80}  # std::wregex sees non-ASCII spaces as \v

# The three hand-written splitters of unicode.cpp, as expressions over the collapsed text. They follow
# the C++ branch by branch (which differs from the regular expressions they are named after).
_L, _N, _W = "A-Za-z\xd2", "0-9\xd1", "\t\n\x0b\x0c\r "
_WS_TAIL = f"|[{_W}]+(?![^{_W}])|[{_W}]|(?s:.)"
_O = f"[^{_L}{_N}{_W}]"
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
def _byte_alphabet() -> list[str]:
    keep = [*range(0x21, 0x7F), *range(0xA1, 0xAD), *range(0xAE, 0x100)]
    table = [""] * 256
    for b in keep:
        table[b] = chr(b)
    n = 0
    for b in range(256):
        if not table[b]:
            table[b] = chr(256 + n)
            n += 1
    return table


_BYTE_CHARS = _byte_alphabet()
_BYTES_TO_CHARS = {b: c for b, c in enumerate(_BYTE_CHARS)}  # latin-1 decoded bytes -> alphabet
_CHARS_TO_BYTE = {c: b for b, c in enumerate(_BYTE_CHARS)}

_SPM_SPACE = "▁"
_LONG_WORD = 48  # longer words are merged with a heap (O(n log n)), and split where no token spans
_CACHE_LIMIT = 1 << 18


def _merge_heap(sym: list[str], priority: Any) -> list[str]:
    """Merge adjacent symbols while some pair has a priority (an int, smaller first; leftmost first among
    equals), as llama.cpp's SPM and BPE sessions do with their work queues, in O(n log n).

    A queue entry is ``priority * n + left``. It is stale when the pair now starting at ``left`` has
    another priority (or none); such entries are skipped, and the pair's own entry carries its priority.
    """
    n = len(sym)
    nxt = list(range(1, n + 1))
    prv = list(range(-1, n - 1))
    heap = []
    for i in range(n - 1):
        p = priority(sym[i], sym[i + 1])
        if p is not None:
            heap.append(p * n + i)
    heapq.heapify(heap)
    pop, push = heapq.heappop, heapq.heappush
    while heap:
        p, left = divmod(pop(heap), n)
        right = nxt[left]
        if not sym[left] or right >= n or priority(sym[left], sym[right]) != p:
            continue
        sym[left] += sym[right]
        sym[right] = ""
        after = nxt[left] = nxt[right]
        if after < n:
            prv[after] = left
            q = priority(sym[left], sym[after])
            if q is not None:
                push(heap, q * n + left)
        before = prv[left]
        if before >= 0:
            q = priority(sym[before], sym[left])
            if q is not None:
                push(heap, q * n + before)
    return [s for s in sym if s]


# ---- metadata ----


class _Meta:
    """Typed access to tokenizer.ggml.* in a GGUF file's fields, or in a plain metadata dict."""

    _INT_TYPES = frozenset("UINT8 INT8 UINT16 INT16 UINT32 INT32 UINT64 INT64".split())

    def __init__(self, source: Any) -> None:
        fields = getattr(source, "fields", None)
        if fields is not None:  # qrt.gguf.GGUFFile: GGUF value types are known
            self.values = {k: f.value for k, f in fields.items()}
            self.types = {k: (f.type, f.element_type) for k, f in fields.items()}
        elif isinstance(source, Mapping):
            self.values = dict(source)
            self.types = {}
        else:
            raise TypeError(
                f"expected a path, a qrt.gguf file or a metadata mapping, not {type(source).__name__}"
            )

    def _fail(self, key: str, what: str) -> FormatError:
        return FormatError(f"{key}: {what}")

    def string(self, key: str, default: str | None = None) -> str | None:
        if key not in self.values:
            return default
        v = self.values[key]
        if not isinstance(v, str) or self.types.get(key, ("STRING",))[0] != "STRING":
            raise self._fail(key, f"expected a string, got {self._describe(key)}")
        return v

    def boolean(self, key: str) -> bool | None:
        if key not in self.values:
            return None
        v = self.values[key]
        if not isinstance(v, bool) or self.types.get(key, ("BOOL",))[0] != "BOOL":
            raise self._fail(key, f"expected a bool, got {self._describe(key)}")
        return v

    def integer(self, key: str) -> int | None:
        if key not in self.values:
            return None
        v = self.values[key]
        t = self.types.get(key, ("INT64",))[0]
        if isinstance(v, bool) or not isinstance(v, int) or t not in self._INT_TYPES:
            raise self._fail(key, f"expected an integer, got {self._describe(key)}")
        return v

    def array(self, key: str, element_types: tuple[str, ...], py_types: tuple[type, ...]) -> list | None:
        if key not in self.values:
            return None
        v = self.values[key]
        t = self.types.get(key)
        if not isinstance(v, (list, tuple)) or (
            t is not None and (t[0] != "ARRAY" or t[1] not in element_types)
        ):
            raise self._fail(
                key, f"expected an array of {'/'.join(element_types)}, got {self._describe(key)}"
            )
        if t is None:  # plain dict: check the elements
            for i, x in enumerate(v):
                if isinstance(x, bool) or not isinstance(x, py_types):
                    raise self._fail(
                        f"{key}[{i}]", f"expected {'/'.join(element_types)}, got {type(x).__name__}"
                    )
        return list(v)

    def _describe(self, key: str) -> str:
        t = self.types.get(key)
        if t is not None:
            return f"{t[0]} of {t[1]}" if t[0] == "ARRAY" else t[0]
        return type(self.values[key]).__name__


# ---- the tokenizer ----


class Tokenizer:
    """A GGUF file's tokenizer (SPM or byte-level BPE), built by :meth:`from_gguf`.

    Attributes: ``n_vocab``; ``model`` (``"llama"`` or ``"gpt2"``) and ``pre`` (the pre-tokenizer name);
    ``bos_id``, ``eos_id``, ``eot_id``, ``eom_id``, ``unk_id``, ``pad_id`` (``None`` when the vocabulary
    has none); ``add_bos``, ``add_eos``, ``add_space_prefix`` (what the file asks for). Immutable, and safe
    to share between threads.
    """

    n_vocab: int
    model: str
    pre: str
    bos_id: int | None
    eos_id: int | None
    eot_id: int | None
    eom_id: int | None
    unk_id: int | None
    pad_id: int | None
    add_bos: bool
    add_eos: bool
    add_space_prefix: bool

    @classmethod
    def from_gguf(cls, source: str | os.PathLike[str] | Any) -> Tokenizer:
        """Read the tokenizer of a GGUF file.

        ``source`` is a path (vocabulary-only files work), an open :mod:`qrt.gguf` file, or its
        ``metadata`` dict (so a model loader can reuse what it already parsed). Raises
        :class:`qrt.FormatError` naming the key for missing or inconsistent tokenizer metadata and
        :class:`qrt.UnsupportedError` for a tokenizer model or pre-tokenizer qrt does not implement.
        """
        if isinstance(source, (str, os.PathLike)):
            from . import gguf

            with gguf.open(source) as f:
                return cls(_Meta(f))
        return cls(_Meta(source))

    def __init__(self, meta: _Meta) -> None:
        P = "tokenizer.ggml."
        model = meta.string(P + "model")
        if model is None:
            raise FormatError(f"missing key {P}model")
        if model not in ("llama", "gpt2"):
            raise UnsupportedError(
                f"{P}model {model!r} is not supported; qrt reads 'llama' (SentencePiece) and 'gpt2' (BPE)"
            )
        self.model = model
        spm = model == "llama"

        tokens = meta.array(P + "tokens", ("STRING",), (str,))
        if tokens is None:
            raise FormatError(f"missing key {P}tokens")
        n = len(tokens)
        if n == 0:
            raise FormatError(f"{P}tokens: the vocabulary is empty")
        scores = meta.array(P + "scores", ("FLOAT32", "INT32"), (int, float))
        types = meta.array(P + "token_type", ("INT32",), (int,))
        for key, arr in (("scores", scores), ("token_type", types)):
            if arr is not None and len(arr) != n:
                raise FormatError(f"{P}{key}: {len(arr)} entries, but {P}tokens has {n}")
        self.n_vocab = n

        # token texts (llama.cpp renames empty ones), text -> id (the last of duplicates wins), attributes
        self._text = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self._id = {t: i for i, t in enumerate(self._text)}
        self._score = [float(s) for s in scores] if scores is not None else None
        if types is None:
            attr = [ATTR_NORMAL] * n
        else:
            attr = [_TYPE_TO_ATTR.get(t, ATTR_UNDEFINED) for t in types]
            for i, t in enumerate(types):
                if t == TYPE_BYTE and not re.fullmatch("<0x[0-9A-Fa-f]{2}>", self._text[i]):
                    raise FormatError(
                        f"{P}tokens[{i}]: byte token {self._text[i]!r} is not of the form <0xHH>"
                    )
        self._attr = attr

        # pre-tokenizer and flags
        pre = meta.string(P + "pre")
        if spm:
            self.pre = pre or "default"
            self._ignore_merges, add_bos = False, True
            self._splitter = None
            self.add_space_prefix = True
        else:
            self.pre = pre if pre else "default"
            if self.pre not in _PRE:
                raise UnsupportedError(
                    f"{P}pre {self.pre!r} is not supported; qrt knows {', '.join(sorted(_PRE))}"
                )
            exprs, self._ignore_merges, add_bos = _PRE[self.pre]
            self._splitter = _Splitter(_EXPRS[exprs])
            self.add_space_prefix = False
        self.add_bos = add_bos
        self.add_eos = False
        v = meta.boolean(P + "add_space_prefix")
        if v is not None:
            self.add_space_prefix = v

        # BPE merges: "left right" -> rank (the first of duplicates wins)
        self._rank: dict[str, int] = {}
        self._junctions: set[tuple[str, str]] = set()
        if not spm:
            merges = meta.array(P + "merges", ("STRING",), (str,))
            if merges is None:
                raise FormatError(f"missing key {P}merges (needed by the 'gpt2' tokenizer)")
            rank = self._rank
            for i, m in enumerate(merges):
                if m not in rank:
                    rank[m] = i

        # special token ids: llama.cpp's defaults, then the file's keys
        ids: dict[str, int | None] = dict.fromkeys(
            ("bos", "eos", "eot", "eom", "unk", "sep", "pad", "mask", *_FIM_TEXTS)
        )
        if spm:
            ids.update(bos=1, eos=2, unk=0)
        else:
            ids.update(bos=11, eos=11)
        for name, v in ids.items():
            if v is not None and v >= n:
                ids[name] = None
        for key, name in _ID_KEYS:
            v = meta.integer(P + key)
            if v is None:
                continue
            if not 0 <= v < n:
                raise FormatError(f"{P}{key} = {v} is outside the vocabulary [0, {n})")
            ids[name] = v
        for key in ("add_bos_token", "add_eos_token"):
            v = meta.boolean(P + key)
            if v is not None:
                setattr(self, key[:-6], v)

        # special tokens recognised by their text; they become control tokens
        def find(texts: tuple[str, ...]) -> int | None:
            for t in texts:
                if t in self._id:
                    i = self._id[t]
                    attr[i] |= ATTR_CONTROL
                    return i
            return None

        for name, texts in (("eot", _EOT_TEXTS), ("eom", _EOM_TEXTS), *_FIM_TEXTS.items()):
            if ids[name] is None:
                ids[name] = find(texts)
        for text, i in self._id.items():
            if attr[i] & ATTR_CONTROL and not attr[i] & ATTR_UNUSED and "unused" in text:
                attr[i] |= ATTR_UNUSED
        eog = {ids[k] for k in ("fim_pad", "fim_rep", "fim_sep") if ids[k] is not None}
        for text in _EOG_TEXTS:
            i = self._id.get(text)
            if i is not None:
                eog.add(i)
                attr[i] |= ATTR_CONTROL
        for text in _ALWAYS_RENDERED:
            if text in self._id:
                attr[self._id[text]] = ATTR_USER_DEFINED
        eog.update(ids[k] for k in ("eos", "eot", "eom") if ids[k] is not None)
        eog_texts = {self._text[i] for i in eog}
        if "<|end|>" in eog_texts and (
            {"<|return|>", "<|call|>"} <= eog_texts or {"<|calls|>", "<|flush|>"} <= eog_texts
        ):
            end = self._id["<|end|>"]
            eog.discard(end)
            attr[end] = ATTR_USER_DEFINED
        if "</s>" in eog_texts and ({"<|tool_response>", "<|plamo:eos|>"} & eog_texts):
            s = self._id["</s>"]
            eog.discard(s)
            attr[s] = ATTR_NORMAL
        self._eog = frozenset(eog)
        self.bos_id, self.eos_id, self.eot_id = ids["bos"], ids["eos"], ids["eot"]
        self.eom_id, self.unk_id, self.pad_id = ids["eom"], ids["unk"], ids["pad"]

        # tokens cut out of the text before tokenizing: longest first
        specials = [i for i in range(n) if attr[i] & (ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN)]
        specials.sort(key=lambda i: -len(self._text[i].encode("utf-8")))
        name = meta.string("general.name", "") or ""
        if "phi-3" in name.lower() or "phi3" in name.lower():
            for i in specials:
                attr[i] |= ATTR_RSTRIP
            for text, on in (("</s>", True), ("<unk>", False), ("<s>", False), ("<|endoftext|>", False)):
                if text in self._id:
                    i = self._id[text]
                    attr[i] = attr[i] | ATTR_RSTRIP if on else attr[i] & ~ATTR_RSTRIP
        self._specials = specials
        self._special_prefixes = {self._text[i][:2] for i in specials}

        # where a merge can never join two characters, a long word may be cut into independent pieces
        if spm:
            for t in self._text:
                self._junctions.update(itertools.pairwise(t))
            self._spm_word_split = not any(b == _SPM_SPACE != a for a, b in self._junctions)
        else:
            for m in self._rank:
                p = m.find(" ", 1)
                if p > 0 and p + 1 < len(m):
                    self._junctions.add((m[p - 1], m[p + 1]))
        self._pieces: list[bytes | None] = [None] * n
        self._cache: dict[str, list[int]] = {}
        self._score_order: list[int] | None = None

    # ---- encoding ----

    def encode(
        self, text: str, add_bos: bool | None = None, special: bool = False, *, add_eos: bool | None = None
    ) -> list[int]:
        """Token ids of ``text``, as llama.cpp's ``llama_tokenize`` gives them.

        ``add_bos``/``add_eos``: put the BOS/EOS token first/last; ``None`` does what the file asks for
        (``tokenizer.ggml.add_bos_token``/``add_eos_token``, else llama.cpp's default for the vocabulary).
        ``special=True`` turns the text of control tokens (``<|im_start|>``, ``<s>``, ...) into those
        tokens; with ``False`` they are tokenized as ordinary text. User-defined tokens are always
        recognised, as in llama.cpp. An empty text gives just the BOS/EOS tokens asked for.
        Raises ``TypeError`` for a non-``str``, ``UnicodeEncodeError`` for lone surrogates and
        ``ValueError`` when BOS/EOS is asked for but the vocabulary has none.
        """
        if not isinstance(text, str):
            raise TypeError(f"encode() takes a str, not {type(text).__name__}")
        text.encode("utf-8")  # UnicodeEncodeError for lone surrogates, before any work
        add_bos = self.add_bos if add_bos is None else bool(add_bos)
        add_eos = self.add_eos if add_eos is None else bool(add_eos)
        out: list[int] = []
        if add_bos:
            if self.bos_id is None:
                raise ValueError("this vocabulary has no BOS token (add_bos=True)")
            out.append(self.bos_id)
        fragments: list[str | int] = self._partition(text, special) if text else []
        if self._splitter is None:
            prev_special = True
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                    prev_special = True
                    continue
                if self.add_space_prefix and prev_special:
                    frag = " " + frag
                self._encode_spm(frag.replace(" ", _SPM_SPACE), out)
                prev_special = False
        else:
            for frag in fragments:
                if isinstance(frag, int):
                    out.append(frag)
                else:
                    self._encode_bpe(frag, out)
        if add_eos:
            if self.eos_id is None:
                raise ValueError("this vocabulary has no EOS token (add_eos=True)")
            out.append(self.eos_id)
        return out

    def _partition(self, text: str, special: bool) -> list[str | int]:
        """tokenizer_st_partition: cut special tokens (longest first) out of the text fragments."""
        frags: list[str | int] = [text]
        prefixes = {p for p in self._special_prefixes if p in text}
        for tid in self._specials:
            tok = self._text[tid]
            attr = self._attr[tid]
            if (
                (not special and attr & (ATTR_CONTROL | ATTR_UNKNOWN))
                or tok[:2] not in prefixes
                or tok not in text
            ):
                continue
            out: list[str | int] = []
            for frag in frags:
                if isinstance(frag, int) or tok not in frag:
                    out.append(frag)
                    continue
                start = 0
                while True:
                    at = frag.find(tok, start)
                    if at < 0:
                        break
                    left = frag[start:at]
                    if attr & ATTR_LSTRIP:
                        left = left.rstrip(" \t\n\v\f\r")
                    if left:
                        out.append(left)
                    out.append(tid)
                    start = at + len(tok)
                    if attr & ATTR_RSTRIP:
                        while start < len(frag) and frag[start] in " \t\n\v\f\r":
                            start += 1
                if start < len(frag):
                    out.append(frag[start:])
            frags = out
        return frags

    def _remember(self, key: str, ids: list[int]) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = ids

    def _encode_bpe(self, text: str, out: list[int]) -> None:
        cache = self._cache
        assert self._splitter is not None
        for word in self._splitter.split(text):
            ids = cache.get(word)
            if ids is None:
                ids = self._bpe_word(word.encode("utf-8").decode("latin-1").translate(_BYTES_TO_CHARS))
                if len(word) <= _LONG_WORD:
                    self._remember(word, ids)
            out.extend(ids)

    def _bpe_word(self, word: str) -> list[int]:
        vocab = self._id
        if self._ignore_merges and word in vocab:
            return [vocab[word]]
        if len(word) > _LONG_WORD:
            symbols = []
            for piece in self._cut(word):
                symbols.extend(self._bpe_merge_heap(piece))
        else:
            symbols = self._bpe_merge(list(word))
        ids: list[int] = []
        for s in symbols:
            i = vocab.get(s)
            if i is not None:
                ids.append(i)
            else:  # llama.cpp looks each byte of the symbol up as a one-byte token, and drops misses
                ids.extend(vocab[c] for c in s if c < "\x80" and c in vocab)
        return ids

    def _bpe_merge(self, symbols: list[str]) -> list[str]:
        rank = self._rank
        while len(symbols) > 1:
            best, best_rank = -1, len(rank)
            for i in range(len(symbols) - 1):
                r = rank.get(symbols[i] + " " + symbols[i + 1])
                if r is not None and r < best_rank:
                    best, best_rank = i, r
            if best < 0:
                break
            symbols[best : best + 2] = [symbols[best] + symbols[best + 1]]
        return symbols

    def _bpe_merge_heap(self, word: str) -> list[str]:
        """llm_tokenizer_bpe_session::tokenize for one long word: lowest rank first, then leftmost."""
        rank = self._rank
        return _merge_heap(list(word), lambda a, b: rank.get(a + " " + b))

    def _cut(self, word: str) -> list[str]:
        """Cut a long word between characters that no merge or token ever joins; the pieces are then
        merged independently with the same result."""
        junctions = self._junctions
        pieces = []
        start = 0
        for i in range(1, len(word)):
            if (word[i - 1], word[i]) not in junctions:
                pieces.append(word[start:i])
                start = i
        pieces.append(word[start:])
        return pieces

    _SPM_WORDS = re.compile(f"{_SPM_SPACE}+[^{_SPM_SPACE}]*|[^{_SPM_SPACE}]+")

    def _encode_spm(self, text: str, out: list[int]) -> None:
        # No token has "▁" after another character (checked at load), so the text can be cut before
        # each word's "▁"s: the pieces merge exactly as the whole would.
        words = self._SPM_WORDS.findall(text) if self._spm_word_split else [text]
        cache = self._cache
        for word in words:
            ids = cache.get(word)
            if ids is None:
                ids = []
                for piece in self._cut(word) if len(word) > _LONG_WORD else (word,):
                    self._spm_piece(piece, ids)
                if len(word) <= _LONG_WORD:
                    self._remember(word, ids)
            out.extend(ids)

    def _spm_piece(self, text: str, out: list[int]) -> None:
        """llm_tokenizer_spm_session::tokenize: merge the adjacent pair that is the highest-scoring token
        (leftmost on ties), then byte-fallback what is not a token."""
        vocab, score = self._id, self._score
        sym = list(text)
        n = len(sym)
        if n <= _LONG_WORD:
            while len(sym) > 1:
                best, best_score = -1, 0.0
                for i in range(len(sym) - 1):
                    t = vocab.get(sym[i] + sym[i + 1])
                    if t is not None:
                        sc = score[t] if score is not None else 0.0
                        if best < 0 or sc > best_score:
                            best, best_score = i, sc
                if best < 0:
                    break
                sym[best : best + 2] = [sym[best] + sym[best + 1]]
        else:
            if self._score_order is None:  # token -> position of its score, highest first
                ranked = sorted(set(score or [0.0]), reverse=True)
                at = {v: i for i, v in enumerate(ranked)}
                self._score_order = [at[v] for v in score] if score is not None else [0] * self.n_vocab
            order = self._score_order

            def priority(a: str, b: str) -> int | None:
                t = vocab.get(a + b)
                return None if t is None else order[t]

            sym = _merge_heap(sym, priority)
        for s in sym:
            t = vocab.get(s)
            if t is not None:
                out.append(t)
                continue
            for b in s.encode("utf-8"):
                t = vocab.get(f"<0x{b:02X}>")
                if t is None and b < 0x80:
                    t = vocab.get(chr(b))
                if t is None:
                    t = self.unk_id
                if t is None:
                    raise ValueError(
                        f"byte 0x{b:02X} has no token in this vocabulary (and there is no <unk>)"
                    )
                out.append(t)

    # ---- decoding ----

    def _check(self, tid: Any) -> int:
        try:
            i = operator.index(tid)
        except TypeError:
            raise TypeError(f"token ids must be integers, not {type(tid).__name__}") from None
        if not 0 <= i < self.n_vocab:
            raise ValueError(f"token id {i} is outside the vocabulary [0, {self.n_vocab})")
        return i

    def token_to_piece(self, token_id: int, special: bool = True) -> bytes:
        """The bytes token ``token_id`` stands for (llama.cpp's ``llama_token_to_piece``): a byte token
        is one byte, possibly part of a UTF-8 character. Control and unknown tokens give their text, or
        ``b""`` when ``special`` is false. ``ValueError`` for ids outside ``[0, n_vocab)``."""
        i = self._check(token_id)
        if not special and self._attr[i] & _ATTR_SPECIAL:
            return b""
        piece = self._pieces[i]
        if piece is None:
            piece = self._pieces[i] = self._make_piece(i)
        return piece

    def _make_piece(self, i: int) -> bytes:
        text, attr = self._text[i], self._attr[i]
        if attr & (_ATTR_SPECIAL | ATTR_USER_DEFINED):
            return text.encode("utf-8")
        if attr & ATTR_NORMAL:
            if self.model == "llama":
                return text.replace(_SPM_SPACE, " ").encode("utf-8")
            out = bytearray()
            for c in text:  # llama_decode_text
                b = _CHARS_TO_BYTE.get(c)
                if b is not None:
                    out.append(b)
                else:
                    out += b"[UNK_BYTE_0x" + c.encode("utf-8").hex().encode() + text.encode("utf-8") + b"]"
            return bytes(out)
        if attr & ATTR_BYTE:
            return bytes([int(text[3:5], 16)])
        return b""  # unused / undefined tokens

    def decode(self, ids: Iterable[int], skip_special: bool = False) -> str:
        """The text of ``ids``: their pieces joined, invalid UTF-8 replaced by U+FFFD.

        ``skip_special`` leaves out control and unknown tokens (BOS, ``<|im_end|>``, ...). Where encoding
        puts a space in front of the text (SPM, ``add_space_prefix``) the first text token loses that one
        space again, so ``decode(encode(t), skip_special=True) == t``. (llama.cpp's ``llama_detokenize``
        also strips spaces before punctuation for some vocabularies; qrt never changes the text.)
        ``ValueError`` for ids outside ``[0, n_vocab)``.
        """
        pieces = []
        strip = self.add_space_prefix
        for tid in ids:
            i = self._check(tid)
            piece = self.token_to_piece(i, special=not skip_special)
            if strip and not self._attr[i] & ATTR_CONTROL:
                strip = False
                if piece[:1] == b" ":
                    piece = piece[1:]
            pieces.append(piece)
        return b"".join(pieces).decode("utf-8", errors="replace")

    def detokenizer(self, skip_special: bool = False) -> Detokenizer:
        """A streaming decoder for generated tokens (see :class:`Detokenizer`)."""
        return Detokenizer(self, skip_special)

    # ---- about tokens ----

    def is_eog(self, token_id: int) -> bool:
        """Whether ``token_id`` ends generation: EOS, EOT, EOM and the other end tokens llama.cpp
        recognises (``<|endoftext|>``, ``<|im_end|>``, ``<|eot_id|>``, FIM pad/repo/sep, ...)."""
        return token_id in self._eog

    @property
    def eog_ids(self) -> frozenset[int]:
        """Every token id for which :meth:`is_eog` is true."""
        return self._eog

    def token_text(self, token_id: int) -> str:
        """The vocabulary entry of ``token_id`` as stored (``"▁the"``, ``"Ġthe"``, ``"<|im_end|>"``)."""
        return self._text[self._check(token_id)]

    def token_id(self, text: str) -> int | None:
        """The id of the vocabulary entry ``text``, or ``None``."""
        return self._id.get(text)

    def is_special(self, token_id: int) -> bool:
        """Whether ``token_id`` is a control or unknown token (left out by ``skip_special``)."""
        return bool(self._attr[self._check(token_id)] & _ATTR_SPECIAL)

    def __repr__(self) -> str:
        return (
            f"<qrt.Tokenizer {self.model}/{self.pre} n_vocab={self.n_vocab} bos={self.bos_id} "
            f"eos={self.eos_id} eot={self.eot_id} add_bos={self.add_bos}>"
        )


class Detokenizer:
    """Turns a stream of token ids into text without ever splitting a character.

    ``feed(id)`` returns the text that is now complete (possibly ``""`` while a multi-byte character is
    still arriving byte by byte); ``flush()`` returns what is left at the end of the stream, with an
    incomplete character as U+FFFD, and starts over. Invalid UTF-8 comes out as U+FFFD. The pieces are
    joined as they are: unlike :meth:`Tokenizer.decode` no leading space is removed, which is what a
    continuation of a prompt needs; otherwise the outputs joined equal ``decode(ids)``.
    """

    def __init__(self, tokenizer: Tokenizer, skip_special: bool = False) -> None:
        self._tok = tokenizer
        self._special = not skip_special
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def feed(self, token_id: int) -> str:
        """Add one token; return the characters it completes. ``ValueError`` for an invalid id."""
        return self._utf8.decode(self._tok.token_to_piece(token_id, special=self._special))

    def flush(self) -> str:
        """End the stream: return what is pending (an incomplete character as U+FFFD) and reset."""
        out = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return out
