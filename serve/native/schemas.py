"""Request and response models of ``POST /translate``.

FastAPI validates every request against ``TranslateRequest`` in the API process, before it is
queued for a worker, so a bad request gets its own 422 and never fails a batch it would have
joined (LitServe issue #340). The size limits and the language pairs are the server's: FastAPI
validates with no way to pass them (pydantic's validation context), so ``Bounds`` middleware
binds them to each request as a context variable, which the validators and the schema read.
"""

from __future__ import annotations

import time
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, field_validator, model_validator
from starlette.types import ASGIApp, Receive, Scope, Send

from serve.catalog import Catalog, PairError
from serve.ops.logs import count_texts


@dataclass(frozen=True)
class Limits:
    """Per-request limits, set from the command line (``--max-chars`` etc.)."""

    max_chars: int = 1000  # characters per text
    max_texts: int = 64  # texts per request
    max_beam: int = 10  # beam size
    max_length: int = 256  # output tokens per translation; also the default

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if value < 1:
                raise ValueError(f"{name} must be at least 1, got {value}")


@dataclass(frozen=True)
class Bound:
    """What requests are checked against: the limits and the catalog (empty: any pair)."""

    limits: Limits = field(default_factory=Limits)
    catalog: Catalog = field(default_factory=Catalog)


UNBOUND = Bound()  # outside a server (tests of the models): the default limits, any pair
BOUND: ContextVar[Bound] = ContextVar("seq2seq_bound", default=UNBOUND)  # noqa: B039 (frozen)


class Bounds:
    """ASGI middleware: every request is validated against this server's limits and catalog."""

    def __init__(self, app: ASGIApp, limits: Limits, catalog: Catalog) -> None:
        self.app, self.bound = app, Bound(limits, catalog)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        token = BOUND.set(self.bound)
        try:
            await self.app(scope, receive, send)
        finally:
            BOUND.reset(token)


def _check_text(text: str, max_chars: int) -> str:
    if not text.strip():
        raise ValueError("text must not be empty or only whitespace")
    if len(text) > max_chars:
        raise ValueError(f"text has {len(text)} characters, the limit is {max_chars}")
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as e:  # a lone surrogate such as "\ud800" sent as a JSON escape
        raise ValueError(f"text is not valid Unicode: {e.reason} at index {e.start}") from None
    return text


def _not_null(prop: dict[str, Any]) -> dict[str, Any]:
    """The non-null branch of an optional field's schema."""
    return next((s for s in prop.get("anyOf", []) if s.get("type") != "null"), prop)


def _pairs(catalog: Catalog) -> list[dict[str, Any]]:
    """One schema per (source, target) the catalog routes, either code left out (or null) where
    that still leaves one route."""
    codes: list[str | None] = [None, *sorted(catalog.languages())]
    pairs = []
    for source in codes:
        for target in codes:
            try:
                catalog.route(source, target)
            except PairError:
                continue
            given = {k: v for k, v in (("source", source), ("target", target)) if v is not None}
            pairs.append({
                "required": list(given),
                "properties": {k: {"const": given[k]} if k in given else {"type": "null"} for k in ("source", "target")},
            })  # fmt: skip
    return pairs


def _document_limits(schema: dict[str, Any]) -> None:
    """The JSON schema says what the validators enforce: exactly one of ``text``/``texts``, the
    limits of the server whose request generates the document (``BOUND``),
    n_best <= beam_size (one branch per beam size) and the language pairs the loaded models
    translate. Not expressible: valid Unicode."""
    limits, catalog = BOUND.get().limits, BOUND.get().catalog
    props = schema["properties"]
    text = {"type": "string", "minLength": 1, "maxLength": limits.max_chars, "pattern": r"\S"}
    _not_null(props["text"]).update(text)
    _not_null(props["texts"]).update(items=text, minItems=1, maxItems=limits.max_texts)
    props["beam_size"]["maximum"] = props["n_best"]["maximum"] = limits.max_beam
    default_beam = props["beam_size"]["default"] = min(props["beam_size"]["default"], limits.max_beam)
    _not_null(props["max_length"])["maximum"] = limits.max_length
    one_text = [  # a null is as good as leaving the field out
        {"required": ["text"], "properties": {"text": {"type": "string"}, "texts": {"type": "null"}}},
        {"required": ["texts"], "properties": {"texts": {"type": "array"}, "text": {"type": "null"}}},
    ]
    n_best_fits = [
        {"required": ["beam_size"], "properties": {"beam_size": {"const": b}, "n_best": {"maximum": b}}}
        for b in range(1, limits.max_beam + 1)
    ] + [{"not": {"required": ["beam_size"]}, "properties": {"n_best": {"maximum": default_beam}}}]
    schema["allOf"] = [{"oneOf": one_text}, {"anyOf": n_best_fits}]
    if catalog.models:
        schema["allOf"].append({"anyOf": _pairs(catalog)})
    schema["examples"] = [{"text": "A dog runs in the park."}, {"texts": ["One.", "Two."], "beam_size": 1}]


class TranslateRequest(BaseModel):
    """One text (``text``) or a list of texts (``texts``), plus decoding options."""

    model_config = ConfigDict(
        extra="forbid",
        strict=True,  # no silent coercion: "5" is not a beam size, 1 is not a boolean
        json_schema_extra=_document_limits,
    )
    # when the HTTP process validated it (time.monotonic, system-wide): the worker's queue-wait metric
    _received_at: float = PrivateAttr(default_factory=time.monotonic)

    text: str | None = Field(None, description="a single text to translate")
    texts: list[str] | None = Field(None, description="several texts, translated in one batch")
    beam_size: int = Field(5, ge=1, description="1 is greedy search; at most --max-beam (default 10)")
    n_best: int = Field(1, ge=1, description="hypotheses returned per text; at most beam_size")
    max_length: int | None = Field(
        None, ge=1, description="output tokens per text; default and maximum --max-length (256)"
    )
    length_penalty: float | None = Field(
        None, ge=0.0, le=2.0, allow_inf_nan=False,
        description="GNMT alpha for ranking beams; default: the model's own (see /info)",
    )  # fmt: skip
    return_attention: bool = Field(False, description="attention weights of the best hypothesis")
    source: str | None = Field(
        None, min_length=1, max_length=16,
        description="source language code; needed only when the loaded models leave a choice (GET /languages)",
    )  # fmt: skip
    target: str | None = Field(
        None, min_length=1, max_length=16, description="target language code; as for source"
    )

    @field_validator("beam_size", "n_best", "max_length", mode="before")
    @classmethod
    def _integral(cls, value: Any) -> Any:
        """JSON does not tell 3 from 3.0 (nor does the schema): an integral number is an integer."""
        return int(value) if isinstance(value, float) and value.is_integer() else value

    @field_validator("text")
    @classmethod
    def _valid_text(cls, text: str | None) -> str | None:
        return None if text is None else _check_text(text, BOUND.get().limits.max_chars)

    @field_validator("texts")
    @classmethod
    def _valid_texts(cls, texts: list[str] | None) -> list[str] | None:
        if texts is None:
            return None
        limits = BOUND.get().limits
        if not texts:
            raise ValueError("texts must hold at least one text")
        if len(texts) > limits.max_texts:
            raise ValueError(f"{len(texts)} texts in one request, the limit is {limits.max_texts}")
        for i, text in enumerate(texts):
            try:
                _check_text(text, limits.max_chars)
            except ValueError as e:
                raise ValueError(f"texts[{i}]: {e}") from None
        return texts

    @model_validator(mode="after")
    def _consistent(self) -> TranslateRequest:
        limits, catalog = BOUND.get().limits, BOUND.get().catalog
        if (self.text is None) == (self.texts is None):
            raise ValueError("give exactly one of 'text' (a string) or 'texts' (a list of strings)")
        if "beam_size" not in self.model_fields_set:  # the default must fit a smaller --max-beam
            self.beam_size = min(self.beam_size, limits.max_beam)
        if self.beam_size > limits.max_beam:
            raise ValueError(f"beam_size {self.beam_size} is over the limit of {limits.max_beam}")
        if self.n_best > self.beam_size:
            raise ValueError(f"n_best ({self.n_best}) cannot exceed beam_size ({self.beam_size})")
        if self.max_length is not None and self.max_length > limits.max_length:
            raise ValueError(f"max_length {self.max_length} is over the limit of {limits.max_length}")
        if catalog.models:  # empty only outside a server (unit tests of this model)
            try:
                catalog.route(self.source, self.target)
            except PairError as e:
                raise ValueError(str(e)) from None
        count_texts(len(self.all_texts()))  # for the request's log line
        return self

    def all_texts(self) -> list[str]:
        return [self.text] if self.text is not None else list(self.texts or [])


class Hypothesis(BaseModel):
    text: str
    score: float = Field(description="log-probability of the subword sequence and end of sentence")
    tokens: list[str] = Field(description="target subword pieces")


class TranslationOut(BaseModel):
    text: str = Field(description="the best translation")
    pivot_text: str | None = Field(None, description="when pivoting: the English the text went through")
    score: float
    tokens: list[str]
    n_best: list[Hypothesis] = Field(description="the n_best hypotheses, best first")
    source_tokens: list[str] | None = Field(None, description="with return_attention only")
    attention: list[list[float]] | None = Field(
        None,
        description="with return_attention only: (len(tokens) + 1) x (len(source_tokens) + 1), "
        "the extra row and column being end of sentence",
    )


class TranslateResponse(BaseModel):
    translations: list[TranslationOut] = Field(description="one per input text, in order")
    src_lang: str | None
    tgt_lang: str | None
    pivot: str | None = Field(
        None, description='the language translated through ("en") when no model translates directly'
    )
    model: str = Field(description="checkpoint file name(s), joined by ' + ' when pivoting; GET /info")
