"""seq2seq: RNN encoder-decoder neural machine translation with attention."""

from seq2seq.translator import Hypothesis, Translation, Translator

__all__ = ["Hypothesis", "Translation", "Translator"]
__version__ = "0.1.0"
