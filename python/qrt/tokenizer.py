"""The tokenizer of a GGUF file, token for token what llama.cpp produces.

    tok = qrt.Tokenizer.from_gguf("model.gguf")     # or a qrt.gguf file, or its metadata dict
    ids = tok.encode("Hello world")                  # add_bos from the file, special tokens as text
    ids = tok.encode("<|im_start|>user", special=True)
    text = tok.decode(ids)
    stream = tok.detokenizer()                      # feed ids, get only whole characters back
    for i in ids:
        print(stream.feed(i), end="")
    print(stream.flush())

Four vocabulary kinds are read from ``tokenizer.ggml.*`` (``../shared/FORMATS.md`` §1.3):

* ``model == "llama"``, SentencePiece (SPM): spaces become ``▁``, one is put in front of the text
  (``add_space_prefix``), adjacent pieces are merged highest score first, and what no token covers falls
  back to the ``<0xHH>`` byte tokens.
* ``model == "gpt2"``, byte-level BPE: the text is cut into words by the pre-tokenizer that
  ``tokenizer.ggml.pre`` names (the regular expressions of llama.cpp's ``llm_tokenizer_bpe``), each word's
  bytes are spelled with GPT-2's byte alphabet and merged by ``tokenizer.ggml.merges`` rank.
* ``model == "gemma4"``, SentencePiece-style BPE: spaces become ``▁``, each line is merged by rank as
  characters (no byte alphabet), and what no token covers falls back to the ``<0xHH>`` byte tokens.
* ``model == "bert"``, WordPiece (WPM): the text is normalized and cut into words as BERT does, and each
  word is covered by the longest tokens first (:mod:`qrt.wordpiece`).

Other kinds (``t5``/UGM, ``rwkv``, ``plamo2``) and pre-tokenizers qrt does not implement are refused with
:class:`qrt.UnsupportedError` naming what is missing.

All follow ``src/llama-vocab.cpp`` and ``src/unicode.cpp`` of llama.cpp (the version vendored in
llama-cpp-python 0.3.36), including its quirks: control/user-defined tokens are cut out of the text
before tokenizing (user-defined ones even with ``special=False``), Unicode categories come from
llama.cpp's own tables (Unicode 15, :mod:`qrt.unicode_tables`) rather than from this Python's
``unicodedata``, the pre-tokenizer's hand-written splitters are reproduced rather than the regular
expressions they stand for, and the special tokens llama.cpp recognises by their text (``<|im_end|>``,
``<|eot_id|>``, ...) become control tokens. ``tests/test_tokenizer.py`` checks every llama.cpp vocabulary
test file and ``llama-tokenize`` on many texts.

Where llama.cpp's answer depends on the iteration order of a C++ ``unordered_map`` (which of several
end-of-turn candidates becomes ``eot_id``), the first candidate in llama.cpp's list wins here. A
special-token id outside the vocabulary, lists of different lengths or a malformed byte token raise
:class:`qrt.FormatError` (llama.cpp warns or falls back instead).

Pure Python; words are cached, so long texts cost about a microsecond per character.
"""

from __future__ import annotations

import codecs
import heapq
import itertools
import operator
import os
import re
from collections.abc import Iterable
from typing import Any

from ._C import FormatError, UnsupportedError
from .pretokenize import _EXPRS, _NO_BOS, _PRE, _Splitter
from .tokenizer_meta import _Meta
from .wordpiece import WordPiece

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

_MODELS = {
    "llama": "SentencePiece",
    "gpt2": "byte-level BPE",
    "gemma4": "SentencePiece-style BPE",
    "bert": "WordPiece",
}
_REFUSED_MODELS = {  # what llama.cpp reads and qrt does not
    "t5": "Unigram (UGM), as T5 and XLM-R use",
    "rwkv": "RWKV's trie tokenizer",
    "plamo2": "PLaMo-2's Aho-Corasick tokenizer",
    "hybriddna": "HybriDNA's k-mer BPE",
    "whitespace": "whitespace-split BPE",
    "no_vocab": "no vocabulary",
    "none": "no vocabulary",
}
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


def _space_cutter(tokens: list[str], merges: Iterable[str] | None) -> re.Pattern[str]:
    """The places where "▁"-spelled text can be cut into words that merge exactly as the whole text would
    (for ``re.split``): before each run of "▁", unless the character c before it can be joined to a "▁".

    A symbol that came to span such a cut was first made by joining a symbol ending in c to one starting
    with "▁": for SPM that merged symbol is a token containing "c▁", for BPE it is a merge "...c ▁...".
    Where no token (SPM) or merge (BPE) does that, no merge crosses the cut and the merges on either
    side do not depend on each other. Gemma 3 and 4 have one such c: ">", from their ">▁</" token.
    """
    space = _SPM_SPACE
    if merges is None:
        # one regex over the tokens joined by "\n"; "\n" itself, which the joining puts before every
        # "▁"-initial token, is looked for token by token
        glued = set(re.findall(f"([^{space}\n]){space}", "\n".join(tokens)))
        if any(map(operator.contains, tokens, itertools.repeat("\n" + space))):
            glued.add("\n")
    else:
        merges = list(merges)
        parts = "\n".join(merges).split(" " + space)
        glued = {p[-1] for p in parts[:-1] if p} - {space, "\n"}
        if any(map(operator.contains, merges, itertools.repeat("\n " + space))):
            glued.add("\n")
    return re.compile(f"(?<=[^{space}{''.join(map(re.escape, sorted(glued)))}])(?={space})")


# ---- the tokenizer ----


class Tokenizer:
    """A GGUF file's tokenizer (SPM, BPE or WordPiece), built by :meth:`from_gguf`.

    Attributes: ``n_vocab``; ``model`` (``tokenizer.ggml.model``: ``"llama"``, ``"gpt2"``, ``"gemma4"``
    or ``"bert"``) and ``pre`` (the pre-tokenizer name); ``bos_id``, ``eos_id``, ``eot_id``, ``eom_id``,
    ``unk_id``, ``pad_id``, ``sep_id`` (``None`` when the vocabulary has none); ``add_bos``, ``add_eos``,
    ``add_space_prefix`` (what the file asks for). Immutable, and safe to share between threads.
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
    sep_id: int | None
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
        if model not in _MODELS:
            what = f" ({_REFUSED_MODELS[model]})" if model in _REFUSED_MODELS else ""
            raise UnsupportedError(
                f"{P}model {model!r}{what} is not supported; qrt reads "
                + ", ".join(f"{k!r} ({v})" for k, v in _MODELS.items())
            )
        self.model = model
        spm = model == "llama"
        bpe = model in ("gpt2", "gemma4")

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
        self._text = list(tokens)
        if "" in self._text:
            self._text = [t if t else f"[EMPTY_{i}]" for i, t in enumerate(tokens)]
        self._id = dict(zip(self._text, range(n), strict=True))
        self._score = list(map(float, scores)) if scores is not None else None
        if types is None:
            attr = [ATTR_NORMAL] * n
        else:
            attr = list(map(_TYPE_TO_ATTR.get, types))
            if None in attr:
                attr = [ATTR_UNDEFINED if a is None else a for a in attr]
            for i in itertools.compress(range(n), map(TYPE_BYTE.__eq__, types)):
                if not re.fullmatch("<0x[0-9A-Fa-f]{2}>", self._text[i]):
                    raise FormatError(
                        f"{P}tokens[{i}]: byte token {self._text[i]!r} is not of the form <0xHH>"
                    )
        self._attr = attr

        # pre-tokenizer and flags
        pre = meta.string(P + "pre")
        self._splitter: _Splitter | None = None
        self._wordpiece: WordPiece | None = None
        self._spm_bpe = False
        self._ignore_merges, add_bos = False, True
        self.add_space_prefix = spm
        if not bpe:  # SPM and WPM have no pre-tokenizer (llama.cpp treats them all as "default")
            self.pre = pre or "default"
        else:
            # llama.cpp reads a "gemma4" vocabulary with the gemma4 pre-tokenizer whatever the file says
            self.pre = "gemma4" if model == "gemma4" else pre if pre else "default"
            if self.pre not in _PRE:
                raise UnsupportedError(
                    f"{P}pre {self.pre!r} is not supported; qrt knows {', '.join(sorted(_PRE))}"
                )
            exprs, self._ignore_merges, add_bos = _PRE[self.pre]
            self._splitter = _Splitter(_EXPRS[exprs])
            # SentencePiece-style BPE (gemma4): "▁" for spaces, characters (not GPT-2's byte alphabet) as
            # symbols, <0xHH> tokens for what no token covers
            self._spm_bpe = exprs == "gemma4"
        self._byte_level = bpe and not self._spm_bpe  # GPT-2's byte alphabet
        self.add_bos = add_bos
        self.add_eos = False
        v = meta.boolean(P + "add_space_prefix")
        if v is not None:
            self.add_space_prefix = v

        # BPE merges: "left right" -> rank (the first of duplicates wins)
        self._rank: dict[str, int] = {}
        if bpe:
            merges = meta.array(P + "merges", ("STRING",), (str,))
            if merges is None:
                raise FormatError(f"missing key {P}merges (needed by the {model!r} tokenizer)")
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
        elif model == "gpt2":
            ids.update(bos=None if self.pre in _NO_BOS else 11, eos=11)
        elif model == "bert":
            ids.update(bos=101, unk=100, sep=102, pad=0, mask=103)
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
        if self._spm_bpe:
            self.add_bos = True  # llama.cpp overrides the file for Gemma 4 (its PR 21500)
        if model == "bert":  # llama.cpp's WordPiece adds CLS ... SEP for add_special, whatever the keys say
            self.add_bos, self.add_eos = True, False

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
        self.sep_id = ids["sep"]
        if model == "bert":
            lowercase = meta.boolean(P + "normalizer.lowercase")
            lowercase = True if lowercase is None else lowercase
            strip_accents = meta.boolean(P + "normalizer.strip_accents")
            strip_accents = lowercase if strip_accents is None else strip_accents
            self._wordpiece = WordPiece(self._id, self.unk_id, lowercase, strip_accents)

        # tokens cut out of the text before tokenizing: longest first
        special_attr = ATTR_CONTROL | ATTR_USER_DEFINED | ATTR_UNKNOWN
        specials = list(itertools.compress(range(n), map(special_attr.__and__, attr)))
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

        # where "▁"-spelled text may be cut into words: built on first use (about 0.05 s for 262k tokens
        # or 500k merges), see _space_cutter
        self._space_cut: re.Pattern[str] | None = None
        self._junctions: set[tuple[str, str]] | None = None  # built by _cut, on the first long word
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
        recognised, as in llama.cpp. An empty text gives just the BOS/EOS tokens asked for. A WordPiece
        (BERT) vocabulary's BOS is its CLS token, and ``add_bos`` also puts its SEP token last, as
        llama.cpp does.
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
        if self._wordpiece is not None:
            self._encode_wpm(fragments, out)
            if add_bos:  # llama.cpp's add_special closes a WordPiece text with SEP
                if self.sep_id is None:
                    raise ValueError("this vocabulary has no SEP token to close the text (add_bos=True)")
                out.append(self.sep_id)
        elif self._splitter is None:
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

    def _encode_wpm(self, fragments: list[str | int], out: list[int]) -> None:
        wp = self._wordpiece
        assert wp is not None
        cache = self._cache
        for frag in fragments:
            if isinstance(frag, int):
                out.append(frag)
                continue
            for word in wp.words(frag):
                ids = cache.get(word)
                if ids is None:
                    ids = wp.word_ids(word)
                    if len(word) <= _LONG_WORD:
                        self._remember(word, ids)
                out.extend(ids)

    def _remember(self, key: str, ids: list[int]) -> None:
        if len(self._cache) >= _CACHE_LIMIT:
            self._cache.clear()
        self._cache[key] = ids

    def _encode_bpe(self, text: str, out: list[int]) -> None:
        cache = self._cache
        assert self._splitter is not None
        spm_bpe = self._spm_bpe
        if spm_bpe:
            text = text.replace(" ", _SPM_SPACE)
        words = self._splitter.split(text)
        if spm_bpe:  # a line is one word to llama.cpp; cut it where no merge joins (_space_cutter)
            words = [w for line in words for w in self._space_words(line)]
        for word in words:
            ids = cache.get(word)
            if ids is None:
                if spm_bpe:
                    ids = self._bpe_word(word)
                else:
                    ids = self._bpe_word(word.encode("utf-8").decode("latin-1").translate(_BYTES_TO_CHARS))
                if len(word) <= _LONG_WORD:
                    self._remember(word, ids)
            out.extend(ids)

    def _bpe_word(self, word: str) -> list[int]:
        vocab = self._id
        if self._ignore_merges and word in vocab:
            return [vocab[word]]
        if self._spm_bpe and word[0] == "\n" and word in vocab and not word.strip("\n"):
            return [vocab[word]]  # llama.cpp's fix for Gemma 4 (its PR 21343): a run of newlines is one token
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
            elif self._spm_bpe:  # each byte of the symbol as its <0xHH> token; llama.cpp drops misses
                for b in s.encode("utf-8"):
                    i = vocab.get(f"<0x{b:02X}>")
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
        if junctions is None:
            # built here rather than at load (~15 ms for 49k merges) as only words over _LONG_WORD characters
            # need it; threads that race here build equal sets.
            junctions = set()
            if self.model == "llama":
                for t in self._text:
                    junctions.update(itertools.pairwise(t))
            else:
                for m in self._rank:
                    p = m.find(" ", 1)
                    if p > 0 and p + 1 < len(m):
                        junctions.add((m[p - 1], m[p + 1]))
            self._junctions = junctions
        pieces = []
        start = 0
        for i in range(1, len(word)):
            if (word[i - 1], word[i]) not in junctions:
                pieces.append(word[start:i])
                start = i
        pieces.append(word[start:])
        return pieces

    def _space_words(self, text: str) -> list[str]:
        cut = self._space_cut
        if cut is None:  # threads that race here build equal patterns
            merges = None if self.model == "llama" else self._rank
            cut = self._space_cut = _space_cutter(self._text, merges)
        return cut.split(text)

    def _encode_spm(self, text: str, out: list[int]) -> None:
        words = self._space_words(text)
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
            if not self._byte_level:  # "▁" spells a space
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
        WordPiece (BERT) encoding normalizes the text: decoding gives its words (lowercased, punctuation
        apart) joined by single spaces, the first word's space removed likewise.
        ``ValueError`` for ids outside ``[0, n_vocab)``.
        """
        pieces = []
        strip = self.add_space_prefix or self._wordpiece is not None
        for tid in ids:
            i = self._check(tid)
            piece = self.token_to_piece(i, special=not skip_special)
            if strip and piece and not self._attr[i] & ATTR_CONTROL:
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
