"""Start-up cost: `import qrt` and qrt-run import numpy and jinja2 only when they are used.

numpy and jinja2 together take about as long to import as SmolLM2 takes to load, so an eager import
anywhere in qrt/__init__ or on qrt-run's path shows up in its time to first token.
"""

from __future__ import annotations

import subprocess
import sys

import jinja2
import pytest

import qrt
from qrt.cli import run as qrt_run


def _modules_after(code: str) -> set[str]:
    """The modules a fresh interpreter has imported after running ``code``."""
    proc = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys\nprint(' '.join(sys.modules))"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return set(proc.stdout.split())


def test_import_qrt_imports_neither_numpy_nor_jinja2() -> None:
    mods = _modules_after("import qrt, qrt.gguf, qrt.tokenizer, qrt.cli.run, qrt.cli.gguf_info")
    assert "numpy" not in mods
    assert "jinja2" not in mods


def test_reading_a_file_needs_no_numpy(smollm2_path) -> None:
    mods = _modules_after(
        f"import qrt\nwith qrt.gguf.open({str(smollm2_path)!r}) as f:\n    qrt.Tokenizer.from_gguf(f).encode('hi')"
    )
    assert "numpy" not in mods


def test_qrt_run_imports_jinja2_only_for_chat(smollm2_path) -> None:
    code = "import sys\nfrom qrt.cli.run import main\nassert main({!r}) == 0"
    argv = ["-m", str(smollm2_path), "-p", "hi", "-n", "1", "-c", "256"]
    assert "jinja2" not in _modules_after(code.format(argv))
    assert "jinja2" in _modules_after(code.format([*argv, "--chat"]))


def test_public_names_resolve_lazily() -> None:
    for name in qrt.__all__:
        assert getattr(qrt, name) is not None, name
    assert set(qrt.__all__) <= set(dir(qrt))
    assert qrt.gguf is sys.modules["qrt.gguf"]
    assert qrt.load is sys.modules["qrt.model"].load
    assert qrt.quantize is sys.modules["qrt.formats"].quantize
    assert qrt.Tokenizer is sys.modules["qrt.tokenizer"].Tokenizer
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        qrt.nope  # noqa: B018


def test_qrt_run_reports_a_template_error(smollm2_path, monkeypatch, capsys) -> None:
    def broken(self, messages, **kwargs):
        raise jinja2.TemplateError("roles must alternate")

    monkeypatch.setattr(qrt.Model, "chat", broken)
    rc = qrt_run.main(["-m", str(smollm2_path), "-p", "hi", "-n", "1", "-c", "256", "--chat"])
    assert rc == 1
    assert capsys.readouterr().err == "qrt-run: error: roles must alternate\n"
