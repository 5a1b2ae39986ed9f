"""The tokenizer of a checkpoint as GGUF ``tokenizer.*`` metadata, the way llama.cpp's converter writes it.

Two vocabularies, chosen as convert_hf_to_gguf.py chooses (``LlamaModel.set_vocab`` / ``Qwen2Model.set_vocab``):

- ``tokenizer.model`` present: SentencePiece (``_create_vocab_sentencepiece``): ``tokenizer.ggml.model =
  "llama"``, pre ``"default"``, tokens / scores / token types from the model's pieces, added tokens from
  added_tokens.json and tokenizer_config.json's ``added_tokens_decoder``, ``[PADn]`` up to config.json's
  vocab_size. The model file is parsed by :mod:`.spm_model` (no sentencepiece needed).
- otherwise ``tokenizer.json`` (BPE, ``get_vocab_base``): ``"gpt2"``, tokens with their types, merges, and
  ``tokenizer.ggml.pre`` found by hashing the tokenizer's output on llama.cpp's check text
  (:mod:`.pre_tokenizers`). Encoding uses the ``tokenizers`` library (Rust; it runs no code from the files).

Special token ids, add_bos/add_eos and the chat template come from tokenizer.json, tokenizer_config.json,
config.json, chat_template.jinja / chat_template.json exactly as gguf-py's ``SpecialVocab`` reads them (ported
below, with every value type-checked since the files are untrusted).
"""

from __future__ import annotations

import hashlib
import pathlib
from typing import Any

from qrt import FormatError, UnsupportedError

from .arch import LLAMA_FAMILY, Architecture
from .checkpoint import read_json, read_json_object
from .gguf_writer import ARRAY, BOOL, FLOAT32, INT32, KV, STRING, UINT32
from .pre_tokenizers import CHECK_TEXT, PRE_TOKENIZERS
from .spm_model import BYTE, CONTROL, UNKNOWN, UNUSED, read_pieces

# gguf TokenType
T_NORMAL, T_UNKNOWN, T_CONTROL, T_USER_DEFINED, T_UNUSED, T_BYTE = 1, 2, 3, 4, 5, 6

_SPECIAL_ID_KEYS = {
    "bos": "tokenizer.ggml.bos_token_id",
    "eos": "tokenizer.ggml.eos_token_id",
    "unk": "tokenizer.ggml.unknown_token_id",
    "sep": "tokenizer.ggml.seperator_token_id",
    "pad": "tokenizer.ggml.padding_token_id",
    "mask": "tokenizer.ggml.mask_token_id",
    "eot": "tokenizer.ggml.eot_token_id",
    "eom": "tokenizer.ggml.eom_token_id",
    "prefix": "tokenizer.ggml.prefix_token_id",
    "suffix": "tokenizer.ggml.suffix_token_id",
    "middle": "tokenizer.ggml.middle_token_id",
}
_ADD_KEYS = {
    "bos": "tokenizer.ggml.add_bos_token",
    "eos": "tokenizer.ggml.add_eos_token",
    "sep": "tokenizer.ggml.add_sep_token",
}


class Metadata:
    """An ordered key -> KV map with gguf-py's GGUFWriter semantics: re-adding a key overwrites it in place,
    empty strings and empty arrays are not written."""

    def __init__(self) -> None:
        self.kvs: dict[str, KV] = {}

    def add(self, kv: KV) -> None:
        if kv.type == STRING and kv.value == "":
            return
        if kv.type == ARRAY and len(kv.value) == 0:
            return
        self.kvs[kv.key] = kv

    def string(self, key: str, v: str) -> None:
        self.add(KV(key, STRING, v))

    def u32(self, key: str, v: int) -> None:
        self.add(KV(key, UINT32, v))

    def bool(self, key: str, v: bool) -> None:
        self.add(KV(key, BOOL, bool(v)))

    def array(self, key: str, etype: int, v: list) -> None:
        self.add(KV(key, ARRAY, v, etype))

    def remove(self, key: str) -> None:
        self.kvs.pop(key, None)


def does_token_look_special(t: str) -> bool:
    """``TextModel.does_token_look_special``."""
    return (
        t in ("<pad>", "<mask>", "<2mass>", "[@BOS@]")
        or (t.startswith("<|") and t.endswith("|>"))
        or (t.startswith("<｜") and t.endswith("｜>"))
        or (t.startswith("<unused") and t.endswith(">"))
    )


def _opt_json_object(path: pathlib.Path) -> dict[str, Any] | None:
    return read_json_object(path) if path.is_file() else None


# ---------------------------------------------------------------------------------------- entry point


def vocab_metadata(hf_dir: pathlib.Path, arch: Architecture, pre_override: str | None = None) -> list[KV]:
    """The ``tokenizer.*`` entries for the checkpoint in ``hf_dir``, in convert_hf_to_gguf.py's order."""
    md = Metadata()
    tok_cfg = _opt_json_object(hf_dir / "tokenizer_config.json")
    if arch.arch in LLAMA_FAMILY and tok_cfg is not None:
        aps = tok_cfg.get("add_prefix_space")
        if aps is not None:
            if not isinstance(aps, bool):
                raise FormatError(f"{hf_dir / 'tokenizer_config.json'}: add_prefix_space is not a boolean")
            md.bool("tokenizer.ggml.add_space_prefix", aps)

    if arch.arch == "phi3":  # Phi3MiniModel.set_vocab: Phi-4's GPT2Tokenizer, else SentencePiece
        if (tok_cfg or {}).get("tokenizer_class") == "GPT2Tokenizer":
            _bpe(hf_dir, arch, tok_cfg, md, pre_override)
        elif (hf_dir / "tokenizer.model").is_file():
            _phi3_sentencepiece(hf_dir, arch, tok_cfg, md)
        else:
            raise FormatError(
                f"{hf_dir}: a phi3 checkpoint needs tokenizer.model (or a GPT2Tokenizer tokenizer.json)"
            )
    elif (hf_dir / "tokenizer.model").is_file():
        _sentencepiece(hf_dir, arch, tok_cfg, md)
        if arch.arch == "gemma3":
            md.bool("tokenizer.ggml.add_space_prefix", False)
    elif (hf_dir / "tokenizer.json").is_file():
        _bpe(hf_dir, arch, tok_cfg, md, pre_override)
    else:
        raise FormatError(f"{hf_dir}: no tokenizer.json or tokenizer.model")

    if arch.arch in LLAMA_FAMILY:
        if arch.vocab_size == 32016:  # CodeLlama's infill tokens (LlamaModel.set_vocab)
            for typ, tid in (("prefix", 32007), ("suffix", 32008), ("middle", 32009), ("eot", 32010)):
                md.u32(_SPECIAL_ID_KEYS[typ], tid)
        if arch.vocab_size == 49152:  # "granite small models" in LlamaModel.set_vocab (SmolLM too)
            md.bool("tokenizer.ggml.add_bos_token", False)
    return list(md.kvs.values())


# ---------------------------------------------------------------------------------------- SentencePiece


def _sentencepiece(hf_dir: pathlib.Path, arch: Architecture, tok_cfg: dict | None, md: Metadata) -> None:
    pieces = read_pieces(hf_dir / "tokenizer.model")
    vocab_size = arch.vocab_size
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [T_UNUSED] * vocab_size
    for i, p in enumerate(pieces[:vocab_size]):
        t = T_NORMAL
        if p.type == UNKNOWN:
            t = T_UNKNOWN
        elif p.type == CONTROL:
            t = T_CONTROL
        elif p.type == UNUSED:
            t = T_UNUSED
        elif p.type == BYTE:
            t = T_BYTE
        tokens[i], scores[i], types[i] = p.piece.encode("utf-8"), p.score, t

    added_path = hf_dir / "added_tokens.json"
    if added_path.is_file():
        added = read_json_object(added_path)
        for key, tid in added.items():
            if not isinstance(tid, int) or isinstance(tid, bool) or tid < 0:
                raise FormatError(f"{added_path}: id of {key!r} is not a non-negative integer")
            if tid >= vocab_size:
                continue
            tokens[tid], scores[tid], types[tid] = key.encode("utf-8"), -1000.0, T_USER_DEFINED

    if tok_cfg is not None:
        decoder = tok_cfg.get("added_tokens_decoder", {})
        if not isinstance(decoder, dict):
            raise FormatError("tokenizer_config.json: added_tokens_decoder is not an object")
        for sid, data in decoder.items():
            try:
                tid = int(sid)
            except ValueError:
                raise FormatError(
                    f"tokenizer_config.json: added_tokens_decoder key {sid!r} is not an id"
                ) from None
            if not isinstance(data, dict) or not isinstance(data.get("content"), str):
                raise FormatError(f"tokenizer_config.json: added_tokens_decoder[{sid}] has no content string")
            if tid < 0 or tid >= vocab_size:
                continue
            token: str = data["content"]
            if data.get("special") or does_token_look_special(token):
                types[tid] = T_CONTROL
            else:
                token = token.replace("\u2581", " ")
                types[tid] = T_USER_DEFINED
            scores[tid] = -1000.0
            tokens[tid] = token.encode("utf-8")

    md.string("tokenizer.ggml.model", "llama")
    md.string("tokenizer.ggml.pre", "default")
    md.array("tokenizer.ggml.tokens", STRING, tokens)
    md.array("tokenizer.ggml.scores", FLOAT32, scores)
    md.array("tokenizer.ggml.token_type", INT32, types)
    SpecialVocab(hf_dir, load_merges=False, n_vocab=len(tokens)).write(md)


def _phi3_sentencepiece(hf_dir: pathlib.Path, arch: Architecture, tok_cfg: dict | None, md: Metadata) -> None:
    """``Phi3MiniModel.set_vocab``: like ``_create_vocab_sentencepiece`` but added tokens (added_tokens.json,
    tokenizer_config.json's added_tokens_decoder, then tokenizer.json's added_tokens) are USER_DEFINED, or
    CONTROL when marked special, kept as written."""
    pieces = read_pieces(hf_dir / "tokenizer.model")
    vocab_size = arch.vocab_size
    tokens = [f"[PAD{i}]".encode() for i in range(vocab_size)]
    scores = [-10000.0] * vocab_size
    types = [T_UNUSED] * vocab_size
    kinds = {UNKNOWN: T_UNKNOWN, CONTROL: T_CONTROL, UNUSED: T_UNUSED, BYTE: T_BYTE}
    if len(pieces) > vocab_size:
        raise FormatError(
            f"{hf_dir / 'tokenizer.model'}: {len(pieces)} pieces, more than vocab_size {vocab_size}"
        )
    for i, p in enumerate(pieces):
        tokens[i], scores[i], types[i] = p.piece.encode("utf-8"), p.score, kinds.get(p.type, T_NORMAL)

    def put(where: str, tid: Any, content: Any, special: bool) -> None:
        if not isinstance(tid, int) or isinstance(tid, bool) or not 0 <= tid < vocab_size:
            raise FormatError(f"{where}: token id {tid!r} is not in [0, vocab_size {vocab_size})")
        if not isinstance(content, str):
            raise FormatError(f"{where}: token {tid} has no content string")
        tokens[tid], scores[tid] = content.encode("utf-8"), -1000.0
        types[tid] = T_CONTROL if special else T_USER_DEFINED

    added_path = hf_dir / "added_tokens.json"
    if added_path.is_file():
        for key, tid in read_json_object(added_path).items():
            if isinstance(tid, int) and not isinstance(tid, bool) and tid >= vocab_size:
                continue
            put(str(added_path), tid, key, False)
    decoder = (tok_cfg or {}).get("added_tokens_decoder", {})
    if not isinstance(decoder, dict):
        raise FormatError("tokenizer_config.json: added_tokens_decoder is not an object")
    for sid, data in decoder.items():
        try:
            tid = int(sid)
        except ValueError:
            raise FormatError(
                f"tokenizer_config.json: added_tokens_decoder key {sid!r} is not an id"
            ) from None
        if not isinstance(data, dict):
            raise FormatError(f"tokenizer_config.json: added_tokens_decoder[{sid}] is not an object")
        put("tokenizer_config.json added_tokens_decoder", tid, data.get("content"), bool(data.get("special")))
    tj_path = hf_dir / "tokenizer.json"
    if tj_path.is_file():
        added = read_json_object(tj_path).get("added_tokens", [])
        if not isinstance(added, list) or not all(isinstance(a, dict) for a in added):
            raise FormatError(f"{tj_path}: added_tokens is not a list of objects")
        for a in added:
            put(f"{tj_path} added_tokens", a.get("id"), a.get("content"), bool(a.get("special")))

    md.string("tokenizer.ggml.model", "llama")
    md.string("tokenizer.ggml.pre", "default")
    md.array("tokenizer.ggml.tokens", STRING, tokens)
    md.array("tokenizer.ggml.scores", FLOAT32, scores)
    md.array("tokenizer.ggml.token_type", INT32, types)
    SpecialVocab(hf_dir, load_merges=False, n_vocab=len(tokens)).write(md)


# ---------------------------------------------------------------------------------------- BPE (gpt2)


def _is_llama_hf_bpe(tj: dict) -> bool:
    """``LlamaHfVocab``'s test: a SentencePiece-style BPE tokenizer.json (byte fallback, decoder Sequence)."""
    model = tj.get("model") or {}
    if not isinstance(model, dict):
        return False
    if (
        model.get("type") == "BPE"
        and model.get("ignore_merges", False)
        and not model.get("byte_fallback", True)
    ):
        return False  # Llama 3
    dec = tj.get("decoder") or {}
    return (
        model.get("type") == "BPE"
        and bool(model.get("byte_fallback", False))
        and isinstance(dec, dict)
        and dec.get("type") == "Sequence"
    )


def load_tokenizer(path: pathlib.Path):
    """``tokenizers.Tokenizer`` from tokenizer.json; FormatError when the library rejects it."""
    try:
        from tokenizers import Tokenizer
    except ImportError as e:  # pragma: no cover - a declared dependency
        raise UnsupportedError("converting a tokenizer.json needs the 'tokenizers' package") from e
    try:
        return Tokenizer.from_file(str(path))
    except Exception as e:  # the library raises its own Exception type
        raise FormatError(f"{path}: not a valid tokenizer.json: {e}") from None


def pre_tokenizer_name(tok) -> tuple[str | None, str]:
    """(llama.cpp's pre-tokenizer name or None, the hash) for a ``tokenizers.Tokenizer``.

    The tokenizer is tokenizer.json as written, which is what llama.cpp's table was made from. llama.cpp's
    converter hashes what transformers' AutoTokenizer makes of the checkpoint instead; the two agree on every
    checkpoint in the tests (Qwen2/Qwen3, Llama 3, SmolLM2/3, Granite, Gemma 3 tokenizer.json), but a
    transformers 5 tokenizer class that rebuilds itself from vocab and merges alone (``GPT2Tokenizer`` when no
    config.json picks another) would hash GPT-2's pre-tokenizer there, not the file's."""
    ids = tok.encode(CHECK_TEXT).ids
    h = hashlib.sha256(str(list(ids)).encode()).hexdigest()
    return PRE_TOKENIZERS.get(h), h


def _bpe(
    hf_dir: pathlib.Path, arch: Architecture, tok_cfg: dict | None, md: Metadata, pre_override: str | None
) -> None:
    path = hf_dir / "tokenizer.json"
    tj = read_json_object(path)
    if arch.arch in LLAMA_FAMILY and _is_llama_hf_bpe(tj):
        raise UnsupportedError(
            f"{path}: a SentencePiece-style BPE tokenizer.json without tokenizer.model is not supported; "
            "add the checkpoint's tokenizer.model"
        )
    tok = load_tokenizer(path)
    vocab: dict[str, int] = tok.get_vocab(with_added_tokens=True)
    vocab_size = arch.vocab_size
    if vocab and max(vocab.values()) >= vocab_size:
        raise FormatError(
            f"{path}: token id {max(vocab.values())} is not below config.json vocab_size {vocab_size}"
        )

    if pre_override is not None:
        pre = pre_override
    else:
        pre, h = pre_tokenizer_name(tok)
        if pre is None:
            raise UnsupportedError(
                f"{path}: llama.cpp does not know this BPE pre-tokenizer (check-text hash {h}); "
                "if you know which one it is, name it with --tokenizer-pre NAME"
            )

    reverse = {i: t for t, i in vocab.items()}
    added = tok.get_added_tokens_decoder()  # id -> AddedToken
    added_by_content = {a.content: a for a in added.values()}
    cleanup = bool((tok_cfg or {}).get("clean_up_tokenization_spaces", False))
    tokens: list[str] = []
    types: list[int] = []
    for i in range(vocab_size):
        if i not in reverse:
            tokens.append(f"[PAD{i}]")
            types.append(T_UNUSED)
            continue
        token = reverse[i]
        if token in added_by_content:
            info = added.get(i, added_by_content[token])
            if not info.normalized:
                token = tok.decode(tok.encode(token, add_special_tokens=False).ids, skip_special_tokens=False)
                if cleanup:
                    token = _clean_up_tokenization(token)
            if info.special or does_token_look_special(token):
                types.append(T_CONTROL)
            else:
                token = token.replace("\u2581", " ")
                types.append(T_USER_DEFINED)
        else:
            types.append(T_NORMAL)
        tokens.append(token)

    md.string("tokenizer.ggml.model", "gpt2")
    md.string("tokenizer.ggml.pre", pre)
    md.array("tokenizer.ggml.tokens", STRING, tokens)
    md.array("tokenizer.ggml.token_type", INT32, types)
    SpecialVocab(hf_dir, load_merges=True, tokenizer_json=tj).write(md)


def _clean_up_tokenization(s: str) -> str:
    """transformers' ``clean_up_tokenization``."""
    for a, b in (
        (" .", "."),
        (" ?", "?"),
        (" !", "!"),
        (" ,", ","),
        (" ' ", "'"),
        (" n't", "n't"),
        (" 'm", "'m"),
        (" 's", "'s"),
        (" 've", "'ve"),
        (" 're", "'re"),
    ):
        s = s.replace(a, b)
    return s


# ---------------------------------------------------------------------------------------- SpecialVocab


class SpecialVocab:
    """gguf-py's ``SpecialVocab`` (llama.cpp 0.3.36 vendor tree), reading the same files the same way."""

    def __init__(
        self,
        path: pathlib.Path,
        load_merges: bool = False,
        n_vocab: int | None = None,
        tokenizer_json: dict | None = None,
    ) -> None:
        self.path = path
        self.special_token_ids: dict[str, int] = {}
        self.add_special_token: dict[str, bool] = {}
        self.n_vocab = n_vocab
        self.load_merges = load_merges
        self.merges: list[str] = []
        self.chat_template: Any = None
        self.normalizer_lowercase: bool | None = None
        self.normalizer_strip_accents: bool | None = None
        self.special_token_types: tuple[str, ...] = ("bos", "eos", "unk", "sep", "pad", "cls", "mask")
        self._from_tokenizer_json(tokenizer_json)
        self._from_config_json()
        if self.load_merges and not self.merges:
            self._merges_txt()

    def write(self, md: Metadata) -> None:
        if self.merges:
            md.array("tokenizer.ggml.merges", STRING, self.merges)
        for typ, tid in self.special_token_ids.items():
            if typ in _SPECIAL_ID_KEYS:  # gguf-py has no writer for cls: skipped with a warning there
                md.u32(_SPECIAL_ID_KEYS[typ], tid)
        for typ, value in self.add_special_token.items():
            if typ in _ADD_KEYS:
                md.bool(_ADD_KEYS[typ], value)
        if self.chat_template is not None:
            _write_chat_template(md, self.chat_template)
        if self.normalizer_lowercase is not None:
            md.bool("tokenizer.ggml.normalizer.lowercase", self.normalizer_lowercase)
        if self.normalizer_strip_accents is not None:
            md.bool("tokenizer.ggml.normalizer.strip_accents", self.normalizer_strip_accents)

    def _set_special_token(self, typ: str, tid: Any) -> None:
        if not isinstance(tid, int) or isinstance(tid, bool):
            return
        if tid < 0:
            raise FormatError(f"{self.path}: invalid id {tid} for special token {typ}")
        if tid >= 1 << 32:
            raise FormatError(f"{self.path}: id {tid} for special token {typ} does not fit 32 bits")
        if self.n_vocab is None or tid < self.n_vocab:
            self.special_token_ids.setdefault(typ, tid)

    def _merges_txt(self) -> None:
        f = self.path / "merges.txt"
        if not f.is_file():
            return
        lines = f.read_text(encoding="utf-8", errors="strict").splitlines()
        if lines and lines[0].strip().startswith("#"):
            lines = lines[1:]
        merges = []
        for line in lines:
            parts = line.strip().split(None, 3)
            if len(parts) == 2:
                merges.append(f"{parts[0]} {parts[1]}")
        self.merges = merges

    def _parse_normalizer(self, norm: Any) -> None:
        if not isinstance(norm, dict):
            return
        t = norm.get("type")
        if t == "Lowercase":
            self.normalizer_lowercase = True
        elif t == "StripAccents":
            self.normalizer_strip_accents = True
        elif t == "BertNormalizer":
            if isinstance(norm.get("lowercase"), bool):
                self.normalizer_lowercase = norm["lowercase"]
            if isinstance(norm.get("strip_accents"), bool):
                self.normalizer_strip_accents = norm["strip_accents"]
        elif t == "Sequence":
            for n in norm.get("normalizers") or []:
                self._parse_normalizer(n)

    def _from_tokenizer_json(self, tokenizer: dict | None) -> None:
        tj_path = self.path / "tokenizer.json"
        if tokenizer is None and tj_path.is_file():
            tokenizer = read_json_object(tj_path)
        if tokenizer is not None:
            if self.load_merges:
                model = tokenizer.get("model") or {}
                merges = model.get("merges") if isinstance(model, dict) else None
                if isinstance(merges, list) and merges:
                    if all(isinstance(m, str) for m in merges):
                        self.merges = list(merges)
                    elif all(
                        isinstance(m, list) and len(m) == 2 and all(isinstance(s, str) for s in m)
                        for m in merges
                    ):
                        self.merges = [
                            " ".join(
                                "".join(chr(ord(c) + 256) if c == " " else c for c in part) for part in pair
                            )
                            for pair in merges
                        ]
                    else:
                        raise FormatError(f"{tj_path}: unknown merges format")
            if norm := tokenizer.get("normalizer"):
                self._parse_normalizer(norm)
            added_tokens = tokenizer.get("added_tokens", [])
            if not isinstance(added_tokens, list):
                raise FormatError(f"{tj_path}: added_tokens is not a list")
            added_tokens = [a for a in added_tokens if isinstance(a, dict)]
        else:
            added_tokens = []
        tc_path = self.path / "tokenizer_config.json"
        cfg = read_json_object(tc_path) if tc_path.is_file() else None
        if tokenizer:
            self._post_processor(tokenizer, cfg)
        if not cfg:
            return
        self._chat_template(cfg)
        for typ in self.special_token_types:
            add_entry = cfg.get(f"add_{typ}_token")
            if isinstance(add_entry, bool):
                self.add_special_token.setdefault(typ, add_entry)
            entry = cfg.get(f"{typ}_token")
            if isinstance(entry, str):
                content = entry
            elif isinstance(entry, dict) and isinstance(entry.get("content"), str):
                content = entry["content"]
            else:
                continue
            tid = next((a.get("id") for a in added_tokens if a.get("content") == content), None)
            self._set_special_token(typ, tid)

    def _post_processor(self, tokenizer: dict, cfg: dict | None) -> None:
        """The crude TemplateProcessing / RobertaProcessing / ByteLevel parse of gguf-py, verbatim in effect."""
        c = cfg or {}
        special_bos, special_cls = c.get("bos_token"), c.get("cls_token")
        special_eos, special_sep = c.get("eos_token"), c.get("sep_token")
        if not special_bos and special_cls and cfg:
            cfg["bos_token"] = special_bos = special_cls
        if not special_eos and special_sep and cfg:
            cfg["eos_token"] = special_eos = special_sep
        post = tokenizer.get("post_processor")
        if not isinstance(post, dict):
            return
        procs = post.get("processors", [post])
        if not isinstance(procs, list):
            return
        for proc in procs:
            if not isinstance(proc, dict):
                continue
            ptype = proc.get("type")
            if ptype == "ByteLevel":
                self.add_special_token.setdefault("bos", False)
                self.add_special_token.setdefault("eos", False)
            elif ptype == "RobertaProcessing":
                self.add_special_token.update(bos=True, eos=True, sep=True)
                if not special_cls and cfg:
                    special_cls = _first(proc.get("cls"), special_bos)
                    cfg["cls_token"] = special_cls
                if not special_sep and cfg:
                    special_sep = _first(proc.get("sep"), special_eos)
                    cfg["sep_token"] = special_sep
            elif ptype == "TemplateProcessing":
                single = proc.get("single") or []
                pair = proc.get("pair") or []
                if not isinstance(single, list) or not isinstance(pair, list):
                    continue
                first = last = None
                if len(single) > 1:
                    if first := _special_id(single[0]):
                        if not cfg:
                            special_bos = first
                        elif first not in (special_bos, special_cls):
                            if not special_bos:
                                cfg["bos_token"] = special_bos = first
                            if not special_cls:
                                cfg["cls_token"] = special_cls = first
                        self.add_special_token["bos"] = first in (special_bos, special_cls)
                    if last := _special_id(single[-1]):
                        if not cfg:
                            special_eos = last
                        elif last != special_eos:
                            if "eot" not in self.special_token_types:
                                self.special_token_types += ("eot",)
                                cfg["eot_token"] = special_eos
                            elif "eom" not in self.special_token_types:
                                self.special_token_types += ("eom",)
                                cfg["eom_token"] = special_eos
                            cfg["eos_token"] = special_eos = last
                        self.add_special_token["eos"] = last == special_eos
                if pair:
                    start = 1 if first and _special_id(pair[0]) == first else 0
                    stop = -1 if last and _special_id(pair[-1]) == last else None
                    pair = pair[slice(start, stop)]
                    if pair:
                        a = pair[0].get("Sequence", {}).get("id") if isinstance(pair[0], dict) else None
                        b = pair[-1].get("Sequence", {}).get("id") if isinstance(pair[-1], dict) else None
                        if a == "A" and b == "B" and (mid := pair[1:-1]):
                            add_sep = False
                            if entry := _special_id(mid[0]):
                                if entry in (special_sep, special_eos) and not last:
                                    add_sep = True
                            if len(mid) == 2 and (entry := _special_id(mid[1])):
                                if entry in (special_sep, special_eos):
                                    add_sep = True
                            self.add_special_token["sep"] = add_sep
                            if add_sep and not special_sep and cfg:
                                cfg["sep_token"] = special_eos

    def _chat_template(self, cfg: dict) -> None:
        alt: Any = None
        jinja = self.path / "chat_template.jinja"
        cjson = self.path / "chat_template.json"
        if jinja.is_file():
            alt = _read_text(jinja)
            extra = sorted((self.path / "additional_chat_templates").glob("*.jinja"))
            if extra:
                alt = [{"name": "default", "template": alt}] + [
                    {"name": p.stem, "template": _read_text(p)} for p in extra
                ]
        elif cjson.is_file():
            data = read_json(cjson)
            alt = data.get("chat_template") if isinstance(data, dict) else None
        tmpl = cfg.get("chat_template", alt)
        if tmpl is None or isinstance(tmpl, (str, list)):
            self.chat_template = tmpl

    def _from_config_json(self) -> None:
        p = self.path / "config.json"
        if not p.is_file():
            return
        config = read_json_object(p)
        text_cfg = config.get("text_config") if isinstance(config.get("text_config"), dict) else {}
        for typ in self.special_token_types:
            tid = config.get(f"{typ}_token_id")
            if tid is None:
                tid = text_cfg.get(f"{typ}_token_id")
            self._set_special_token(typ, tid)


def _first(v: Any, default: Any) -> Any:
    return v[0] if isinstance(v, list) and v else default


def _special_id(item: Any) -> Any:
    if not isinstance(item, dict):
        return None
    st = item.get("SpecialToken")
    return st.get("id") if isinstance(st, dict) else None


def _read_text(p: pathlib.Path) -> str:
    try:
        return p.read_bytes().decode("utf-8")
    except UnicodeDecodeError as e:
        raise FormatError(f"{p}: not UTF-8 (byte {e.start})") from None


def _write_chat_template(md: Metadata, value: Any) -> None:
    """``GGUFWriter.add_chat_template``: a string, or a list of {name, template} (named extras + default)."""
    if isinstance(value, str):
        md.string("tokenizer.chat_template", value)
        return
    default = None
    names: list[str] = []
    for choice in value:
        if not isinstance(choice, dict):
            continue
        name = "".join(c if c.isascii() and c.isalnum() else "_" for c in str(choice.get("name", "")))
        template = choice.get("template")
        if name and isinstance(template, str):
            if name == "default":
                default = template
            else:
                names.append(name)
                md.string(f"tokenizer.chat_template.{name}", template)
    if names:
        md.array("tokenizer.chat_templates", STRING, sorted(set(names)))
    if default is not None:
        md.string("tokenizer.chat_template", default)
