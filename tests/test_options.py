"""``seq2seq-serve``'s options: each one also as a ``SEQ2SEQ_*`` variable, converted and checked alike."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest
from test_serve import ROOT

from serve.options import parse_args


def test_help_names_a_variable_for_every_option() -> None:
    help_text = subprocess.run(
        [sys.executable, "-m", "serve", "--help"], cwd=ROOT, capture_output=True, text=True, timeout=60
    ).stdout
    options = set(re.findall(r"^\s+(--[a-z][a-z0-9-]*)", help_text, re.MULTILINE))
    assert {"--checkpoint", "--port", "--char-limit", "--shared-storage", "--continuous"} <= options
    variables = set(re.findall(r"\$(SEQ2SEQ_[A-Z0-9_]+)", help_text))
    for option in options - {"--help"}:
        assert "SEQ2SEQ_" + option[2:].upper().replace("-", "_") in variables, option


def test_variables_set_defaults_and_the_command_line_wins(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SEQ2SEQ_CHECKPOINT", "a.ckpt, b.ckpt")
    monkeypatch.setenv("SEQ2SEQ_PORT", "9001")
    monkeypatch.setenv("SEQ2SEQ_CONTINUOUS", "off")
    monkeypatch.setenv("SEQ2SEQ_PIN_CPUS", "yes")
    monkeypatch.setenv("SEQ2SEQ_LOG_FORMAT", "json")
    args = parse_args([])
    assert (args.checkpoint, args.port, args.continuous, args.pin_cpus) == (
        ["a.ckpt", "b.ckpt"],
        9001,
        False,
        True,
    )
    assert args.log_format == "json"
    assert parse_args(["--port", "9002", "--checkpoint", "c.ckpt"]).port == 9002


@pytest.mark.parametrize(
    ("name", "value", "words"),
    [
        ("SEQ2SEQ_PORT", "eighty", "SEQ2SEQ_PORT: 'eighty' is not a valid value for --port"),
        ("SEQ2SEQ_QUANTIZE", "int4", "SEQ2SEQ_QUANTIZE must be one of none, int8"),
        ("SEQ2SEQ_CONTINUOUS", "maybe", "SEQ2SEQ_CONTINUOUS must be one of 1, true"),
    ],
)
def test_a_bad_variable_is_a_clear_error(monkeypatch, capsys, name: str, value: str, words: str) -> None:
    monkeypatch.setenv(name, value)
    with pytest.raises(SystemExit) as exit_info:
        parse_args(["--checkpoint", "m.ckpt"])
    assert exit_info.value.code == 2 and words in capsys.readouterr().err
