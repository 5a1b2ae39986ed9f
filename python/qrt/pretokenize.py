"""Pre-tokenizers of byte-level BPE vocabularies: how llama.cpp cuts text into words before merging.

``tokenizer.ggml.pre`` names one; each is a list of regular expressions applied one after the other
(llama.cpp's ``llm_tokenizer_bpe``), evaluated over llama.cpp's own Unicode category table (Unicode 15,
embedded here) rather than this Python's ``unicodedata``; llama.cpp's hand-written splitters for gpt2,
llama3 and qwen2 are reproduced branch by branch.
"""

from __future__ import annotations

import base64
import bisect
import re
import zlib

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
    "poro": (" ?[^(\\s|.,!?…。，、।۔،)]+",),
    "viking": (" ?[^(\\s|.,!?…。，、।۔،)]+", "\\p{N}"),
}

# tokenizer.ggml.pre -> (expressions, ignore_merges, add_bos default), as llama_vocab::impl::load sets them
# (its clean_spaces only changes llama_detokenize, which qrt does not imitate). "gemma4" is SentencePiece-
# style BPE: spaces become "▁", words are lines, symbols are characters (not GPT-2's byte alphabet) and
# what no token covers falls back to <0xHH> tokens; llama.cpp forces add_bos on for it.
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
    (("gemma4", "granite-embed-multi-311m"), ("gemma4", False, True)),
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
