"""Typed access to the ``tokenizer.ggml.*`` keys of a GGUF file (or of a plain metadata dict): a key of the
wrong type is a :class:`qrt.FormatError` naming it, never a wrong vocabulary."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ._C import FormatError


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
