"""The translate, evaluate and plot_attention scripts, run as real processes on the tiny checkpoint;
error cases run the same entry points in-process (same code, no interpreter start-up each)."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from seq2seq import commands

ROOT = Path(__file__).resolve().parents[1]
SOURCES = ["seventy-four", "twenty-two", "five hundred and eighty-eight", "one thousand and three"]
REFERENCES = ["soixante-quatorze", "vingt-deux", "cinq cent quatre-vingt-huit", "mille trois"]


def script(name: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "OMP_NUM_THREADS": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "scripts" / name), *map(str, args)],
        input=stdin, capture_output=True, text=True, env=env, timeout=300,
    )  # fmt: skip


@pytest.fixture(scope="module")
def expected(tiny_checkpoint):
    """What the library itself says for SOURCES (beam 5), to compare the commands against."""
    from seq2seq import Translator

    return Translator.from_checkpoint(tiny_checkpoint).translate(SOURCES, beam_size=5, n_best=2)


def test_translate_stdin_to_stdout(tiny_checkpoint, expected):
    proc = script("translate.py", "--checkpoint", tiny_checkpoint, stdin="\n".join(SOURCES) + "\n")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.split("\n") == [t.text for t in expected] + [""]
    assert "4/4" in proc.stderr  # the progress bar goes to stderr, never into the output


def test_translate_file_to_file_n_best(tiny_checkpoint, expected, tmp_path):
    src = tmp_path / "in.en.gz"
    src.write_bytes(gzip.compress(("\r\n".join(SOURCES) + "\r\n").encode()))  # gzip and CRLF
    out = tmp_path / "out.tsv"
    proc = script("translate.py", "--checkpoint", tiny_checkpoint, "--input", src, "--output", out,
                  "--n-best", "2", "--quiet")  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""
    rows = [line.split("\t") for line in out.read_text(encoding="utf-8").splitlines()]
    assert [int(r[0]) for r in rows] == [0, 0, 1, 1, 2, 2, 3, 3]
    assert [r[2] for r in rows] == [h.text for t in expected for h in t.hypotheses]
    assert [float(r[1]) for r in rows] == pytest.approx(
        [h.score for t in expected for h in t.hypotheses], abs=1e-3
    )
    for i in range(0, 8, 2):  # best first
        assert float(rows[i][1]) >= float(rows[i + 1][1])


def test_evaluate_prints_scores_with_signatures(tiny_checkpoint, expected, tmp_path):
    (tmp_path / "src.en").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
    (tmp_path / "ref.fr").write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    hyp = tmp_path / "hyp.fr"
    proc = script("evaluate.py", "--checkpoint", tiny_checkpoint, "--src", tmp_path / "src.en",
                  "--ref", tmp_path / "ref.fr", "--output", hyp)  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0].startswith("BLEU = ") and lines[1].startswith("chrF2 = ")
    assert lines[2].startswith("BLEU signature: nrefs:1|case:mixed|eff:no|tok:13a|smooth:exp|version:")
    assert lines[3].startswith("chrF signature: nrefs:1|case:mixed|eff:yes|nc:6|nw:0|space:no|version:")
    assert "sentences: 4" in lines[4] and "sentences/s" in lines[4]
    hypotheses = hyp.read_text(encoding="utf-8").splitlines()
    assert hypotheses == [t.text for t in expected]
    # the numbers are sacreBLEU's on exactly these hypotheses
    from sacrebleu.metrics import BLEU, CHRF

    assert lines[0] == str(BLEU().corpus_score(hypotheses, [REFERENCES]))
    assert lines[1] == str(CHRF().corpus_score(hypotheses, [REFERENCES]))


def test_evaluate_json_and_data_source(tiny_checkpoint, tmp_path, capsys):
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    for split in ("train", "val", "test"):  # a Multi30k-style directory of line-aligned files
        (corpus / f"{split}.en").write_text("\n".join(SOURCES) + "\n", encoding="utf-8")
        (corpus / f"{split}.fr").write_text("\n".join(REFERENCES) + "\n", encoding="utf-8")
    commands.evaluate_main(
        ["--checkpoint", str(tiny_checkpoint), "--data", str(corpus), "--json", "--beam-size", "1"]
    )
    result = json.loads(capsys.readouterr().out)
    assert result["sentences"] == 4 and result["beam_size"] == 1
    assert 0.0 <= result["bleu"] <= 100.0 and 0.0 <= result["chrf"] <= 100.0
    assert result["bleu_signature"].startswith("nrefs:1|") and result["sentences_per_second"] > 0


def test_plot_attention_writes_a_png(tiny_checkpoint, tmp_path):
    png = tmp_path / "att.png"
    proc = script(
        "plot_attention.py",
        "--checkpoint",
        tiny_checkpoint,
        "--text",
        "five hundred",
        "--output",
        png,
    )
    assert proc.returncode == 0, proc.stderr
    data = png.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n" and len(data) > 2000
    from matplotlib.image import imread

    image = imread(png)
    assert image.ndim == 3 and image.shape[0] > 100 and image.shape[1] > 100
    assert image[..., :3].std() > 0.05  # not a blank canvas


def test_missing_checkpoint_exits_with_a_clear_message(tmp_path):
    proc = script("translate.py", "--checkpoint", tmp_path / "none.ckpt", stdin="hello\n")
    assert proc.returncode == 2
    assert proc.stderr.strip() == f"error: checkpoint {tmp_path / 'none.ckpt'} does not exist"


def run_main(main, args: list, capsys) -> str:
    """Run an entry point in-process; it must exit with status 2. Returns its stderr."""
    with pytest.raises(SystemExit) as exit_info:
        main([str(a) for a in args])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1  # one clear line, no traceback
    return err


def test_bad_inputs_exit_non_zero_naming_the_problem(tiny_checkpoint, tmp_path, capsys):
    ckpt = ["--checkpoint", tiny_checkpoint]
    missing = tmp_path / "missing.txt"
    assert str(missing) in run_main(commands.translate_main, [*ckpt, "--input", missing], capsys)

    not_ckpt = tmp_path / "model.ckpt"
    not_ckpt.write_text("this is not a checkpoint\n")
    err = run_main(commands.translate_main, ["--checkpoint", not_ckpt, "--input", missing.parent], capsys)
    assert "is not a file" in err  # checked before loading the model
    src = tmp_path / "src.txt"
    src.write_bytes(b"fine\nbad \xff byte\n")
    err = run_main(commands.translate_main, ["--checkpoint", not_ckpt, "--input", src], capsys)
    assert str(not_ckpt) in err and "not a PyTorch checkpoint" in err
    err = run_main(commands.translate_main, [*ckpt, "--input", src], capsys)
    assert str(src) in err and "line 2" in err and "UTF-8" in err

    assert "--n-best" in run_main(
        commands.translate_main, [*ckpt, "--beam-size", "2", "--n-best", "3"], capsys
    )
    ref = tmp_path / "ref.txt"
    ref.write_text("one\n")
    src.write_text("one\ntwo\n")
    err = run_main(commands.evaluate_main, [*ckpt, "--src", src, "--ref", ref], capsys)
    assert "2 lines" in err and "1" in err and str(ref) in err
    assert "--src and --ref" in run_main(commands.evaluate_main, [*ckpt, "--src", src], capsys)


def test_console_script_entry_points(tmp_path, capsys):
    from seq2seq import cli  # pyproject: seq2seq-translate / seq2seq-evaluate

    assert "checkpoint" in run_main(cli.translate_main, ["--checkpoint", tmp_path / "x.ckpt"], capsys)
    assert "--src and --ref" in run_main(cli.evaluate_main, ["--checkpoint", tmp_path / "x.ckpt"], capsys)
