"""Draw the attention of one translation as a PNG heatmap (see seq2seq/plot.py).

    python scripts/plot_attention.py --checkpoint model.ckpt --text "Ein Hund rennt." --output att.png

Options: --help.
"""

from seq2seq.commands import plot_main

if __name__ == "__main__":
    plot_main()
