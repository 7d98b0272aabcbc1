"""Translate a test set and report sacreBLEU BLEU and chrF with signatures (see seq2seq/commands.py).

    python scripts/evaluate.py --checkpoint model.ckpt --src test.de.gz --ref test.en.gz
    python scripts/evaluate.py --checkpoint model.ckpt --data data/multi30k --split test --json

Options: --help.
"""

from seq2seq.commands import evaluate_main

if __name__ == "__main__":
    evaluate_main()
