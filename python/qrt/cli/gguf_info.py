"""qrt-gguf: print a GGUF file's header, metadata and tensor table (the demo model when no file is given)."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from qrt import gguf
from qrt.gguf import FormatError, GGUFFile, UnsupportedError


def _abbreviated(value: Any, limit: int = 6, width: int = 100) -> str:
    if isinstance(value, list):
        head = ", ".join(_abbreviated(v, limit, 40) for v in value[:limit])
        more = f", ... ({len(value)} items)" if len(value) > limit else ""
        return f"[{head}{more}]"
    text = repr(value)
    return text if len(text) <= width else text[: width - 3] + "..."


def _describe(f: GGUFFile) -> str:
    lines = [
        f"GGUF v{f.version}: {f.path} ({f.file_size} bytes, alignment {f.alignment}, "
        f"data at {f.data_offset})",
        "",
        f"metadata ({len(f.fields)} keys):",
    ]
    for fld in f.fields.values():
        vtype = f"{fld.type}[{fld.element_type}]" if fld.element_type else fld.type
        lines.append(f"  {fld.key} {vtype} = {_abbreviated(fld.value)}")
    lines += ["", f"tensors ({len(f.tensors)}, {sum(t.nbytes for t in f.tensors.values())} bytes):"]
    width = max((len(n) for n in f.tensors), default=4)
    lines.append(f"  {'name':<{width}}  {'type':<6} {'shape':<22} {'bytes':>12}")
    for t in f.tensors.values():
        lines.append(f"  {t.name:<{width}}  {t.type:<6} {t.shape!s:<22} {t.nbytes:>12}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """``qrt-gguf [FILE]``: print a GGUF file's version, metadata and tensor table (default: the demo
    model, fetched on first use). Exit status 1 with one ``qrt-gguf: error: ...`` line on a bad file."""
    parser = argparse.ArgumentParser(prog="qrt-gguf", description="Summarize a GGUF file.")
    parser.add_argument("file", nargs="?", help="path of a .gguf file (default: the demo model)")
    args = parser.parse_args(argv)
    try:
        if args.file is None:
            from qrt.demo import demo_model_path  # only the no-argument form needs the network

            args.file = demo_model_path()
        with gguf.open(args.file) as f:
            text = _describe(f)
    except (FormatError, UnsupportedError, OSError, RuntimeError) as e:
        print(f"qrt-gguf: error: {e}", file=sys.stderr)
        return 1
    if hasattr(sys.stdout, "reconfigure"):  # keys and tokens may not fit a non-UTF-8 terminal
        sys.stdout.reconfigure(errors="backslashreplace")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
