"""Translate text with a trained checkpoint, one sentence per line (see seq2seq/commands.py).

    python scripts/translate.py --checkpoint model.ckpt < input.de > output.en
    python scripts/translate.py --checkpoint model.ckpt --input test.de --output test.en --beam-size 5
    python scripts/translate.py --checkpoint model.ckpt --n-best 3 --input test.de   # TSV: line, score, text

Options: --help.
"""

from seq2seq.commands import translate_main

if __name__ == "__main__":
    translate_main()
