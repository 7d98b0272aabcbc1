"""The models a server holds and the language pairs they make: direct, or through English.

``Catalog`` is torch-free and picklable: the main process builds it from the checked metadata of
every checkpoint, the HTTP processes validate ``source``/``target`` against it before a request is
queued, and the inference workers resolve each request's route with it and load every model it
names (``load_translators``), so all models share the same worker processes.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from seq2seq.translator import Translator

PIVOT = "en"  # the language LibreTranslate pivots through, and ours


class PairError(ValueError):
    """A source/target combination that no loaded model (or pivot through English) translates."""


@dataclass(frozen=True)
class Route:
    """How to translate ``src`` into ``tgt``: one model, or two through the pivot language."""

    src: str
    tgt: str
    legs: tuple[str, ...]  # model keys, applied in order

    @property
    def pivot(self) -> str | None:
        return PIVOT if len(self.legs) == 2 else None


def model_key(src: str, tgt: str) -> str:
    return f"{src}-{tgt}"


@dataclass
class Catalog:
    """Every loaded model by key (``"de-en"``), with its ``/info`` metadata (``path`` included)."""

    models: dict[str, dict] = field(default_factory=dict)

    @classmethod
    def from_metadata(cls, metas: list[dict]) -> Catalog:
        """Raise ``ValueError`` for a checkpoint without languages or two checkpoints of one pair."""
        catalog = cls()
        for meta in metas:
            src, tgt = meta.get("src_lang"), meta.get("tgt_lang")
            if not src or not tgt:
                raise ValueError(f"{meta['path']} records no source and target language")
            key = model_key(src, tgt)
            if key in catalog.models:
                raise ValueError(
                    f"{catalog.models[key]['path']} and {meta['path']} both translate {src} to {tgt}: "
                    "serve one checkpoint per language pair"
                )
            catalog.models[key] = {**meta, "key": key}
        return catalog

    @property
    def direct(self) -> list[tuple[str, str]]:
        return sorted((m["src_lang"], m["tgt_lang"]) for m in self.models.values())

    def routes(self) -> dict[tuple[str, str], Route]:
        """Every translatable pair: the direct models, then X -> en -> Y where no direct model exists."""
        found = {(s, t): Route(s, t, (model_key(s, t),)) for s, t in self.direct}
        for s, t in self.direct:
            if t != PIVOT:
                continue
            for s2, t2 in self.direct:
                if s2 == PIVOT and t2 != s and (s, t2) not in found:
                    found[(s, t2)] = Route(s, t2, (model_key(s, PIVOT), model_key(PIVOT, t2)))
        return dict(sorted(found.items()))

    def describe_pairs(self) -> str:
        return ", ".join(
            f"{s}->{t}" + (f" (via {r.pivot})" if r.pivot else "") for (s, t), r in self.routes().items()
        )

    def route(self, source: str | None = None, target: str | None = None) -> Route:
        """The one route matching the given codes (either may be omitted when that leaves one)."""
        routes = self.routes()
        matches = [
            r for (s, t), r in routes.items() if source in (None, s) and target in (None, t)
        ]  # fmt: skip
        if len(matches) == 1:
            return matches[0]
        if not matches:
            wanted = f"{source or 'any language'} to {target or 'any language'}"
            raise PairError(f"no model translates {wanted}; pairs available: {self.describe_pairs()}")
        raise PairError(
            f"several pairs match, give 'source' and 'target'; pairs available: {self.describe_pairs()}"
        )

    def languages(self) -> set[str]:
        return {lang for pair in self.direct for lang in pair}

    def sources(self) -> dict[str, list[str]]:
        """Source language -> the target languages it translates into (LibreTranslate's targets)."""
        out: dict[str, list[str]] = {}
        for s, t in self.routes():
            out.setdefault(s, []).append(t)
        return out

    def source_models(self) -> dict[str, bytes]:
        """Each source language's SentencePiece model (from the first model that reads it)."""
        out: dict[str, bytes] = {}
        for meta in self.models.values():
            out.setdefault(meta["src_lang"], meta["src_spm"])
        return out

    def load_translators(self, quantize: str = "none", device: str = "cpu") -> dict[str, Translator]:
        """Every model, by key, on ``device`` (in an inference worker: this imports torch)."""
        from seq2seq.translator import Translator

        return {
            key: Translator.from_checkpoint(meta["path"], quantize=quantize, device=device)
            for key, meta in self.models.items()
        }

    def names(self, route: Route) -> str:
        return " + ".join(Path(self.models[key]["path"]).name for key in route.legs)


CATALOG = Catalog()  # set by the main process before the HTTP processes are forked (as LIMITS)


def configure_catalog(catalog: Catalog) -> Catalog:
    CATALOG.models = dict(catalog.models)
    return CATALOG
