"""Checking the checkpoints before the server starts: one line of error for a file that is not usable.

The check builds each model once, all in one spawned child process (``check_checkpoints_isolated``),
so the server's main process never imports torch (see ``serve/__main__.py``).
"""

from __future__ import annotations

import hashlib
import multiprocessing as mp
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from pathlib import Path


def one_line(error: Exception) -> str:
    """The error's first line; for an unpickling refusal, torch's line naming the blocked global
    (it sits many lines into torch's message, which may reach us only as the ``__cause__``)."""
    first = (str(error).strip().splitlines() or [type(error).__name__])[0]
    texts = [str(error), str(error.__cause__ or "")]
    culprit = next((ln.strip() for t in texts for ln in t.splitlines() if "GLOBAL" in ln), None)
    if culprit is None or culprit in first:
        return first
    marker = "Weights only load failed"  # torch's advice that follows it is not for a server
    if marker in first:
        return first[: first.index(marker)] + culprit
    return f"{first} ({culprit})"


def check_checkpoint(path: str, device: str = "cpu", quantize: str = "none") -> dict:
    """Build the model once, on ``device`` (``auto``: the GPU when there is one), to prove the
    checkpoint works; return ``/info`` metadata, with the device type the workers will use.

    Raises ``CheckpointError`` (from ``seq2seq.translator``) for a file that is not usable, and
    ``ValueError`` for a device this machine lacks.
    """
    from seq2seq.translator import CheckpointError, Translator, resolve_device

    resolved = resolve_device(device, quantize)
    try:
        translator = Translator.from_checkpoint(path, device=resolved)
    except CheckpointError:
        raise
    except Exception as e:  # weights that do not fit the recorded architecture, broken tokenizers
        raise CheckpointError(f"{path} is not a usable seq2seq checkpoint: {e}") from e
    meta = dict(translator.metadata)
    meta["src_vocab_size"] = translator.src_tokenizer.vocab_size
    meta["tgt_vocab_size"] = translator.tgt_tokenizer.vocab_size
    meta["checkpoint"] = Path(path).name
    with open(path, "rb") as f:  # which file a replica serves, to follow a rolling update
        meta["sha256"] = hashlib.file_digest(f, "sha256").hexdigest()
    meta["path"] = str(path)
    meta["device"] = resolved.type
    meta["src_spm"] = translator.src_tokenizer.model_proto  # for language detection; not shown in /info
    return meta


def _check_in_child(paths: list[str], device: str, quantize: str) -> tuple[list[dict] | None, str | None]:
    """``check_checkpoint`` of each path as (metadata list, None), or (None, the first one-line
    error): plain, picklable values."""
    try:
        return [check_checkpoint(path, device, quantize) for path in paths], None
    except ValueError as e:  # CheckpointError is one too; also a device this machine lacks
        return None, one_line(e)


def check_checkpoints_isolated(
    paths: list[str], device: str = "cpu", quantize: str = "none"
) -> tuple[list[dict] | None, str | None]:
    """``check_checkpoint`` of every path in one spawned child, so that torch stays out of this
    process: (metadata list, None), or (None, a one-line error)."""
    try:
        with ProcessPoolExecutor(1, mp_context=mp.get_context("spawn")) as pool:
            return pool.submit(_check_in_child, list(paths), device, quantize).result()
    except BrokenProcessPool:  # the child died (out of memory, killed): say so, not a traceback
        return None, f"checking {', '.join(paths)} crashed the checking process (out of memory?)"
