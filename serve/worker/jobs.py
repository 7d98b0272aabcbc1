"""What a translation request becomes in the worker, and how requests share a ``translate`` call.

Torch-free: the HTTP processes import it too (through ``serve.worker.api``), and so do tests of
the grouping. A ``Job`` is one request's texts, decoding options and route (one model, or two
through English); ``translate_jobs`` translates many jobs with one ``Translator.translate`` call
per distinct model and options, leg by leg, so a pivoting job joins the other jobs of its first
model, then of its second.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING

from serve.catalog import Route
from serve.ops import metrics

if TYPE_CHECKING:
    from seq2seq.translator import Translation, Translator

Ticket = tuple[int, str]  # (response queue id, request uid): where LitServe sends the answer


@dataclass(frozen=True)
class DecodeOptions:
    """Everything that must be equal for requests to share one ``Translator.translate`` call."""

    beam_size: int
    n_best: int
    max_length: int
    length_penalty: float | None  # None: the model's default
    return_attention: bool
    min_length: int = 1  # a non-empty text never gets an empty translation (EOS first)

    def for_pivot(self) -> DecodeOptions:
        """The first leg of a pivot: only its best English text is needed."""
        return replace(self, n_best=1, length_penalty=None, return_attention=False)

    @property
    def streamable(self) -> bool:
        """What continuous batching decodes: no attention (pivots are checked on the route)."""
        return not self.return_attention


@dataclass
class Job:
    """A decoded request: its texts, options and the model(s) that translate it."""

    texts: list[str]
    options: DecodeOptions
    route: Route

    @property
    def streamable(self) -> bool:
        """One model, no attention: a job the continuous streams take (``serve.worker.streams``)."""
        return self.options.streamable and len(self.route.legs) == 1


@dataclass
class JobResult:
    """A job's translations (from the last leg), and the pivot texts when there were two legs."""

    route: Route
    translations: list[Translation]
    pivot_texts: list[str] | None = None


def translate_jobs(translators: dict[str, Translator], jobs: list[Job]) -> list[JobResult]:
    """One ``translate`` call per distinct model and options and leg; results go back to their jobs."""
    began = time.perf_counter()
    inputs = [job.texts for job in jobs]
    results = [JobResult(job.route, []) for job in jobs]
    for leg in range(max(len(job.route.legs) for job in jobs)):
        groups: dict[tuple[str, DecodeOptions], list[int]] = {}
        for i, job in enumerate(jobs):
            if leg < len(job.route.legs):
                last = leg == len(job.route.legs) - 1
                options = job.options if last else job.options.for_pivot()
                groups.setdefault((job.route.legs[leg], options), []).append(i)
        for (key, options), members in groups.items():
            texts = [text for i in members for text in inputs[i]]
            translations = translators[key].translate(texts, **asdict(options))
            metrics.observe_translations(key, translations)
            start = 0
            for i in members:
                mine = translations[start : start + len(inputs[i])]
                start += len(inputs[i])
                if leg == len(jobs[i].route.legs) - 1:
                    results[i].translations = mine
                else:  # the next leg translates the best pivot texts
                    inputs[i] = results[i].pivot_texts = [t.text for t in mine]
    metrics.observe_batch(len(jobs), sum(len(job.texts) for job in jobs), time.perf_counter() - began)
    return results
