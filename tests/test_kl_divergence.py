"""qrt-perplexity --kl-divergence-base / --kl-divergence (``qrt.kl_divergence``): llama-perplexity's method and
file format, against llama-perplexity itself."""

from __future__ import annotations

import pathlib
import re
import subprocess

import pytest

import qrt
from qrt import kl_divergence
from qrt.cli import perplexity as cli
from qrt.perplexity import perplexity

GPL = pathlib.Path(__file__).parent / "data" / "gpl-3.0.txt"
N_CTX, CHUNKS = 128, 3


@pytest.fixture(scope="module")
def model(smollm2_path: pathlib.Path):
    with qrt.load(smollm2_path, n_ctx=N_CTX, n_threads=2) as m:
        yield m


@pytest.fixture(scope="module")
def base(model, tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    p = tmp_path_factory.mktemp("kld") / "base.kld"
    assert kl_divergence.save_base(model, GPL.read_text(), p, N_CTX, max_chunks=CHUNKS) == CHUNKS
    return p


def test_same_model_has_no_divergence(model, base: pathlib.Path) -> None:
    r = kl_divergence.compare(model, base)
    assert r.tokens == CHUNKS * (N_CTX - 1 - N_CTX // 2)
    assert r.mean_kld < 1e-4 and r.same_top == 1.0 and r.rms_dp < 1e-3  # only the uint16 rounding of log p
    ppl = perplexity(model, GPL.read_text(), N_CTX, max_chunks=CHUNKS).ppl
    assert r.ppl == pytest.approx(ppl, rel=1e-9)
    assert r.ppl_base == pytest.approx(ppl, rel=1e-3)


def test_against_llama_perplexity(llamacpp, kquant_file, smollm2_path, base, tmp_path: pathlib.Path) -> None:
    """llama-perplexity reads our base file and we read its: the same mean KL of a Q2_K file either way, up to the
    two engines' own differences."""
    q2 = kquant_file("Q2_K")
    ref_base = tmp_path / "llama.kld"
    run = [str(llamacpp.perplexity), "-c", str(N_CTX), "--chunks", str(CHUNKS), "-t", "2", "-b", str(N_CTX)]
    proc = subprocess.run(
        [*run, "-m", str(smollm2_path), "-f", str(GPL), "--kl-divergence-base", str(ref_base)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    proc = subprocess.run(
        [*run, "-m", str(q2), "--kl-divergence-base", str(base), "--kl-divergence"],
        capture_output=True,
        text=True,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    llama_kld = float(re.search(r"Mean\s+KLD:\s+([\d.]+)", proc.stdout + proc.stderr).group(1))
    with qrt.load(q2, n_ctx=N_CTX, n_threads=2) as m:
        ours_on_llama_base = kl_divergence.compare(m, ref_base)
        ours = kl_divergence.compare(m, base)
    assert ours.mean_kld == pytest.approx(llama_kld, rel=0.1)
    assert ours_on_llama_base.mean_kld == pytest.approx(ours.mean_kld, rel=0.1)
    assert 0.05 < ours.mean_kld < 1.0 and ours.same_top < 0.95


def test_cli(smollm2_path, base: pathlib.Path, tmp_path: pathlib.Path, capsys) -> None:
    out = tmp_path / "cli.kld"
    args = ["-m", str(smollm2_path), "-c", str(N_CTX), "--chunks", "2", "-t", "2"]
    assert cli.main([*args, "-f", str(GPL), "--kl-divergence-base", str(out)]) == 0
    assert "saved the log-probabilities of 2 chunks" in capsys.readouterr().err
    assert cli.main([*args, "--kl-divergence-base", str(out), "--kl-divergence"]) == 0
    text = capsys.readouterr().out
    assert re.search(r"Mean\s+KLD\s+:\s+0\.0000", text) and "Same top p     : 100.000 %" in text


def test_bad_base_files(model, base: pathlib.Path, tmp_path: pathlib.Path) -> None:
    p = tmp_path / "bad.kld"
    p.write_bytes(b"not a logits file at all")
    with pytest.raises(qrt.FormatError, match="not a log-probability file"):
        kl_divergence.compare(model, p)
    p.write_bytes(base.read_bytes()[:-10])
    with pytest.raises(qrt.FormatError, match="truncated"):
        kl_divergence.compare(model, p)
    data = bytearray(base.read_bytes())
    data[12:16] = (1000).to_bytes(4, "little")  # n_vocab: another model
    p.write_bytes(bytes(data))
    with pytest.raises((ValueError, qrt.FormatError)):
        kl_divergence.compare(model, p)


def test_short_text(model, tmp_path: pathlib.Path) -> None:
    with pytest.raises(ValueError, match="at least 2 \\* n_ctx"):
        kl_divergence.save_base(model, "too short", tmp_path / "x.kld", N_CTX)
    assert not any(tmp_path.iterdir())
