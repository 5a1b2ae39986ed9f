"""A Hugging Face checkpoint directory: config.json and the safetensors weights (one file or sharded).

Nothing here executes anything from the checkpoint: pickle files (``.bin``, ``.pt``, ``.pth``, ``.ckpt``)
are refused, ``auto_map`` / remote code in config.json is ignored, and a shard index may only name files
inside the directory.
"""

from __future__ import annotations

import json
import os
import pathlib
from collections.abc import Iterator
from typing import Any

from qrt import FormatError, UnsupportedError

from .safetensors import SafetensorsFile, TensorEntry

INDEX_NAME = "model.safetensors.index.json"
SINGLE_NAME = "model.safetensors"
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl")
MAX_JSON_BYTES = 256 << 20  # config / index / tokenizer files larger than this are refused

HOW_TO_GET_SAFETENSORS = (
    "qrt-convert never unpickles checkpoints (loading a pickle can run arbitrary code). Get the safetensors "
    "version instead: most Hugging Face repositories have one (download model*.safetensors and "
    "model.safetensors.index.json), or, in an environment where you trust this checkpoint, re-save it with "
    "transformers: AutoModelForCausalLM.from_pretrained(DIR).save_pretrained(DIR, safe_serialization=True)"
)


def read_json(path: pathlib.Path, what: str | None = None) -> Any:
    """Parse a JSON file of the checkpoint; FormatError (naming the file) when it is not valid JSON."""
    try:
        size = path.stat().st_size
    except OSError as e:
        raise FormatError(f"{path}: cannot read {what or path.name}: {e.strerror}") from None
    if size > MAX_JSON_BYTES:
        raise FormatError(f"{path}: {size} bytes is too large for {what or path.name}")
    try:
        with open(path, "rb") as f:
            text = f.read().decode("utf-8")
        return json.loads(text)
    except UnicodeDecodeError as e:
        raise FormatError(f"{path}: not UTF-8 (byte {e.start})") from None
    except (ValueError, RecursionError) as e:
        raise FormatError(f"{path}: not valid JSON: {e}") from None


def read_json_object(path: pathlib.Path, what: str | None = None) -> dict[str, Any]:
    data = read_json(path, what)
    if not isinstance(data, dict):
        raise FormatError(f"{path}: expected a JSON object, got a {type(data).__name__}")
    return data


class Checkpoint:
    """config.json + the weights of ``hf_dir``. Use as a context manager (it holds file descriptors)."""

    def __init__(self, hf_dir: str | os.PathLike[str]) -> None:
        self.dir = pathlib.Path(hf_dir)
        if not self.dir.is_dir():
            raise FileNotFoundError(f"{self.dir}: not a directory (expected a Hugging Face checkpoint)")
        cfg_path = self.dir / "config.json"
        if not cfg_path.is_file():
            raise FormatError(f"{self.dir}: no config.json (expected a Hugging Face checkpoint directory)")
        self.config: dict[str, Any] = read_json_object(cfg_path, "config.json")
        #: True when config.json asks for remote code (auto_map); it is ignored, never run
        self.has_remote_code = "auto_map" in self.config
        self.files: list[SafetensorsFile] = []
        self.tensors: dict[str, TensorEntry] = {}
        self._by_name: dict[str, SafetensorsFile] = {}
        try:
            self._open_weights()
        except BaseException:
            self.close()
            raise

    # ---- weights ----

    def _shard_path(self, name: object, index_path: pathlib.Path) -> pathlib.Path:
        if not isinstance(name, str) or not name:
            raise FormatError(f"{index_path}: weight_map value {name!r} is not a file name")
        p = pathlib.PurePath(name)
        if p.is_absolute() or ".." in p.parts or "\0" in name:
            raise FormatError(f"{index_path}: shard {name!r} points outside the checkpoint directory")
        full = self.dir / p
        root = os.path.realpath(self.dir)
        real = os.path.realpath(full)
        if os.path.commonpath([root, real]) != root:
            raise FormatError(f"{index_path}: shard {name!r} resolves outside the checkpoint directory")
        if not name.endswith(".safetensors"):
            raise FormatError(f"{index_path}: shard {name!r} is not a .safetensors file")
        if not full.is_file():
            raise FormatError(f"{index_path}: shard {name!r} is missing")
        return full

    def _open_weights(self) -> None:
        index_path = self.dir / INDEX_NAME
        if index_path.is_file():
            index = read_json_object(index_path, INDEX_NAME)
            weight_map = index.get("weight_map")
            if not isinstance(weight_map, dict) or not weight_map:
                raise FormatError(f"{index_path}: no weight_map object")
            shards: dict[str, pathlib.Path] = {}
            for shard in weight_map.values():
                if not isinstance(shard, str):
                    raise FormatError(f"{index_path}: weight_map value {shard!r} is not a file name")
                if shard not in shards:
                    shards[shard] = self._shard_path(shard, index_path)
            for shard in sorted(shards):
                self._add_file(shards[shard])
            for tname, shard in weight_map.items():
                f = self._by_name.get(tname)
                if f is None or os.path.realpath(f.path) != os.path.realpath(shards[shard]):
                    raise FormatError(f"{index_path}: tensor {tname!r} is not in its shard {shard!r}")
            return
        single = self.dir / SINGLE_NAME
        if single.is_file():
            self._add_file(single)
            return
        found = sorted(p for p in self.dir.glob("*.safetensors") if p.is_file())
        if found:
            for p in found:
                self._add_file(p)
            return
        pickles = sorted(p.name for p in self.dir.iterdir() if p.suffix in PICKLE_SUFFIXES)
        if pickles:
            raise UnsupportedError(
                f"{self.dir}: only pickle weights found ({', '.join(pickles[:4])}). " + HOW_TO_GET_SAFETENSORS
            )
        raise FormatError(f"{self.dir}: no model.safetensors, {INDEX_NAME} or *.safetensors weights")

    def _add_file(self, path: pathlib.Path) -> None:
        f = SafetensorsFile(path)
        self.files.append(f)
        for name, entry in f.tensors.items():
            if name in self.tensors:
                raise FormatError(f"{path}: tensor {name!r} is also in {self.tensors[name].path}")
            self.tensors[name] = entry
            self._by_name[name] = f

    def file_of(self, name: str) -> SafetensorsFile:
        return self._by_name[name]

    def __iter__(self) -> Iterator[TensorEntry]:
        return iter(self.tensors.values())

    @property
    def source_bytes(self) -> int:
        return sum(e.nbytes for e in self.tensors.values())

    def close(self) -> None:
        for f in self.files:
            f.close()

    def __enter__(self) -> Checkpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
