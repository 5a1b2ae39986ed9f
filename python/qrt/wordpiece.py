"""WordPiece (BERT) vocabularies, as llama.cpp's ``llm_tokenizer_wpm`` reads them.

llama.cpp's converter spells a word-initial piece with a leading ``▁`` (instead of marking the others
with ``##``). The text is normalized and cut into words by BertNormalizer's rules over llama.cpp's own
Unicode tables: whitespace separates words; NUL, U+FFFD and control characters are dropped; with
``strip_accents`` each code point is first replaced by its base character and combining marks are
dropped; with ``lowercase`` letters are lowered one code point to one; punctuation, ASCII symbols and CJK
ideographs are words of their own. Each word, with a ``▁`` in front, is then covered greedily by the
longest token at each position; a word that cannot be covered becomes one unknown token.
"""

from __future__ import annotations

from .unicode_tables import CONTROL, MARK, PUNCTUATION, SYMBOL, WHITESPACE, category, nfd, to_lower

_SPACE = "▁"

# what a code point does in a word: (action, text); actions:
_SKIP, _BREAK, _ALONE, _APPEND = range(4)


def _is_chinese(cp: int) -> bool:
    # llm_tokenizer_wpm_session::is_chinese_char, with its 0x2B920 (not 0x2B820), as HF's Rust code
    return (
        0x4E00 <= cp <= 0x9FFF
        or 0x3400 <= cp <= 0x4DBF
        or 0x20000 <= cp <= 0x2A6DF
        or 0x2A700 <= cp <= 0x2B73F
        or 0x2B740 <= cp <= 0x2B81F
        or 0x2B920 <= cp <= 0x2CEAF
        or 0xF900 <= cp <= 0xFAFF
        or 0x2F800 <= cp <= 0x2FA1F
    )


class WordPiece:
    """The WordPiece algorithm over a vocabulary ``{text: id}``; see the module docstring."""

    def __init__(
        self, vocab: dict[str, int], unk_id: int | None, lowercase: bool, strip_accents: bool
    ) -> None:
        self._vocab = vocab
        self._unk = unk_id
        self._lowercase = lowercase
        self._strip_accents = strip_accents
        # every prefix of a token: the longest token at a position is found by extending a prefix until it
        # is no token's prefix any more, a few steps rather than one lookup per possible token length
        self._prefixes = {t[:k] for t in vocab for k in range(1, len(t) + 1)}
        self._actions: dict[str, tuple[int, str]] = {}  # per character, filled on first use

    def _action(self, c: str) -> tuple[int, str]:
        cp = ord(c)
        if self._strip_accents:
            cp = nfd(cp)
        cls = category(cp)
        if cp in WHITESPACE:
            act = (_BREAK, "")
        elif cp in (0, 0xFFFD) or cls == CONTROL or (self._strip_accents and cls == MARK):
            act = (_SKIP, "")
        else:
            out = chr(to_lower(cp) if self._lowercase else cp)
            alone = cls == PUNCTUATION or (cp < 0x7F and cls == SYMBOL) or _is_chinese(cp)
            act = (_ALONE if alone else _APPEND, out)
        self._actions[c] = act
        return act

    def words(self, text: str) -> list[str]:
        """llm_tokenizer_wpm_session::preprocess: the normalized words of ``text``."""
        actions = self._actions
        words: list[str] = []
        word: list[str] = []
        for c in text:
            act, s = actions.get(c) or self._action(c)
            if act == _APPEND:
                word.append(s)
            elif act != _SKIP:
                if word:
                    words.append("".join(word))
                    word = []
                if act == _ALONE:
                    words.append(s)
        if word:
            words.append("".join(word))
        return words

    def word_ids(self, word: str) -> list[int]:
        """The tokens of one normalized word: longest match first, or the unknown token."""
        vocab, prefixes = self._vocab, self._prefixes
        text = _SPACE + word
        n = len(text)
        ids: list[int] = []
        i = 0
        while i < n:
            best, end = None, i
            j = i + 1
            while j <= n and (piece := text[i:j]) in prefixes:
                t = vocab.get(piece)
                if t is not None:
                    best, end = t, j
                j += 1
            if best is None:
                ids = []
                break
            ids.append(best)
            i = end
        if not ids:
            if self._unk is None:
                raise ValueError(f"no token covers {word!r} and the vocabulary has no unknown token")
            ids = [self._unk]
        return ids
